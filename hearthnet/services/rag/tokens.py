"""How many wordpieces the embedding model reads from a text, and how many it can read.

Chunks must fit the embedding model's input window: MiniLM-class models read 256
wordpieces ([CLS] and [SEP] included) and silently drop the rest, so a chunk measured in
"approximate tokens" of 3.5 characters would be embedded from its first part only.

`counter_for(model)` is the one place the chunker gets its measure from:

1. the embedding service's own wordpiece counter (hearthnet/services/embedding/minilm.py),
   so chunker and embedder count alike;
2. else (the weights package is missing) an approximation (a word is ~1.3 wordpieces,
   long words more), labelled `approximate` so callers can say so.

BERT's pre-tokenizer splits on whitespace and punctuation before wordpiece, so the count
of a text is the sum of the counts of its whitespace-separated words: the chunker counts
words once (cached) and adds.
"""
from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger("hearthnet.rag.tokens")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SPECIAL_TOKENS = 2  # [CLS] ... [SEP]
# Input windows (wordpieces, special tokens included) of the models we know; the rest get
# the smallest common one, so an unknown model never truncates our chunks.
WINDOWS = {
    "all-MiniLM-L6-v2": 256,
    "sentence-transformers/all-MiniLM-L6-v2": 256,
    "paraphrase-multilingual-MiniLM-L12-v2": 128,
    "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2": 128,
    "BAAI/bge-small-en-v1.5": 512,
    "bge-small-en-v1.5": 512,
}
DEFAULT_WINDOW = 256
CHUNK_FILL = 0.78  # target chunk size as a share of the window: 200 of 256
OVERLAP_SHARE = 0.16  # overlap as a share of the chunk target: 32 of 200


@dataclass(frozen=True)
class Budget:
    """Token sizes of one model's chunks."""

    window: int  # what the model reads, special tokens included
    target: int  # what a chunk aims at
    hard_max: int  # what a chunk may never exceed (window minus special tokens)
    overlap: int


def window_for(model: str) -> int:
    return WINDOWS.get(model, DEFAULT_WINDOW)


def budget_for(model: str) -> Budget:
    window = window_for(model)
    target = max(16, int(window * CHUNK_FILL))
    hard_max = window - SPECIAL_TOKENS
    return Budget(window=window, target=min(target, hard_max), hard_max=hard_max,
                  overlap=max(1, int(target * OVERLAP_SHARE)))


@dataclass
class Counter:
    """Counts wordpieces of single words (no special tokens), with a cache: documents
    repeat their words, so a 100-page PDF costs a few thousand tokenizer calls."""

    count_many: Callable[[list[str]], list[int]]
    source: str  # "embedding" | "approximate"

    def __post_init__(self) -> None:
        self._cache: dict[str, int] = {}

    @property
    def approximate(self) -> bool:
        return self.source == "approximate"

    def words(self, words: Iterable[str]) -> list[int]:
        words = list(words)
        if len(self._cache) > 200_000:  # a bound, not an LRU: documents come one by one
            self._cache.clear()
        todo = list({w for w in words if w not in self._cache})
        if todo:
            self._cache.update(zip(todo, self.count_many(todo)))
        return [self._cache[w] for w in words]

    def text(self, text: str) -> int:
        return sum(self.words(text.split()))


def _approx_one(word: str) -> int:
    # ~1 wordpiece per 4 characters of a word, at least 1; punctuation splits off.
    punct = len(re.findall(r"[^\w\s]", word))
    letters = len(word) - punct
    return punct + (math.ceil(letters / 4) if letters else 0)


def _approximate() -> Counter:
    return Counter(lambda ws: [_approx_one(w) for w in ws], "approximate")


def _from_embedding_service() -> Counter | None:
    """The embedding worker's own counter (minilm.count_tokens_batch, which counts [CLS]
    and [SEP] too), when the weights package is there."""
    from hearthnet.services.embedding import minilm

    try:
        minilm.count_tokens_batch(["a"])
    except minilm.ModelUnavailable as exc:  # weights package missing: approximate, say why
        log.info("wordpiece tokenizer unavailable; counting approximately", extra={"reason": str(exc)})
        return None
    return Counter(lambda ws: [max(0, n - minilm.SPECIAL_TOKENS) for n in minilm.count_tokens_batch(ws)],
                   "embedding")


@functools.lru_cache(maxsize=8)
def counter_for(model: str = DEFAULT_MODEL) -> Counter:
    """The wordpiece counter for `model`. Every model we ship is a BERT-wordpiece model
    whose vocabulary the MiniLM tokenizer approximates closely; a model we do not know
    gets the approximation."""
    if window_for(model) == DEFAULT_WINDOW or "MiniLM" in model:
        counter = _from_embedding_service()
        if counter is not None:
            return counter
    return _approximate()
