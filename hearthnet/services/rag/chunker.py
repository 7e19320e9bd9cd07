"""Cut extracted text into chunks that fit the embedding model's window.

Sizes come from the model (tokens.budget_for): for MiniLM's 256-wordpiece window a
chunk aims at 200 wordpieces, never exceeds 254 (room for [CLS] and [SEP]), and the next
chunk starts up to 32 wordpieces (16 %) before the previous one ended, at a sentence
start when one lies in that stretch, else at a word.

Where a chunk ends: the packer fills up to the target, then cuts at the strongest
boundary among the positions that keep the chunk at least half full: a paragraph (blank
line) beats a sentence end, which beats a line break, which beats a plain word gap.
Chunks never cross a section (Markdown/HTML heading) or a unit (PDF page).

Every chunk records its exact character range [start, end) in its unit's extracted text
(extract.py), so `unit.text[start:end] == chunk.text` always holds: that is what makes a
citation verifiable from the blob alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from hearthnet.services.rag.extract import Extracted, Section, Unit
from hearthnet.services.rag.tokens import Budget, Counter

MIN_FILL = 0.5  # a cut at a weaker boundary is taken only if a stronger one leaves the chunk this full
PREFIX_MAX_TOKENS = 40  # the title/heading context embedded with a chunk (tokens.budget leaves room)

# Strength of the gap after a word.
WORD, LINE, SENTENCE, PARAGRAPH, END = 1, 2, 3, 4, 5
_WORDS = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?:;…][\"'’”)\]*_]*$")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Span:
    """One chunk of a unit: text[start:end], its token count and where it sits."""

    start: int
    end: int
    tokens: int
    page: int | None
    heading_path: tuple[str, ...]


@dataclass(frozen=True)
class _Atom:
    start: int
    end: int
    tokens: int
    strength: int  # of the gap after it


def chunk_document(doc: Extracted, budget: Budget, counter: Counter) -> list[tuple[Unit, Span]]:
    out = []
    for unit in doc.units:
        for span in chunk_unit(unit, budget, counter):
            out.append((unit, span))
    return out


def chunk_unit(unit: Unit, budget: Budget, counter: Counter) -> list[Span]:
    spans: list[Span] = []
    for section in unit.sections:
        atoms = _atoms(unit.text, section, budget, counter)
        for i, j in _pack(atoms, budget):
            spans.append(Span(atoms[i].start, atoms[j - 1].end, sum(a.tokens for a in atoms[i:j]),
                              unit.page, section.heading_path))
    return spans


def _atoms(text: str, section: Section, budget: Budget, counter: Counter) -> list[_Atom]:
    """The section's words with their token counts and the strength of the gap after
    each; a word longer than the target is cut into pieces that fit."""
    found = [(m.start(), m.end()) for m in _WORDS.finditer(text, section.start, section.end)]
    counts = counter.words([text[s:e] for s, e in found])
    atoms: list[_Atom] = []
    for k, ((s, e), n) in enumerate(zip(found, counts)):
        if k + 1 == len(found):
            strength = END
        else:
            gap = text[e:found[k + 1][0]]
            if _BLANK_LINE.search(gap):
                strength = PARAGRAPH
            elif _SENTENCE_END.search(text[s:e]):
                strength = SENTENCE
            elif "\n" in gap:
                strength = LINE
            else:
                strength = WORD
        if n > budget.target:
            atoms.extend(_split_long(text, s, e, n, strength, budget, counter))
        else:
            atoms.append(_Atom(s, e, n, strength))
    return atoms


def _split_long(text: str, s: int, e: int, n: int, strength: int, budget: Budget,
                counter: Counter) -> list[_Atom]:
    """A "word" of more wordpieces than a chunk holds (a URL, base64, a run of symbols):
    character pieces, each re-counted and halved until it fits."""
    pieces = []
    step = max(1, (e - s) * budget.target // (2 * n))
    pos = s
    while pos < e:
        end = min(e, pos + step)
        while True:
            count = counter.count_many([text[pos:end]])[0]
            if count <= budget.target or end - pos <= 1:
                break
            end = pos + max(1, (end - pos) // 2)
        pieces.append(_Atom(pos, end, count, WORD))
        pos = end
    last = pieces[-1]
    pieces[-1] = _Atom(last.start, last.end, last.tokens, strength)
    return pieces


def _pack(atoms: list[_Atom], budget: Budget) -> list[tuple[int, int]]:
    """[i, j) atom ranges of the chunks, in order, overlapping by up to budget.overlap."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(atoms)
    while i < n:
        j, total = i, 0
        while j < n and total + atoms[j].tokens <= budget.target:
            total += atoms[j].tokens
            j += 1
        j = max(j, i + 1)
        end = n if j == n else _best_cut(atoms, i, j, budget)
        out.append((i, end))
        if end >= n:
            break
        i = _overlap_start(atoms, i, end, budget)
    return out


def _best_cut(atoms: list[_Atom], i: int, j: int, budget: Budget) -> int:
    """Among ends k in (i, j], the strongest boundary that leaves the chunk at least
    MIN_FILL full (the latest of equals); j itself when nothing better qualifies."""
    floor = budget.target * MIN_FILL
    best_k, best_key = j, (atoms[j - 1].strength, j)
    total = 0
    for k in range(i + 1, j + 1):
        total += atoms[k - 1].tokens
        if total < floor:
            continue
        key = (atoms[k - 1].strength, k)
        if key > best_key:
            best_k, best_key = k, key
    return best_k


def _overlap_start(atoms: list[_Atom], i: int, end: int, budget: Budget) -> int:
    """Where the next chunk starts: back from `end` by at most budget.overlap tokens, at
    the earliest sentence start in that stretch, else at its first word; always after i."""
    s, total = end, 0
    while s - 1 > i and total + atoms[s - 1].tokens <= budget.overlap:
        total += atoms[s - 1].tokens
        s -= 1
    for k in range(s, end):
        if atoms[k - 1].strength >= SENTENCE:
            return k
    return s


def context_prefix(title: str | None, heading_path: tuple[str, ...], counter: Counter) -> str:
    """What is embedded in front of a chunk's own text: the document title and the
    headings above it, at most PREFIX_MAX_TOKENS wordpieces (the chunk budget leaves
    room). The stored passage stays exactly the extracted range."""
    parts = [p for p in (title or "", *heading_path) if p]
    words = " > ".join(dict.fromkeys(parts)).split()
    counts = counter.words(words)
    kept, total = [], 0
    for w, c in zip(words, counts):
        if total + c > PREFIX_MAX_TOKENS:
            break
        kept.append(w)
        total += c
    return " ".join(kept)
