"""Attribute statements found in text: (subject, attribute, value, sentence).

Written by hand because no library extracts these: product documents state facts in a few fixed shapes,
and a small set of patterns per language finds them with no false subject (the subject must be a known
title/heading or appear in the sentence itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ZH_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?")
_EN_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")

# 海港明珠定期存款的存期为3年。 / 年费是50元 / 起存金额：100元
_ZH_FACT = re.compile(
    r"^(?P<subject>[\u4e00-\u9fffA-Za-z0-9·（）()]{2,30}?)的(?P<attr>[\u4e00-\u9fffA-Za-z]{2,12})"
    r"(?:为|是|：|:)(?P<value>[^，。；;！？\n]{1,40})[。；;]?$"
)
# The annual interest rate of Harbor Tide Time Deposit is 2.80%.
_EN_FACT = re.compile(
    r"^(?:The |the )?(?P<attr>[a-z][a-z \-]{2,40}?) of (?P<subject>[A-Z][A-Za-z0-9 &'\-]{2,60}?) (?:is|are) "
    r"(?P<value>[^;!?\n]{1,60}?)\.?$"
)


@dataclass(frozen=True)
class Fact:
    subject: str
    attribute: str
    value: str
    sentence: str
    lang: str


def sentences(text: str, lang: str) -> list[str]:
    if lang == "zh":
        return [m.group(0).strip() for m in _ZH_SENTENCE.finditer(text) if m.group(0).strip()]
    return [part.strip() for part in _EN_SPLIT.split(text) if part.strip()]


def detect_lang(text: str) -> str:
    han = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    letters = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if han >= letters / 4 else "en"


def find_facts(text: str, lang: str | None = None) -> list[Fact]:
    """Every attribute statement in ``text``, in order of appearance, without duplicates."""
    lang = lang or detect_lang(text)
    found: list[Fact] = []
    seen: set[tuple[str, str]] = set()
    for sentence in sentences(text, lang):
        match = (_ZH_FACT if lang == "zh" else _EN_FACT).match(sentence)
        if not match:
            continue
        subject = match.group("subject").strip()
        attribute = match.group("attr").strip()
        value = match.group("value").strip().rstrip("。.")
        if lang == "en" and attribute.lower() in {"part", "one", "some", "all", "each", "most"}:
            continue
        if not value or value == subject or (subject, attribute) in seen:
            continue
        seen.add((subject, attribute))
        found.append(Fact(subject, attribute, value, sentence, lang))
    return found
