"""Exam: a test paper drawn from a knowledge base, with an answer key that cites its passages.

Items are made from the facts synth already finds and checks (``domainlm.synth.generate``: attribute
statements "X的Y为Z" / "The Y of X is Z", and Chinese sentences with a typed span — a date, a quantity, a
percentage, an organisation, a place, a person), so an exam asks only what the rules can stand behind:

- **mcq**: the fact's question with its answer among distractors. A distractor is a value *of the same kind
  found elsewhere in the KB*: first another value of the same attribute ("年费" of another card), then one of
  the same shape (digits aside: "3.20%" for "0.35%", "49公里" for "357公里"), then one of the same kind
  (another year, another person). It must differ from the key, and must not be supported by the item's
  passage: not written in it, and not equal to a number written in it once numbers are normalised
  (full-width digits, thousands separators, 万/亿, simple Chinese numerals: "3.0%" is "3%", "三年" is "3年").
- **cloze**: the fact's sentence with its answer blanked.
- **short**: a question answered in words, graded by a rubric of key points drawn from the passage: every
  attribute the passage states for one subject (one point each), or the answer and the sentence that
  supports it.

Each item keeps its source (chunk id, document, the passage sentence and its character span in the chunk)
and a difficulty estimate, explained in ``difficulty_factors`` (see :func:`_difficulty`). ``validate_exam``
re-checks every item against the KB independently of how it was made: the key is in its passage, no
distractor is, the multiple-choice letter points at the key, the cloze refills to its sentence, no fact is
asked twice.

Written by hand: no library makes exam items from a KB; python-docx writes the DOCX.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import defaultdict
from difflib import SequenceMatcher
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domainlm.errors import DomainlmError
from domainlm.io import sha256_text

ItemType = Literal["mcq", "cloze", "short"]
ITEM_TYPES: tuple[str, ...] = ("mcq", "cloze", "short")
BLANK = "______"
LETTERS = "ABCDEFGH"


class ExamConfig(BaseModel):
    n: int = Field(20, ge=1, le=500, description="Items wanted; fewer are made (with a warning) when the KB "
                                                  "holds fewer facts the rules can stand behind.")
    types: list[ItemType] = Field(default_factory=lambda: list(ITEM_TYPES),
                                  description="Item types, shared out evenly: mcq, cloze, short.")
    choices: int = Field(4, ge=2, le=len(LETTERS), description="Options of a multiple-choice item (key included).")
    seed: int = 0
    query: str | None = Field(None, description="Topic: only passages the KB's search returns for it.")
    query_k: int = Field(20, ge=1, description="Passages a topic query draws items from.")
    max_chunks: int = Field(3000, ge=1, description="Chunks read for items and distractors (a sample of them, "
                                                    "by seed, in a larger KB): reading costs ~30 ms a chunk.")


class RubricPoint(BaseModel):
    point: str  # what a full answer states
    answer: str  # the value that must appear (a span of ``evidence``)
    evidence: str  # the passage sentence that states it
    score: int = 1


class Source(BaseModel):
    chunk_id: str
    doc_id: str
    source: str
    passage: str  # the sentence the key comes from (for short items with several points: the first)
    span: list[int]  # passage == chunk text[span[0]:span[1]]


class ExamItem(BaseModel):
    id: str
    type: ItemType
    question: str
    key: str
    choices: list[str] | None = None
    answer: str  # mcq: the key's letter; otherwise the key
    distractors: list[str] = Field(default_factory=list)
    rubric: list[RubricPoint] = Field(default_factory=list)
    source: Source
    kind: str  # the value kind of the key (percent, amount, duration, date, person, …)
    difficulty: float
    level: Literal["easy", "medium", "hard"]
    difficulty_factors: dict[str, float]
    lang: str


class Exam(BaseModel):
    kb: str
    config: ExamConfig
    items: list[ExamItem]
    warnings: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# Values: kinds and number normalisation
# ---------------------------------------------------------------------------------------------------
_NUM = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_RUN = re.compile(r"[零〇一二两三四五六七八九十百千]+")
_MONEY = ("元", "万元", "亿元", "美元", "港元", "欧元", "cny", "rmb", "yuan", "usd", "$", "¥", "￥", "hkd", "eur")
_DURATION = ("年", "个月", "月", "天", "日", "周", "小时", "分钟", "个工作日", "工作日", "岁", "周岁",
             "year", "years", "month", "months", "day", "days", "week", "weeks", "hour", "hours")
_DATE = re.compile(r"\d{4}年(?:\d{1,2}月(?:\d{1,2}[日号])?)?|\d{1,2}月\d{1,2}[日号]|\d{4}-\d{1,2}(?:-\d{1,2})?")


def _zh_number(run: str) -> int:
    """A Chinese numeral ("三", "二十五", "一百零五", "二〇一五") as an integer (hand-written: no kept
    library for it is installed, and only these simple forms are compared)."""
    if not any(ch in _ZH_UNITS for ch in run):
        return int("".join(str(_ZH_DIGITS[ch]) for ch in run))  # digit by digit: 二〇一五 → 2015
    total, digit = 0, None
    for ch in run:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        else:
            total += (1 if digit is None else digit) * _ZH_UNITS[ch]
            digit = None
    return total + (digit or 0)


def normalize_numbers(text: str) -> str:
    """``text`` with numbers written one way: NFKC (full-width digits), no spaces, Chinese numerals as
    digits, no thousands separators, 万/亿 multiplied out, trailing decimal zeros dropped."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\s+", "", text)
    text = _ZH_RUN.sub(lambda m: str(_zh_number(m.group(0))), text)

    def plain(match: re.Match) -> str:
        value = float(match.group(1).replace(",", ""))
        value *= {"万": 1e4, "亿": 1e8}.get(match.group(2) or "", 1)
        return f"{value:.6f}".rstrip("0").rstrip(".")

    return re.sub(r"(\d+(?:,\d{3})*(?:\.\d+)?)(万|亿)?", plain, text).lower()


