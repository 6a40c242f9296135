"""Questions a person would ask, made from Chinese sentences that state a fact.

Chinese asks "in place": the question word stands where the answer would stand ("…于2015年10月24日起下调…" →
"…于何时起下调…？"). So a question is the fact's sentence with one typed span replaced by the matching
question word, cut after the clause that holds it. What makes that safe is choosing the span and the
sentence well, which is done with jieba's part-of-speech tags (a kept library) and a general grammar of
Chinese dates and quantities, never with a domain's vocabulary:

- the span is a date (何时 / 哪一年), a quantity with its unit (多少 + unit), an organisation (哪个机构),
  a place after a locative preposition (哪里) or a person who is the subject of the clause (谁);
- the span and its neighbours align with word boundaries (no "何时底宣布" from "12月底宣布");
- the sentence states a fact: declarative, has a verb, is not a question, a condition or a quote;
- the question names its subject: no personal or demonstrative pronoun (他们, 该, 这, 其 …) that only the
  surrounding text could resolve, no bracketed aside, no news dateline.

Every candidate that fails says why (the reasons are counted in synth's quality report).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domainlm.synth import pos

# Dates written with Arabic digits: 2015年10月24日, 2015年10月, 10月24日, 2015年 (a four-digit year).
_DATE = re.compile(r"(?<![\d.])(?:\d{4}年(?:\d{1,2}月(?:\d{1,2}[日号])?)?|\d{1,2}月\d{1,2}[日号])")
# A number (thousands separators, decimals) and what follows it; the unit is read from jieba's tags.
_NUMBER = re.compile(r"(?<![\d.A-Za-z])\d+(?:,\d{3})*(?:\.\d+)?")
# Characters that, right after a date or quantity, change what it means ("12月底", "3年前", "100元以上",
# "1月15日至20日"): a question word there would be ungrammatical or the answer incomplete.
_QUALIFIER_AFTER = tuple("底初末中旬前后来间以余多左上下至到—–-~～电讯年、0123456789")
_QUALIFIER_BEFORE = tuple("第至到—–-~～约近逾、")
# A question cannot stop at a verb of saying (what was said is missing) or at a subordinate clause's end.
_SAYING = {"说", "称", "表示", "指出", "介绍", "认为", "透露", "强调", "宣布", "提到", "写道", "坦言", "表明", "显示"}
_OPEN_ENDINGS = {"说", "称", "表示", "指出", "介绍", "报道", "认为", "透露", "强调", "宣布", "援引", "提到", "写道",
                 "时", "后", "前", "中", "之际", "期间", "以来", "的", "起", "显示"}
# A news dateline ("新华社北京2月27日电", "本报讯") is the article's frame, not a fact.
_DATELINE = re.compile(r"^[^，。：:]{0,30}?(?:\d{1,2}月\d{1,2}日(?:专|讯)?电|讯)(?:（[^（）]*）)?\s*")
# Personal and demonstrative pronouns: a question holding one leans on text the reader does not have.
_PRONOUN_CHARS = tuple("他她它牠我你您这那该此其本")
_CONDITIONAL = {"如果", "假如", "倘若", "要是", "如若", "一旦", "假设", "若是"}
_QUESTION_WORDS = {"吗", "呢", "是否", "如何", "怎么", "怎样", "为什么", "为何", "什么", "哪", "哪里", "谁", "多少"}
_LOCATIVE = {"在", "于", "到", "赴", "位于", "来自", "抵达", "前往"}
# A quantity's unit as jieba tags it: a measure word (q) or a number-word (m) made of Han characters
# ("元", "万亿元", "公里"); % and friends are symbols.
_PERCENT = ("%", "％", "‰")
_CLAUSE_END = "，；：,;:"
_SENTENCE_END = "。！!"
_OPEN, _CLOSE = "（(“‘「『《【[", "）)”’」』》】]"


@dataclass(frozen=True)
class Candidate:
    """A question about one span of ``sentence``; ``start``/``end`` locate the answer in the sentence."""

    question: str
    answer: str
    kind: str  # date | year | quantity | percent | organisation | place | person
    sentence: str
    start: int
    end: int


@dataclass(frozen=True)
class Dropped:
    reason: str
    sentence: str
    answer: str = ""


@dataclass(frozen=True)
class _Token:
    word: str
    flag: str
    start: int
    end: int


def _tokens(sentence: str) -> list[_Token]:
    out, at = [], 0
    for word, flag in pos.cut(sentence):
        out.append(_Token(word, flag, at, at + len(word)))
        at += len(word)
    return out


def _is_han(text: str) -> bool:
    return bool(text) and all("\u4e00" <= ch <= "\u9fff" for ch in text)


def balanced(text: str) -> bool:
    """Brackets and quotes open and close in order (a cut sentence leaves one open)."""
    depth = 0
    for ch in text:
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and text.count('"') % 2 == 0


def _inside_brackets(text: str, position: int) -> bool:
    depth = 0
    for ch in text[:position]:
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth = max(0, depth - 1)
    return depth > 0


def _strip_asides(text: str) -> str:
    """Drop bracketed asides ("（记者商婧）", "(Beijing)") — they are not part of what is asked."""
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"（[^（）]*）|\([^()]*\)|【[^【】]*】", "", text)
    return text


def is_pronoun(token_word: str, flag: str) -> bool:
    return flag.startswith("r") and token_word[0] in _PRONOUN_CHARS


def sentence_problem(sentence: str, tokens: list[_Token]) -> str | None:
    """Why a sentence cannot carry a fact question (None when it can)."""
    body = sentence.strip()
    if len(body) < 10:
        return "sentence too short"
    if len(body) > 160:
        return "sentence too long"
    if body[-1] not in _SENTENCE_END and not (body[-1] in _CLOSE and len(body) > 1 and body[-2] in _SENTENCE_END):
        return "not a complete sentence"
    if "？" in body or "?" in body or any(t.word in _QUESTION_WORDS for t in tokens):
        return "not a statement"
    if any(t.word in _CONDITIONAL for t in tokens):
        return "conditional, not a fact"
    if not any(t.flag.startswith("v") for t in tokens):
        return "no verb"
    if not balanced(body):
        return "unbalanced brackets or quotes"
    return None


def _aligned(tokens: list[_Token], start: int, end: int) -> bool:
    starts = {t.start for t in tokens}
    ends = {t.end for t in tokens}
    return start in starts and end in ends


_NOUNISH = ("n", "nr", "ns", "nt", "nz", "j", "eng", "vn")
_ORG_PARTS = ("ns", "nt", "nz", "b", "j")
# What the names of organisations end with in Chinese (会 for 委员会/协会, 行 for 银行, 所 for 交易所 …);
# jieba's nt tag alone also covers phrases like "中美关系".
_ORG_ENDINGS = tuple("院局部会社行司所校厂团队委办署府台报网馆厅处组盟党军协心站店")


def _spans(sentence: str, tokens: list[_Token]) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, question word) for every typed span in the sentence."""
    spans: list[tuple[int, int, str, str]] = []
    taken: list[tuple[int, int]] = []
    for m in _DATE.finditer(sentence):
        kind, word = ("year", "哪一年") if re.fullmatch(r"\d{4}年", m.group(0)) else ("date", "何时")
        spans.append((m.start(), m.end(), kind, word))
        taken.append((m.start(), m.end()))
    by_start = {t.start: i for i, t in enumerate(tokens)}
    for m in _NUMBER.finditer(sentence):
        if any(a <= m.start() < b for a, b in taken):
            continue
        end = m.end()
        if sentence[end:].startswith(_PERCENT):
            spans.append((m.start(), end + 1, "percent", "多少"))
            continue
        index = by_start.get(end)
        if index is None:
            continue
        unit = tokens[index]
        # A unit is a measure word; 年/月/日 after a number are dates, except a duration like "3年".
        if not (_is_han(unit.word) and unit.flag in ("q", "m") and len(unit.word) <= 4):
            continue
        if any(ch in unit.word for ch in "余多几来"):  # "50余个": an estimate, not a value to ask for
            continue
        if unit.word in ("万", "亿", "千", "百", "十") and _is_han(sentence[unit.end:unit.end + 1]):
            continue  # "1500万人": the unit is the next word; the span would cut it
        before = tokens[by_start[m.start()] - 1] if by_start.get(m.start()) else None
        if before is not None and before.flag in ("m", "q"):
            continue  # "97名95.7万元": two quantities run together
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if following is not None and following.flag in ("m", "q"):
            continue  # "6个月": the unit goes on past the measure word
        if unit.word in ("年", "月", "日", "号"):
            # "为3年" is a duration; "应保2年" (an era's year) and "5月" are dates, not asked as 多少.
            if unit.word == "年" and len(m.group(0)) <= 2 and before is not None and before.flag in ("v", "p", "d"):
                spans.append((m.start(), unit.end, "quantity", "多少年"))
            continue
        spans.append((m.start(), unit.end, "quantity", "多少" + unit.word))
    for index, token in enumerate(tokens):
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        before = tokens[index - 1] if index > 0 else None
        if token.flag == "nt" and len(token.word) >= 3 and token.word.endswith(_ORG_ENDINGS):
            # An organisation's name often starts with its place or rank ("盘龙区" + "人民检察院").
            first = index
            while first > 0 and tokens[first - 1].flag in _ORG_PARTS:
                first -= 1
            # Followed by a noun or a number it only modifies something else ("亚投行意向创始成员国").
            if after is None or after.flag.startswith(("v", "p", "x", "d", "c")):
                spans.append((tokens[first].start, token.end, "organisation", "哪个机构"))
        elif token.flag == "ns" and len(token.word) >= 2 and before is not None and before.word in _LOCATIVE:
            if after is None or after.flag.startswith("v") or after.word in _CLAUSE_END + _SENTENCE_END:
                spans.append((token.start, token.end, "place", "哪里"))
        elif token.flag == "nr" and 2 <= len(token.word) <= 4:
            # A person asked as 谁 only as the subject: first in the clause, followed by a real verb.
            clause_start = before is None or before.word in _CLAUSE_END
            if clause_start and after is not None and after.flag.startswith("v") and len(after.word) >= 2:
                spans.append((token.start, token.end, "person", "谁"))
    return spans


