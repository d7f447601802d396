"""Topic words of a text: what the hashing embeddings and the offline responder compare, without a model."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
# Words that carry no topic; without a model they would make every question look like every other.
_STOPWORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i i'm if in is it its me my no "
    "not of on or our so that the their them then there these this to was we were what when where which who why "
    "will with would you your yes ok okay please thanks thank hi hello".split()
)


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry its topic: lower-cased, stopwords and single letters out, plurals folded."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOPWORDS]


def _stem(word: str) -> str:
    # Crude plural folding is enough for "printers" to meet "printer"; a real stemmer is a model's job.
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