def same_value(a: str, b: str) -> bool:
    """Whether two values are one under number normalisation ("3%" and "3.0％", "CNY 1,000" and "CNY1000")."""
    return normalize_numbers(a) == normalize_numbers(b)


def supported_by(value: str, passage: str) -> bool:
    """Whether ``passage`` states ``value``: written in it as is, or once numbers are normalised. Plain
    substrings, on purpose: "8元" counts as written in a passage saying "18元" — a distractor the check
    refuses costs little, one it lets through costs a wrong key."""
    return bool(value) and (value in passage or normalize_numbers(value) in normalize_numbers(passage))


def value_kind(value: str, span_kind: str = "") -> str:
    """The kind of a value, for drawing distractors of the same kind: date, percent, amount, duration, count,
    or the named-entity kind synth typed the span with (person, organisation, place), else text."""
    if span_kind in ("person", "organisation", "place"):
        return span_kind
    low = unicodedata.normalize("NFKC", value).lower()
    if span_kind in ("date", "year") or _DATE.search(low):
        return "date"
    if not re.search(r"\d", low):
        return "text"
    if re.search(r"[%‰]", low):
        return "percent"
    unit = _unit(low)
    if any(unit.startswith(m) or unit.endswith(m) for m in _MONEY):
        return "amount"
    if unit in _DURATION or any(unit.endswith(d) for d in _DURATION if len(d) > 1):
        return "duration"
    return "count"


def _unit(value: str) -> str:
    return _NUM.sub("", unicodedata.normalize("NFKC", value)).strip().lower()


def _shape(value: str) -> str:
    return re.sub(r"\d+", "0", unicodedata.normalize("NFKC", value).replace(",", ""))


def _number(value: str) -> float | None:
    m = _NUM.search(normalize_numbers(value))
    return float(m.group(0)) if m else None


def _closeness(key: str, other: str) -> float:
    """How easily ``other`` passes for ``key``, 0..1: numbers by relative distance, text by overlap."""
    a, b = _number(key), _number(other)
    if a is not None and b is not None:
        return 1.0 - min(1.0, abs(a - b) / max(abs(a), abs(b), 1e-9))
    return SequenceMatcher(None, key, other).ratio()


# ---------------------------------------------------------------------------------------------------
# Facts: synth's seeds (attribute statements and typed spans, each checked by synth's check_pair)
# ---------------------------------------------------------------------------------------------------
class _Fact(BaseModel):
    chunk: dict
    sentence: str
    key: str
    question: str
    lang: str
    kind: str  # value kind
    subject: str = ""
    attribute: str = ""


def _facts(chunks: list[dict], seed: int) -> list[_Fact]:
    from domainlm.synth import SynthConfig, checked_facts, plain_question

    config = SynthConfig(seed=seed)  # two phrasings: one of them is the question without a lead-in
    facts = []
    for s in checked_facts(chunks, config, random.Random(seed)):
        facts.append(_Fact(chunk=s.chunk, sentence=s.sentence, key=s.answer, question=plain_question(s), lang=s.lang,
                           kind=value_kind(s.answer, s.kind), subject=s.subject, attribute=s.attribute))
    return facts