def _span_problem(sentence: str, tokens: list[_Token], start: int, end: int) -> str | None:
    if not _aligned(tokens, start, end):
        return "answer splits a word"
    if sentence[end:end + 1] and sentence[end] in _QUALIFIER_AFTER:
        return "answer qualified by the next word"
    if start and sentence[start - 1] in _QUALIFIER_BEFORE:
        return "answer is part of a range, list or ordinal"
    if _inside_brackets(sentence, start):
        return "answer inside brackets or quotes"
    return None


def _leading_connective(tokens: list[_Token]) -> int:
    """Characters of a leading connective ("同时，", "此外，", "但") that a question should not start with."""
    if not tokens:
        return 0
    first = tokens[0]
    if first.flag == "c" or (first.flag in ("v", "d", "l") and len(tokens) > 1 and tokens[1].word in "，,"):
        return tokens[1].end if len(tokens) > 1 and tokens[1].word in "，," else first.end
    return 0


def _same_kind_left(question: str, word: str, kind: str, answer: str) -> bool:
    """Whether the question still holds another value of the kind it asks for (two dates, two %)."""
    rest = question.replace(word, "", 1)
    if kind in ("date", "year"):
        return bool(_DATE.search(rest))
    if kind == "percent":
        return any(p in rest for p in _PERCENT)
    if kind == "quantity":
        unit = answer.lstrip("0123456789.,")
        return bool(re.search(r"\d" + re.escape(unit), rest))
    return False


