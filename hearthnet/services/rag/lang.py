"""Languages, roughly: a stopword guess of a document's language (when the ingest does
not say) and the stopwords kept out of keyword queries."""
from __future__ import annotations

import re

STOPWORDS = {
    "en": {"the", "and", "of", "to", "is", "in", "that", "for", "it", "with", "you", "are", "be", "on", "your",
           "a", "an", "do", "does", "i", "we", "my", "our", "what", "how", "can", "should", "when", "where",
           "which", "who", "there", "this", "at", "or", "if", "me", "us", "will", "from", "by", "as", "was"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "mit", "sie", "ein", "eine", "zu", "den", "von", "auf", "im",
           "ich", "wir", "wie", "was", "wo", "wann", "es", "dem", "des", "für", "kann", "soll", "bei", "am"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "un", "pour", "pas", "dans", "que", "du", "en", "sur"},
    "nl": {"de", "het", "een", "en", "is", "van", "niet", "op", "met", "voor", "zijn", "dat", "je", "te", "er"},
    "es": {"el", "la", "los", "las", "y", "es", "de", "que", "en", "un", "una", "por", "para", "con", "no"},
    "it": {"il", "la", "di", "che", "e", "è", "un", "una", "per", "non", "con", "sono", "del", "della", "gli"},
}
STOPWORDS_ALL = frozenset().union(*STOPWORDS.values())


def guess_language(text: str) -> str | None:
    """A two-letter guess from stopwords (en, de, fr, nl, es, it), or None when unsure;
    `input.language` overrides it."""
    words = re.findall(r"\w+", text.lower())[:3000]
    if len(words) < 8:
        return None
    scores = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] >= max(3, len(words) // 40) else None