# ---------------------------------------------------------------------------------------------------
# Distractors
# ---------------------------------------------------------------------------------------------------
_ENTITIES = ("person", "organisation", "place")


def _tiers(fact: _Fact) -> list[tuple]:
    """The pools a fact's distractors come from, best first: the same attribute (another card's 年费), the same
    shape (digits aside, so the unit matches: "49公里" for "357公里", "2012年3月" for "1997年11月"), and
    for named entities the same kind in the same language. Numbers of another unit or granularity, and
    free text of another attribute, would be implausible options, so there is no wider tier."""
    tiers = [("shape", fact.kind, _shape(fact.key))]
    if fact.attribute:
        tiers.insert(0, ("attribute", fact.lang, fact.attribute))
    if fact.kind in _ENTITIES:
        tiers.append(("kind", fact.kind, fact.lang))
    return tiers


def _pools(facts: list[_Fact]) -> dict[tuple, list[str]]:
    """Values by attribute, by shape and by kind: where a fact's distractors are drawn from, best first."""
    pools: dict[tuple, list[str]] = defaultdict(list)
    for f in facts:
        for key in _tiers(f):
            if not any(same_value(v, f.key) for v in pools[key]):
                pools[key].append(f.key)
    return pools


def distractors_for(fact: _Fact, pools: dict[tuple, list[str]], k: int, rng: random.Random) -> list[str]:
    """Up to ``k`` values of the fact's kind from elsewhere in the KB that its passage does not support."""
    passage = fact.chunk["text"]
    chosen: list[str] = []
    for tier in _tiers(fact):
        candidates = list(pools.get(tier, []))
        rng.shuffle(candidates)
        for value in candidates:
            if len(chosen) == k:
                return chosen
            if (same_value(value, fact.key) or fact.key in value or value in fact.key or supported_by(value, passage)
                    or any(same_value(value, c) for c in chosen)):
                continue
            chosen.append(value)
    return chosen


# ---------------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------------
def _source(fact: _Fact) -> Source:
    chunk = fact.chunk
    at = chunk["text"].find(fact.sentence)
    return Source(chunk_id=chunk["id"], doc_id=chunk["doc_id"], source=chunk.get("source", ""),
                  passage=fact.sentence, span=[at, at + len(fact.sentence)])


def _cloze_text(fact: _Fact) -> str | None:
    """The sentence with the key blanked, when the key stands in it once (two blanks would be ambiguous)."""
    if fact.sentence.count(fact.key) != 1:
        return None
    return fact.sentence.replace(fact.key, BLANK, 1)


def _short_groups(facts: list[_Fact]) -> dict[tuple[str, str], list[_Fact]]:
    """Attribute facts of one subject in one chunk: a short-answer item asks for them together."""
    groups: dict[tuple[str, str], list[_Fact]] = defaultdict(list)
    for f in facts:
        if f.attribute:
            groups[(f.chunk["id"], f.subject)].append(f)
    return {k: v for k, v in groups.items() if len(v) >= 2}


def _short_question(group: list[_Fact]) -> str:
    names = [f.attribute for f in group]
    if group[0].lang == "zh":
        return f"请简述{group[0].subject}的{'、'.join(names[:-1])}和{names[-1]}。"
    return f"Briefly state the {', '.join(names[:-1])} and {names[-1]} of {group[0].subject}."


def _retrieval_rank(kb, question: str, chunk_id: str, depth: int = 10) -> int | None:
    """Where the item's own chunk ranks when the KB is searched with its question (BM25: cheap, lexical)."""
    try:
        hits = kb.search(question, k=depth, mode="bm25")
    except DomainlmError:
        return None
    return next((h.rank for h in hits if h.chunk_id == chunk_id), None)


_BASE = {"mcq": 0.2, "cloze": 0.5, "short": 0.6}


