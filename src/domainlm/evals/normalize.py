"""Text normalisation shared by the scorers: one function per job, Chinese-first.

Model outputs mix full-width and half-width forms, traditional and simplified characters, markdown
and stray punctuation. Scores must not depend on those, so every comparison goes through
:func:`normalize_text`. Traditional → simplified uses OpenCC (opencc-python-reimplemented).
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata

# Punctuation removed before exact match / F1: ASCII plus the CJK punctuation NFKC leaves in place.
_CJK_PUNCT = "，。、；：？！“”‘’（）《》〈〉【】『』「」〔〕…—～·￥「」﹏・"
_PUNCT = set(string.punctuation) | set(_CJK_PUNCT)
_WS = re.compile(r"\s+")
# An ASCII word, a number (with decimals), or one CJK character: the units of character-level F1.
_UNIT = re.compile(r"[a-z]+|\d+(?:\.\d+)?|[^\sa-z\d]")


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def to_halfwidth(text: str) -> str:
    """NFKC folds full-width letters, digits and punctuation (Ａ１：) to their ASCII forms."""
    return unicodedata.normalize("NFKC", text)


def to_simplified(text: str) -> str:
    # OpenCC is slow-ish per call; plain ASCII never needs it.
    if text.isascii():
        return text
    return _t2s().convert(text)


def strip_punct(text: str) -> str:
    return "".join(ch for ch in text if ch not in _PUNCT)


@functools.lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    """Lower-case, half-width, simplified Chinese, no punctuation, single spaces (English words kept apart)."""
    text = to_simplified(to_halfwidth(str(text))).lower()
    text = strip_punct(text)
    return _WS.sub(" ", text).strip()


def normalize_answer(text: str) -> str:
    """:func:`normalize_text` plus SQuAD-style removal of English articles, for free-text answers."""
    return _WS.sub(" ", re.sub(r"\b(a|an|the)\b", " ", normalize_text(text))).strip()


def units(text: str) -> list[str]:
    """Units for F1 / ROUGE-L: Chinese by character, English by word, numbers whole."""
    return _UNIT.findall(normalize_answer(text))
