"""Checks every synthesized question/answer pair must pass, whoever wrote it (rules or a teacher model).

A pair is kept only when the answer is a span of the cleaned passage, the question is a complete
question that names what it asks about, and the answer is of the kind the question word asks for (a
number for 多少, a date for 何时, …). The same function is what tests and the quality report use, so the
share of items that pass is measured, not assumed.
"""

from __future__ import annotations

import re

from domainlm.synth import pos
from domainlm.synth.questions import balanced, is_pronoun

_DIGITS = re.compile(r"[0-9０-９零〇一二两三四五六七八九十百千万亿]")
_DATE_LIKE = re.compile(r"\d{4}年|\d{1,2}月|\d{1,2}[日号]|\b(1[5-9]|20)\d{2}\b|[零〇一二三四五六七八九十]+年|"
                        r"January|February|March|April|May|June|July|August|September|October|November|December")
# Question words and the kind of answer each asks for (longest first, so 多少年 is read before 多少).
_ZH_KINDS = [("哪一年", "date"), ("哪年", "date"), ("何时", "date"), ("什么时候", "date"), ("哪一天", "date"),
             ("多少", "number"), (re.compile(r"几[个年次天岁名位家条项座人元]"), "number"), ("谁", "entity"),
             ("哪位", "entity"), ("哪里", "entity"), ("哪儿", "entity"), ("哪个", "entity"), ("哪家", "entity"),
             ("什么", "any"), ("怎样", "any"), ("如何", "any"), ("哪", "entity")]
_EN_KINDS = [("how many", "number"), ("how much", "number"), ("what year", "date"), ("when", "date"),
             ("who", "entity"), ("where", "entity"), ("which", "entity"), ("what", "any"), ("how", "any")]
_PARTICLE_START = tuple("的了和与及或在于是而并且就也都，。、；：,.;:!?！？")


def asked_kind(question: str, lang: str) -> str | None:
    """The kind of answer the question word asks for: number | date | entity | any; None if no question word."""
    if lang == "zh":
        for word, kind in _ZH_KINDS:
            if (word.search(question) if isinstance(word, re.Pattern) else word in question):
                return kind
        return "any" if question.rstrip().endswith(("吗？", "吗?", "？", "?")) else None
    lowered = question.lower()
    for word, kind in _EN_KINDS:
        if re.search(rf"\b{word}\b", lowered):
            return kind
    return None


def answer_matches(kind: str, answer: str) -> bool:
    if kind == "number":
        return bool(_DIGITS.search(answer))
    if kind == "date":
        return bool(_DATE_LIKE.search(answer))
    if kind == "entity":
        return not re.fullmatch(r"[\d.,%％\s]+", answer)
    return True


def check_pair(question: str, answer: str, passage: str, lang: str) -> list[str]:
    """Names of the checks this pair fails (empty when it passes)."""
    failed = []
    question, answer = question.strip(), answer.strip()
    if not answer or answer not in passage:
        failed.append("answer is not a span of the passage")
    if answer and (answer.startswith(_PARTICLE_START) or answer.endswith(tuple("，、；：,;:的"))):
        failed.append("answer starts or ends mid-clause")
    if len(answer) > 60:
        failed.append("answer too long for a short answer")
    if len(question) < 6 or not question.endswith(("？", "?")) or not balanced(question):
        failed.append("not a complete question")
    elif question[0] in "，。、；：,.;:!?！？" or next(pos.cut(question)).flag in ("uj", "ul", "c", "y"):
        failed.append("question starts mid-clause")
    if lang == "zh" and any(is_pronoun(word, flag) for word, flag in pos.cut(question)):
        failed.append("question leans on a pronoun")
    if lang == "en" and re.match(r"(?i)^(it|he|she|they|this|that|these|those)\b", question):
        failed.append("question leans on a pronoun")
    kind = asked_kind(question, lang)
    if kind is None:
        failed.append("no question word")
    elif not answer_matches(kind, answer):
        failed.append(f"answer is not a {kind}")
    if answer and answer in question:
        failed.append("answer given away in the question")
    return failed