def _difficulty(item_type: str, key: str, distractors: list[str], points: int, rank: int | None,
                depth: int = 10) -> tuple[float, dict[str, float]]:
    """A difficulty estimate in 0..1 (uncalibrated: a heuristic to sort and balance a paper, not a measured
    p-value), the weighted mean of:

    - ``type`` (0.3): recognising an answer among options is easier than recalling it (mcq 0.2, cloze 0.5,
      short 0.6);
    - ``closeness`` (0.3): mcq — how close the distractors are to the key (relative distance of numbers,
      character overlap of names); cloze/short — how much must be recalled (key length, rubric points);
    - ``retrieval`` (0.4): the rank of the item's passage when the KB is searched with its question; a question
      whose words lead straight to its passage has a distinctive context, one whose passage ranks low is
      easily confused with other passages (not in the top ``depth``: 1).
    """
    if item_type == "mcq" and distractors:
        closeness = sum(_closeness(key, d) for d in distractors) / len(distractors)
    else:
        closeness = min(1.0, len(key) / 20 + 0.25 * max(0, points - 1))
    retrieval = 1.0 if rank is None else (rank - 1) / depth
    factors = {"type": _BASE[item_type], "closeness": round(closeness, 3), "retrieval": round(retrieval, 3)}
    score = 0.3 * factors["type"] + 0.3 * closeness + 0.4 * retrieval
    return round(score, 3), factors


def _level(score: float) -> Literal["easy", "medium", "hard"]:
    return "easy" if score < 0.35 else "medium" if score < 0.6 else "hard"


def _item(kb, item_type: str, fact: _Fact, question: str, key: str, *, choices: list[str] | None = None,
          answer: str | None = None, distractors: list[str] = (), rubric: list[RubricPoint] = ()) -> ExamItem:
    rank = _retrieval_rank(kb, question, fact.chunk["id"])
    score, factors = _difficulty(item_type, key, list(distractors), len(rubric), rank)
    return ExamItem(id=f"{item_type}-{sha256_text(question + '|' + key)[:10]}", type=item_type, question=question,
                    key=key, choices=choices, answer=answer if answer is not None else key,
                    distractors=list(distractors), rubric=list(rubric), source=_source(fact), kind=fact.kind,
                    difficulty=score, level=_level(score), difficulty_factors=factors, lang=fact.lang)


def _chunks(kb, config: ExamConfig, rng: random.Random) -> tuple[list[dict], list[str] | None]:
    """The chunks read, and (with a topic query) the ids of those items may come from, in rank order."""
    chunks = list(kb.chunks)
    topic: list[str] | None = None
    if config.query:
        topic = [h.chunk_id for h in kb.search(config.query, k=config.query_k)]
    if len(chunks) > config.max_chunks:
        keep = set(topic or ())
        rest = [c for c in chunks if c["id"] not in keep]
        chunks = [c for c in chunks if c["id"] in keep] + rng.sample(rest, max(0, config.max_chunks - len(keep)))
    return chunks, topic