def _has_subject(tokens: list[_Token], word: str) -> bool:
    """A noun, or the question word standing for the subject, comes before the first verb."""
    for token in tokens:
        if token.word in (word, word[:2]) and word in ("谁", "哪个机构"):
            return True
        if token.flag.startswith("v") and token.flag != "vn":
            return False
        if token.flag in _NOUNISH:
            return True
    return False


def question_candidates(sentence: str) -> tuple[list[Candidate], list[Dropped]]:
    """Every question this sentence supports, and why the others were dropped."""
    original = sentence.strip()
    frame = _DATELINE.match(original)
    sentence = original[frame.end():] if frame else original
    offset = len(original) - len(sentence)
    tokens = _tokens(sentence)
    problem = sentence_problem(sentence, tokens)
    if problem:
        return [], [Dropped(problem, original)]
    kept: list[Candidate] = []
    dropped: list[Dropped] = []
    seen_questions: set[str] = set()
    for start, end, kind, word in _spans(sentence, tokens):
        answer = sentence[start:end]

        def drop(reason: str, answer: str = answer) -> None:
            dropped.append(Dropped(reason, original, answer))

        problem = _span_problem(sentence, tokens, start, end)
        if problem:
            drop(problem)
            continue
        if kind == "percent" and sentence[end:end + 1] == "的":
            drop("answer is a modifier (多少的…)")
            continue
        if kind in ("quantity", "percent") and sentence[start - 1:start] == "的":
            drop("answer is a modifier (…的多少)")
            continue
        # The question runs from the sentence's start to the end of the clause that holds the answer.
        clause_end = len(sentence)
        for at in range(end, len(sentence)):
            if sentence[at] in _CLAUSE_END + _SENTENCE_END:
                clause_end = at
                break
        if clause_end < len(sentence) and sentence[clause_end] in "：:":
            drop("question stops before what is said")
            continue
        if kind in ("person", "organisation") and clause_end < len(sentence) and sentence[clause_end] in "，,":
            drop("subject question without its main verb")
            continue
        begin = _leading_connective(tokens)
        if start < begin:
            drop("answer in a connective")
            continue
        text = sentence[begin:start] + word + sentence[end:clause_end]
        text = _strip_asides(text).strip(" ，,、；;：:")
        question_tokens = _tokens(text)
        wh_at = text.find(word)
        if any(t.word in _SAYING and text[t.end:t.end + 1] in "，,：:" for t in question_tokens if t.end <= wh_at):
            drop("answer inside reported speech")
            continue
        if wh_at == 0 and kind in ("date", "year") and text[len(word):len(word) + 1] not in "，,":
            drop("question word before the subject")
            continue
        if question_tokens and question_tokens[0].flag == "p" and not any(c in text for c in "，,"):
            drop("an adverbial phrase, not a clause")
            continue
        if text.endswith(word) and kind in ("date", "year", "place", "person", "organisation"):
            previous = [t for t in _tokens(text[:wh_at]) if t.word.strip()]
            if not previous or not (previous[-1].flag.startswith(("v", "p")) or previous[-1].word in ("是", "为")):
                drop("question word not tied to a verb")
                continue
        if any(is_pronoun(t.word, t.flag) for t in question_tokens):
            drop("pronoun without its referent")
            continue
        if question_tokens and question_tokens[-1].word in _OPEN_ENDINGS:
            drop("question ends in a dependent clause or a verb of saying")
            continue
        context = text.replace(word, "", 1)
        if len(context) < 6 or not any(t.flag.startswith("v") for t in _tokens(context)):
            drop("question too thin (no verb or subject left)")
            continue
        if not _has_subject(question_tokens, word):
            drop("question has no subject")
            continue
        if len(text) > 60:
            drop("question too long")
            continue
        if answer in context:
            drop("answer repeated in the question")
            continue
        if _same_kind_left(text, word, kind, answer):
            drop("question holds another value of the kind it asks")
            continue
        question = text + "？"
        if question in seen_questions:
            continue
        seen_questions.add(question)
        kept.append(Candidate(question, answer, kind, original, start + offset, end + offset))
    if not kept and not dropped:
        dropped.append(Dropped("no date, quantity or named entity to ask about", original))
    return kept, dropped
