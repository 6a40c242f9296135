"""Attribute statements found in text: (subject, attribute, value, sentence).

Written by hand because no library extracts these: documents state such facts in a few fixed shapes
("X的Y为Z", "The Y of X is Z"), and one pattern per language finds them. In Chinese, jieba's part-of-speech
tags then make sure the subject and the attribute are noun phrases that name something ("常用的节奏型称为…"
has an adjective for a subject; "该行的总部为…" a pronoun), so a question about them can stand alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domainlm.data import detect_language
from domainlm.synth import pos
from domainlm.synth.questions import is_pronoun

_NOUNS = ("n", "nr", "ns", "nt", "nz", "j", "eng", "vn", "nrt")

# A sentence ends at 。！？ (and keeps a closing quote or bracket that follows: “…。”).
_ZH_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?[”’」』）)]*")
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
    """The language synth writes questions in for ``text``: English when the clean stage's language
    detector says English, Chinese otherwise (synth has rules for these two)."""
    return "en" if detect_language(text)[0] == "en" else "zh"


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
        if lang == "zh" and not (_names_something(subject) and _names_something(attribute) and _plain(subject, attribute)):
            continue
        if not value or value == subject or (subject, attribute) in seen:
            continue
        seen.add((subject, attribute))
        found.append(Fact(subject, attribute, value, sentence, lang))
    return found


def _names_something(phrase: str) -> bool:
    """A Chinese noun phrase that stands alone: it ends in a noun and holds no pronoun."""
    tagged = [(w, f) for w, f in pos.cut(phrase) if w.strip()]
    if not tagged or any(is_pronoun(w, f) for w, f in tagged):
        return False
    # A bare adjective or verb ("常用", "最新") names nothing. A name of several words may end in any tag:
    # jieba does not know product names and tags their last character freely ("安居贷" → 安居/v 贷/v).
    if len(tagged) == 1:
        return tagged[0][1] in _NOUNS or not tagged[0][1].startswith(("a", "b", "v", "d", "p", "c", "u", "m", "q", "x"))
    return not tagged[0][1].startswith(("p", "c", "u"))


def _plain(subject: str, attribute: str) -> bool:
    """No time word or adverb glued to the subject or the attribute ("最近莱索托", "退休年龄已经")."""
    first = next((f for w, f in pos.cut(subject) if w.strip()), "")
    last = [f for w, f in pos.cut(attribute) if w.strip()][-1:]
    return not first.startswith(("t", "d", "r")) and last != ["d"]