def make_exam(kb_dir: str | Path, config: ExamConfig | None = None, *, kb=None, cache: dict | None = None) -> Exam:
    """An exam of up to ``config.n`` items from the KB at ``kb_dir`` (``kb``: the same KB already open).

    ``cache``: a dict the caller keeps between calls on one open KB (a server's tool): the facts read from a
    set of chunks are kept in it, so a second exam does not tag every sentence again."""
    from domainlm.kb import open_kb

    config = config or ExamConfig()
    kb = kb if kb is not None else open_kb(kb_dir)
    if not kb.chunks:
        raise DomainlmError(f"{kb_dir}: the knowledge base is empty; nothing to make an exam from")
    rng = random.Random(config.seed)
    chunks, topic = _chunks(kb, config, rng)
    # The facts depend on the chunks read, not on the seed (questions take synth's plainest phrasing).
    signature = sha256_text("\n".join(c["id"] for c in chunks))
    facts = cache.get(signature) if cache is not None else None
    if facts is None:
        facts = _facts(chunks, config.seed)
        if cache is not None:
            cache[signature] = facts
    pools = _pools(facts)
    candidates = [f for f in facts if topic is None or f.chunk["id"] in topic]
    rng.shuffle(candidates)
    if topic is not None:  # a topic exam asks about the best matching passages first
        order = {cid: i for i, cid in enumerate(topic)}
        candidates.sort(key=lambda f: order[f.chunk["id"]])
    types = list(dict.fromkeys(config.types))
    want = {t: config.n // len(types) + (1 if i < config.n % len(types) else 0) for i, t in enumerate(types)}
    groups = _short_groups(candidates) if "short" in types else {}
    items: list[ExamItem] = []
    used: set[tuple[str, str]] = set()  # (chunk id, key): a fact is asked once
    asked: set[str] = set()  # questions already in the paper
    few_values = 0  # facts that could not be multiple choice: too few values of their kind for distractors

    def deficit(t: str) -> int:
        return want[t] - sum(1 for i in items if i.type == t)

    for fact in candidates:
        if len(items) == config.n:
            break
        if (fact.chunk["id"], fact.key) in used:
            continue
        for item_type in sorted(types, key=lambda t: -deficit(t)):
            if deficit(item_type) <= 0:
                continue
            item = None
            if item_type == "mcq":
                wrong = distractors_for(fact, pools, config.choices - 1, rng)
                few_values += len(wrong) < config.choices - 1
                if len(wrong) == config.choices - 1:
                    options = [fact.key, *wrong]
                    rng.shuffle(options)
                    item = _item(kb, "mcq", fact, fact.question, fact.key, choices=options,
                                 answer=LETTERS[options.index(fact.key)], distractors=wrong)
            elif item_type == "cloze":
                text = _cloze_text(fact)
                if text is not None:
                    item = _item(kb, "cloze", fact, text, fact.key)
            else:
                others = groups.get((fact.chunk["id"], fact.subject)) or []
                group = [fact, *[g for g in others if g is not fact and (g.chunk["id"], g.key) not in used]][:3]
                if len(group) >= 2:
                    colon = "：" if fact.lang == "zh" else ": "
                    rubric = [RubricPoint(point=f"{g.attribute}{colon}{g.key}", answer=g.key, evidence=g.sentence)
                              for g in group]
                    key = ("；" if fact.lang == "zh" else "; ").join(p.point for p in rubric)
                    item = _item(kb, "short", fact, _short_question(group), key, rubric=rubric)
                    used.update((g.chunk["id"], g.key) for g in group)
                else:
                    rubric = [RubricPoint(point=fact.key, answer=fact.key, evidence=fact.sentence, score=2)]
                    item = _item(kb, "short", fact, fact.question, fact.key, rubric=rubric)
            if item is not None and (_question_key(item) in asked or any(
                    _gives_away(item, other) or _gives_away(other, item) for other in items)):
                # One question twice (a sentence repeated in two documents), or one item's wording handing over
                # another's answer: the item is not made.
                item = None
            if item is not None:
                items.append(item)
                asked.add(_question_key(item))
                used.add((fact.chunk["id"], fact.key))
                break
    warnings = []
    if len(items) < config.n:
        warnings.append(f"{len(items)} of {config.n} items: the KB holds {len(candidates)} facts the rules can stand "
                        "behind" + (f" in the passages found for {config.query!r}" if config.query else ""))
    short_of = [f"{want[t] - deficit(t)} of {want[t]} {t}" for t in types if deficit(t) > 0]
    if short_of:
        warnings.append("made " + ", ".join(short_of) + (f"; {few_values} facts had fewer than {config.choices - 1} "
                        "values of their kind elsewhere in the KB for distractors" if few_values else ""))
    return Exam(kb=str(kb_dir), config=config, items=items, warnings=warnings)


def _question_key(item: ExamItem) -> str:
    return re.sub(r"\s+", "", item.question)


def item_keys(item: ExamItem) -> list[str]:
    """The values an item asks for: its key, or each rubric point's answer."""
    return [p.answer for p in item.rubric] or [item.key]


def _gives_away(item: ExamItem, other: ExamItem) -> bool:
    """Whether ``other``'s question shows a value ``item`` asks for (two items on one sentence often do)."""
    return any(key in other.question for key in item_keys(item))


# ---------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------
def item_problems(item: ExamItem, chunk: dict | None) -> list[str]:
    """Why ``item`` is not valid against its source chunk (empty when it is)."""
    if chunk is None:
        return [f"source chunk {item.source.chunk_id} is not in the KB"]
    text = chunk["text"]
    start, end = item.source.span
    problems = []
    if text[start:end] != item.source.passage:
        problems.append("passage is not the chunk's text at its span")
    if item.type != "short" and (not item.key or item.key not in item.source.passage):
        problems.append("key not supported by its passage")
    for d in item.distractors:
        if supported_by(d, text):
            problems.append(f"distractor {d!r} is supported by the passage")
        if same_value(d, item.key):
            problems.append(f"distractor {d!r} equals the key")
    if item.type == "mcq":
        options = item.choices or []
        if len(options) < 2 or len({normalize_numbers(o) for o in options}) != len(options):
            problems.append("choices missing or repeated")
        letter = LETTERS.index(item.answer) if item.answer in LETTERS[:len(options)] else None
        if letter is None or options[letter] != item.key:
            problems.append("answer letter does not point at the key")
        if sorted(options) != sorted([item.key, *item.distractors]):
            problems.append("choices are not the key and the distractors")
    elif item.type == "cloze":
        if item.question.count(BLANK) != 1 or item.question.replace(BLANK, item.key) != item.source.passage:
            problems.append("cloze does not refill to its passage")
    else:
        if not item.rubric:
            problems.append("short answer without a rubric")
        for p in item.rubric:
            if p.answer not in p.evidence or p.evidence not in text:
                problems.append(f"rubric point {p.point!r} not supported by the passage")
    return problems


def validate_exam(exam: Exam, kb) -> dict:
    """Every item checked against the KB, each on its own and against the others (a fact asked twice, a key
    shown in another item's question): ``{"n", "valid", "validity", "by_type", "problems"}``."""
    problems: list[dict] = []
    seen_questions: dict[str, str] = {}
    seen_facts: dict[tuple, str] = {}
    by_type: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "valid": 0})
    for item in exam.items:
        found = item_problems(item, kb.chunk(item.source.chunk_id))
        question = _question_key(item)
        if question in seen_questions:
            found.append(f"duplicate of {seen_questions[question]}")
        for other in exam.items:
            if other is not item and _gives_away(item, other):
                found.append(f"key shown in the question of {other.id}")
        for fk in [(item.source.chunk_id, key) for key in item_keys(item)]:
            if fk in seen_facts:
                found.append(f"asks the fact of {seen_facts[fk]} again")
            seen_facts.setdefault(fk, item.id)
        seen_questions.setdefault(question, item.id)
        by_type[item.type]["n"] += 1
        if found:
            problems.append({"id": item.id, "type": item.type, "problems": found})
        else:
            by_type[item.type]["valid"] += 1
    n = len(exam.items)
    valid = n - len(problems)
    return {"n": n, "valid": valid, "validity": round(valid / n, 4) if n else 0.0, "by_type": dict(by_type),
            "problems": problems}


# ---------------------------------------------------------------------------------------------------
# Review: a reviewer's fix of an item, rebuilt and re-checked as a made item is
# ---------------------------------------------------------------------------------------------------
class RubricFix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    point: str
    answer: str
    evidence: str | None = None  # None: the item's passage
    score: int = Field(1, ge=1)


class ItemFix(BaseModel):
    """What a reviewer may change in an item; a field left out keeps the item's own. The rest follows from
    these: an mcq's options and letter (the key keeps its letter), a cloze's blanked sentence when only the
    key or passage changed, the passage's span in its chunk, the difficulty."""

    model_config = ConfigDict(extra="forbid")
    question: str | None = None
    key: str | None = None
    distractors: list[str] | None = None  # mcq
    passage: str | None = None  # another sentence of the same chunk
    rubric: list[RubricFix] | None = None  # short


def revise_item(item: ExamItem, fix: ItemFix, chunk: dict | None, kb=None) -> ExamItem:
    """``item`` with the reviewer's ``fix`` applied, its derived fields rebuilt from its source ``chunk``.
    Nothing is checked here: :func:`review_problems` says whether the result is a valid item."""
    text = chunk["text"] if chunk else ""
    passage = item.source.passage if fix.passage is None else fix.passage.strip()
    at = text.find(passage) if passage else -1
    # A passage not in the chunk keeps an empty span: item_problems reports it as not the chunk's text.
    span = [at, at + len(passage)] if at >= 0 else [0, 0]
    source = item.source.model_copy(update={"passage": passage, "span": span})
    key = item.key if fix.key is None else fix.key.strip()
    question = item.question if fix.question is None else fix.question.strip()
    distractors = list(item.distractors) if fix.distractors is None else [d.strip() for d in fix.distractors if d.strip()]
    choices, answer, rubric = item.choices, key, list(item.rubric)
    if item.type == "mcq":
        # The key keeps its letter and a kept distractor its place; a new one takes a dropped one's place,
        # further ones come last. A fix of the key alone thus leaves the options in their order.
        letter = LETTERS.index(item.answer) if item.answer in LETTERS else 0
        slots = [c for c in item.choices or [] if c != item.key]
        new = [d for d in distractors if d not in slots]
        slots = [c if c in distractors else (new.pop(0) if new else None) for c in slots]
        slots = [c for c in slots if c is not None] + new
        place = min(letter, len(slots))
        choices = [*slots[:place], key, *slots[place:]]
        answer = LETTERS[place] if place < len(LETTERS) else "?"
    elif item.type == "cloze" and fix.question is None and (key != item.key or passage != item.source.passage):
        if passage.count(key) == 1:  # the new sentence or key, blanked as a made item is
            question = passage.replace(key, BLANK, 1)
    elif item.type == "short":
        if fix.rubric is not None:
            rubric = [RubricPoint(point=r.point.strip(), answer=r.answer.strip(), evidence=(r.evidence or passage).strip(),
                                  score=r.score) for r in fix.rubric]
            if fix.key is None:
                sep = "；" if item.lang == "zh" else "; "
                key = rubric[0].answer if len(rubric) == 1 else sep.join(p.point for p in rubric)
        elif key != item.key and len(rubric) == 1:  # one point: the key is its answer
            rubric = [RubricPoint(point=key, answer=key, evidence=passage, score=rubric[0].score)]
        answer = key
    rank = _retrieval_rank(kb, question, item.source.chunk_id) if kb is not None else None
    score, factors = _difficulty(item.type, key, distractors, len(rubric), rank)
    kind = value_kind(key, item.kind if item.kind in _ENTITIES else "")
    return item.model_copy(update={"question": question, "key": key, "choices": choices, "answer": answer,
                                   "distractors": distractors, "rubric": rubric, "source": source, "kind": kind,
                                   "difficulty": score, "level": _level(score), "difficulty_factors": factors})


def review_problems(item: ExamItem, chunk: dict | None, others: list[ExamItem], original: ExamItem | None = None) -> list[str]:
    """Why a reviewed ``item`` cannot stand in the paper beside ``others`` (empty when it can): the checks of
    :func:`item_problems`, the paper-wide ones of :func:`validate_exam` against ``others``, and, for a fix of
    ``original``, that it changes something."""
    problems = item_problems(item, chunk)
    if not item.question.strip():
        problems.append("question is empty")
    for other in others:
        if _question_key(other) == _question_key(item):
            problems.append(f"duplicate of {other.id}")
        if _gives_away(item, other):
            problems.append(f"key shown in the question of {other.id}")
        if _gives_away(other, item):
            problems.append(f"question shows the key of {other.id}")
    if original is not None and item.model_dump(exclude={"difficulty", "level", "difficulty_factors", "kind"}) == \
            original.model_dump(exclude={"difficulty", "level", "difficulty_factors", "kind"}):
        problems.append("the fix changes nothing (accept the item instead)")
    return problems


def item_prompt(item: ExamItem) -> str:
    """The item as a question put to a model: the question, and an mcq's lettered options."""
    lines = [item.question]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices or [], strict=False)]
    return "\n".join(lines)


def item_answer(item: ExamItem) -> str:
    """The item's right answer as a model would give it: an mcq's letter and option, else the key."""
    return f"{item.answer}. {item.key}" if item.type == "mcq" else item.key


# ---------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------
_LABELS = {"zh": {"title": "试卷", "key": "答案与解析", "mcq": "单项选择题", "cloze": "填空题", "short": "简答题",
                  "answer": "答案", "rubric": "评分要点", "source": "出处", "difficulty": "难度"},
           "en": {"title": "Exam", "key": "Answer key", "mcq": "Multiple choice", "cloze": "Fill in the blank",
                  "short": "Short answer", "answer": "Answer", "rubric": "Rubric", "source": "Source",
                  "difficulty": "Difficulty"}}


def _labels(exam: Exam) -> dict[str, str]:
    zh = sum(1 for i in exam.items if i.lang == "zh")
    return _LABELS["zh" if zh * 2 >= len(exam.items) else "en"]


def _numbered(exam: Exam) -> list[tuple[str, list[tuple[int, ExamItem]]]]:
    """Items grouped by type (in the paper's order: mcq, cloze, short), numbered through."""
    sections, number = [], 0
    for t in ITEM_TYPES:
        group = [i for i in exam.items if i.type == t]
        if group:
            sections.append((t, [(number + k + 1, i) for k, i in enumerate(group)]))
            number += len(group)
    return sections


def _key_lines(item: ExamItem, labels: dict[str, str]) -> list[str]:
    lines = [f"{labels['answer']}: {item.answer}" + (f" ({item.key})" if item.type == "mcq" else "")]
    for p in item.rubric:
        lines.append(f"{labels['rubric']}: {p.point} ({p.score})")
    lines.append(f"{labels['source']}: {item.source.source} [{item.source.chunk_id} {item.source.span[0]}–"
                 f"{item.source.span[1]}] “{item.source.passage}”")
    lines.append(f"{labels['difficulty']}: {item.level} ({item.difficulty:.2f})")
    return lines


def to_markdown(exam: Exam) -> str:
    labels = _labels(exam)
    out = [f"# {labels['title']}", ""]
    for t, numbered in _numbered(exam):
        out += [f"## {labels[t]}", ""]
        for number, item in numbered:
            out.append(f"{number}. {item.question}")
            for letter, choice in zip(LETTERS, item.choices or [], strict=False):
                out.append(f"   - {letter}. {choice}")
            out.append("")
    out += [f"## {labels['key']}", ""]
    for _, numbered in _numbered(exam):
        for number, item in numbered:
            lines = _key_lines(item, labels)
            out.append(f"{number}. {lines[0]}")
            out += [f"   - {line}" for line in lines[1:]]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def to_docx(exam: Exam, path: str | Path) -> Path:
    """The paper, a page break, then the answer key, as a Word file (written atomically)."""
    from docx import Document
    from docx.enum.text import WD_BREAK

    from domainlm.io import atomic_write

    labels = _labels(exam)
    doc = Document()
    doc.add_heading(labels["title"], level=0)
    for t, numbered in _numbered(exam):
        doc.add_heading(labels[t], level=1)
        for number, item in numbered:
            doc.add_paragraph(f"{number}. {item.question}")
            for letter, choice in zip(LETTERS, item.choices or [], strict=False):
                doc.add_paragraph(f"{letter}. {choice}", style="List Bullet")
    doc.paragraphs[-1].add_run().add_break(WD_BREAK.PAGE)
    doc.add_heading(labels["key"], level=1)
    for _, numbered in _numbered(exam):
        for number, item in numbered:
            lines = _key_lines(item, labels)
            doc.add_paragraph(f"{number}. {lines[0]}")
            for line in lines[1:]:
                doc.add_paragraph(line, style="List Bullet")
    path = Path(path)
    with atomic_write(path, "wb", encoding=None) as handle:
        doc.save(handle)
    return path


def write_exam(exam: Exam, out: str | Path) -> Path:
    """``out`` by its suffix: .md, .docx or .json (the whole exam, for review and re-validation)."""
    from domainlm.io import write_json, write_text

    out = Path(out)
    suffix = exam_format(out)
    if suffix == ".md":
        return write_text(out, to_markdown(exam))
    if suffix == ".docx":
        return to_docx(exam, out)
    return write_json(out, exam.model_dump(mode="json"))


def exam_format(out: str | Path) -> str:
    """The format ``out`` asks for by its suffix; an unknown one is an error (checked before any work)."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".md", ".docx", ".json"):
        raise DomainlmError(f"{out}: unknown exam format '{suffix}' (use .md, .docx or .json)")
    return suffix


# ---------------------------------------------------------------------------------------------------
# As a tool
# ---------------------------------------------------------------------------------------------------
TOOL = {"type": "function", "function": {
    "name": "make_exam",
    "description": "Make an exam (multiple choice, fill in the blank, short answer) from the knowledge base, "
                   "with an answer key citing each item's passage.",
    "parameters": {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 50, "description": "How many items"},
        "types": {"type": "array", "items": {"type": "string", "enum": list(ITEM_TYPES)}},
        "query": {"type": "string", "description": "Topic: items come from passages about it"},
        "seed": {"type": "integer"}}}}}


def exam_tool(kb):
    """``make_exam`` as a registered tool over an open KB (a server's ``--kb``): ``{"items", "validation"}``."""
    from domainlm.plugins.registry import Tool

    cache: dict = {}

    def run(arguments: dict) -> dict:
        try:
            # A model waits on the answer: a large KB is sampled (the facts are cached for the next call).
            config = ExamConfig(max_chunks=500, **{k: arguments[k] for k in ("n", "types", "query", "seed")
                                                   if k in arguments})
            exam = make_exam(kb.path, config, kb=kb, cache=cache)
        except (DomainlmError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            return {"error": str(exc).splitlines()[0]}
        report = validate_exam(exam, kb)
        return {"items": [i.model_dump(mode="json", exclude={"difficulty_factors"}) for i in exam.items],
                "warnings": exam.warnings, "validation": {k: report[k] for k in ("n", "valid", "validity")}}

    fn = TOOL["function"]
    return Tool(fn["name"], fn["description"], fn["parameters"], run, source="builtin (--kb)")
