"""Query-side handling of dates, numbers and named entities: extract them, normalise them, and use them to
re-order search hits.

Plain BM25 and plain dense retrieval both treat "2019年3月" and "二〇一九年三月" as different text and
"1998年" and "1999年" as almost the same text, so among near-duplicate passages (a yearly report, a
revised rule) the one with the question's date or amount does not reliably come first. This module:

- :func:`analyze` finds dates (1998年, 2019年3月5日, 二〇一九年, 3月5日, 2019-03-05), numbers with units
  (3.5%, 百分之三点五, 12万元, 三千, 30年) and named entities (jieba's part-of-speech tags nr / ns / nt /
  nz, the same jieba the KB's BM25 uses), each with a canonical key equal across surface forms;
- :func:`expand` appends the canonical surface forms of a query's dates and numbers, so BM25 finds a
  passage that writes them differently from the question;
- :func:`rerank` re-orders the first hits: a chunk that contains the query's values (in any form) moves
  up; one that holds a *conflicting* value of the same kind in the same slot (next to the same words as
  in the query, e.g. "成立于1998年" vs "成立于2001年") moves down. A query without such values is left
  unchanged.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from domainlm.kb.text import STOPWORDS, normalize

if TYPE_CHECKING:
    from domainlm.kb.search import Hit

# ---------------------------------------------------------------------------------------------------
# Chinese numerals
# ---------------------------------------------------------------------------------------------------

_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_PLACE = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10**4, "亿": 10**8}
_CN_DIGITS = "零〇一二两三四五六七八九"
_CN_CHARS = _CN_DIGITS + "十百千万亿"
# Numeral words that are adverbs or idioms, not quantities ("十分重要", "千万不要", "万一").
_NOT_NUMBERS = ("十分", "千万", "万一", "万分", "百分", "一一")


def cn_to_number(text: str) -> float | None:
    """Value of a Chinese numeral: positional ("三千五百", "十二", "两万", "三点五") or digit by digit
    ("一九九八", "二〇一九"). None when ``text`` is not one."""
    if not text:
        return None
    if "点" in text:
        whole, _, frac = text.partition("点")
        head = cn_to_number(whole) if whole else 0.0
        if head is None or not frac or any(ch not in _CN_DIGIT for ch in frac):
            return None
        return head + float("0." + "".join(str(_CN_DIGIT[ch]) for ch in frac))
    if any(ch not in _CN_DIGIT and ch not in _CN_PLACE and ch not in _CN_BIG for ch in text):
        return None
    if len(text) > 1 and all(ch in _CN_DIGIT for ch in text):
        return float("".join(str(_CN_DIGIT[ch]) for ch in text))  # 一九九八 -> 1998
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CN_DIGIT:
            digit = _CN_DIGIT[ch]
        elif ch in _CN_PLACE:
            section += (1 if digit is None else digit) * _CN_PLACE[ch]  # 十二: a leading 十 is 10
            digit = None
        else:  # 万 / 亿 scale everything before them
            section += digit or 0
            total = (total + section) * _CN_BIG[ch] if total < _CN_BIG[ch] else total + section * _CN_BIG[ch]
            section, digit = 0, None
    return float(total + section + (digit or 0))


def number_to_cn(value: float, digit_by_digit: bool = False) -> str:
    """A number written in Chinese numerals: 3500 -> 三千五百, 12 -> 十二, 3.5 -> 三点五; years digit by
    digit with ``digit_by_digit`` (1998 -> 一九九八)."""
    digits = "〇一二三四五六七八九" if digit_by_digit else "零一二三四五六七八九"
    if digit_by_digit:
        return "".join(digits[int(ch)] for ch in str(int(value)))
    if value != int(value):
        whole, frac = f"{value:.6f}".rstrip("0").split(".")
        return number_to_cn(float(whole)) + "点" + "".join(digits[int(ch)] for ch in frac)
    n = int(value)
    if n == 0:
        return "零"
    if n >= 10**8:
        rest = n % 10**8
        return number_to_cn(n // 10**8) + "亿" + (("零" if rest < 10**7 else "") + number_to_cn(rest) if rest else "")
    if n >= 10**4:
        rest = n % 10**4
        return number_to_cn(n // 10**4) + "万" + (("零" if rest < 1000 else "") + number_to_cn(rest) if rest else "")
    out, zero = "", False
    for place, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // place % 10
        if d:
            out += ("零" if zero and out else "") + digits[d] + name
            zero = False
        else:
            zero = True
    return out[1:] if out.startswith("一十") else out  # 十二, not 一十二


# ---------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """A date, number or named entity found in a text (offsets into the normalised text).

    ``key`` is canonical, equal across surface forms: a date ``(year, month, day)`` with None for what the
    text leaves out; a number ``(value, unit)``; an entity ``(name,)``. ``slot`` is what a conflicting
    value must share: a date's fields present, a number's unit, an entity's type (PER/LOC/ORG/MISC)."""

    kind: str  # "date" | "number" | "entity"
    key: tuple
    slot: str
    text: str
    start: int
    end: int

    @property
    def canonical(self) -> str:
        if self.kind == "date":
            return _date_str(*self.key)
        if self.kind == "number":
            return f"{_fmt(self.key[0])}{self.key[1]}"
        return self.key[0]


def _date_str(y, m, d) -> str:
    parts = [str(y) if y is not None else "*"]
    if m is not None or d is not None:
        parts.append(f"{m:02d}" if m is not None else "*")
    if d is not None:
        parts.append(f"{d:02d}")
    return "-".join(parts)


def _fmt(v: float) -> str:
    return f"{v:.6g}" if v != int(v) or abs(v) >= 1e15 else str(int(v))


_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_CNNUM = rf"[{_CN_CHARS}]+(?:点[{_CN_DIGITS}]+)?"
_YEAR = rf"(?<![\d.])(\d{{4}}|[{_CN_DIGITS}]{{4}})\s*年"
_MONTH = r"(?<![\d.])(1[0-2]|0?[1-9]|十[一二]?|[一二三四五六七八九])\s*月"
_DAY = r"(3[01]|[12]\d|0?[1-9]|[二三]?十[一二三四五六七八九]?|[一二三四五六七八九])\s*[日号]"
# 2019-03-05 / 2019/3/5, or 1998年 / 1998年3月 / 1998年3月5日 / 3月 / 3月5日 (a day alone is too ambiguous).
_DATE = re.compile(
    rf"(?:(?<![\d.])(\d{{4}})[-/](\d{{1,2}})(?:[-/](\d{{1,2}}))?(?![\d.]))|(?:(?:{_YEAR})?(?:{_MONTH}(?:{_DAY})?)?)"
)
# Units after a number: general measure words and currencies (longest first so 平方公里 beats 公里).
_UNITS = sorted(
    "元 美元 日元 欧元 英镑 港元 港币 人民币 块 人 名 位 岁 年 个月 天 周 小时 分钟 秒 次 届 场 座 部 集 件 项 种 家 所 "
    "条 首 张 本 卷 册 期 层 倍 度 米 厘米 毫米 公里 千米 平方米 平方公里 公顷 亩 吨 公斤 千克 克 升 毫升 英里 英尺 户 间 "
    "台 辆 架 艘 枚 颗 只 头 篇 字 页 票 千瓦 瓦 伏 世纪 年代 分 个".split(),
    key=len,
    reverse=True,
)
_UNIT_ALIAS = {"块": "元", "人民币": "元", "千克": "公斤", "千米": "公里", "名": "人", "位": "人"}
_NUMBER = re.compile(
    rf"(百分之)?({_NUM}|{_CNNUM})\s*(多|余)?\s*(万|亿)?\s*(%|‰|{'|'.join(map(re.escape, _UNITS))})?"
)
_ENTITY_TAGS = {"nr": "PER", "nrt": "PER", "nrfg": "PER", "ns": "LOC", "nt": "ORG", "nz": "MISC"}


def _cn_or_arabic(text: str) -> float | None:
    if text[0].isdigit():
        try:
            return float(text.replace(",", ""))
        except ValueError:
            return None
    return cn_to_number(text)


def _dates(text: str) -> list[Value]:
    out = []
    for m in _DATE.finditer(text):
        if m.end() == m.start():
            continue
        if m.group(1):  # 2019-03-05 / 2019/3/5
            y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None
        else:
            y = int(_cn_or_arabic(m.group(4))) if m.group(4) else None
            mo = int(_cn_or_arabic(m.group(5))) if m.group(5) else None
            d = int(_cn_or_arabic(m.group(6))) if m.group(6) else None
        if mo is not None and not 1 <= mo <= 12 or d is not None and not 1 <= d <= 31:
            continue
        if y is None and d is None and m.end() < len(text) and text[m.end()] == "天":
            continue  # 五月天 is a band, not May
        slot = "".join(c for c, v in zip("ymd", (y, mo, d), strict=True) if v is not None)
        out.append(Value("date", (y, mo, d), slot, m.group(0), m.start(), m.end()))
    return out


def _numbers(text: str, taken: list[tuple[int, int]]) -> list[Value]:
    out = []
    for m in _NUMBER.finditer(text):
        start, end = m.start(), m.end()
        if any(a < end and start < b for a, b in taken):
            continue
        percent, num, _approx, big, unit = m.groups()
        chinese = not num[0].isdigit()
        if chinese and (
            any(text.startswith(w, start + (3 if percent else 0)) for w in _NOT_NUMBERS)
            # 百济, 千色, 万达: a numeral cannot start with a bare 百/千/万/亿; 三一堂: digit by digit is
            # only a year's way of writing (handled as a date)
            or num[0] in "百千万亿"
            or (len(num) > 1 and all(ch in _CN_DIGIT for ch in num))
        ):
            continue
        if not chinese and start and re.match(r"[A-Za-z._-]", text[start - 1]):
            continue  # part of a code or identifier (v2, AK-130)
        value = _cn_or_arabic(num)
        if value is None:
            continue
        if big:
            value *= _CN_BIG[big]
        if percent or unit in ("%",):
            unit = "%"
        unit = _UNIT_ALIAS.get(unit or "", unit or "")
        # A Chinese numeral below ten is mostly part of a word or a question ("统一", "一种", "哪一年").
        if chinese and value < 10 and not percent:
            continue
        out.append(Value("number", (round(value, 6), unit), unit, m.group(0).strip(), start, start + len(m.group(0).rstrip())))
    return out


@functools.lru_cache(maxsize=1)
def _posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg.POSTokenizer(jieba.Tokenizer())


def _entities(text: str, taken: list[tuple[int, int]]) -> list[Value]:
    out, pos = [], 0
    known = _posseg().tokenizer.FREQ
    for pair in _posseg().cut(text):
        word, flag = pair.word, pair.flag
        start, pos = pos, pos + len(word)
        kind = _ENTITY_TAGS.get(flag)
        if kind is None or len(word.strip()) < 2 or any(a < pos and start < b for a, b in taken):
            continue
        # jieba's HMM guesses unknown words and their tags: trusted for person names (how new names are
        # found), not for the rest ("工业上乙二醛" -> "上乙二醛"/nz).
        if kind != "PER" and not known.get(word):
            continue
        out.append(Value("entity", (word,), kind, word, start, pos))
    return out


@functools.lru_cache(maxsize=4096)
def _dates_and_numbers(text: str) -> tuple[Value, ...]:
    """The dates and numbers of normalised ``text``: regular expressions, cheap."""
    dates = _dates(text)
    numbers = _numbers(text, [(v.start, v.end) for v in dates])
    return tuple(sorted(dates + numbers, key=lambda v: v.start))


@functools.lru_cache(maxsize=4096)
def _analyze_normalized(text: str) -> tuple[Value, ...]:
    found = _dates_and_numbers(text)
    # jieba's POS tagging (an HMM in pure Python, ~10 ms for a 400-character chunk) is the slow part.
    entities = _entities(text, [(v.start, v.end) for v in found])
    return tuple(sorted(found + tuple(entities), key=lambda v: v.start))


def analyze(text: str) -> list[Value]:
    """The dates, numbers and named entities of ``text`` (normalised first: width, case, traditional
    characters), in order of appearance."""
    if not isinstance(text, str) or not text.strip():
        return []
    return list(_analyze_normalized(normalize(text)))


# ---------------------------------------------------------------------------------------------------
# Query analysis, expansion and reranking
# ---------------------------------------------------------------------------------------------------

# How many characters around a value count as its slot, in the query (for anchor words) and in a chunk.
QUERY_WINDOW = 8
CHUNK_WINDOW = 12
# Entities weigh less: lexical search already matches names, and jieba's tags are noisier than a date.
KIND_WEIGHT = {"date": 1.0, "number": 1.0, "entity": 0.3}
# Entity types reliable enough to call a different name a conflict (jieba tags common nouns such as
# 城市 or 东西 as places, and anything as nz).
CONFLICT_ENTITY_TYPES = ("PER", "ORG")


@dataclass
class QueryAnalysis:
    query: str
    values: list[Value] = field(default_factory=list)
    anchors: list[tuple[str, ...]] = field(default_factory=list)  # per value: query words next to it

    def __bool__(self) -> bool:
        return bool(self.values)


def analyze_query(query: str) -> QueryAnalysis:
    """The query's values, each with its anchors: the content words within a few characters of it, which
    name its slot ("成立于" in "哪家公司成立于1998年")."""
    values = analyze(query)
    if not values:
        return QueryAnalysis(query if isinstance(query, str) else "")
    text = normalize(query)
    words, pos = [], 0
    for word in _posseg().tokenizer.cut(text, HMM=False):
        words.append((word, pos, pos + len(word)))
        pos += len(word)
    spans = [(v.start, v.end) for v in values]
    anchors = []
    for v in values:
        near = [
            w for w, a, b in words
            if len(w) >= 2 and w not in STOPWORDS and re.search(r"\w", w) and not any(x < b and a < y for x, y in spans)
            and (v.start - QUERY_WINDOW <= b <= v.start or v.end <= a <= v.end + QUERY_WINDOW)
        ]
        anchors.append(tuple(dict.fromkeys(near)))
    return QueryAnalysis(query, values, anchors)


def expand(query: str, analysis: QueryAnalysis | None = None) -> str:
    """``query`` plus the other surface forms of its dates and numbers (Arabic and Chinese numerals), so
    a keyword index matches a passage that writes them differently from the question."""
    analysis = analysis if analysis is not None else analyze_query(query)
    text = normalize(query) if isinstance(query, str) else ""
    extra = []
    for v in analysis.values:
        for form in surface_forms(v):
            if form not in text and form not in extra:
                extra.append(form)
    return query if not extra else f"{query} {' '.join(extra)}"


def surface_forms(v: Value) -> list[str]:
    """How a date or number may be written: Arabic and Chinese numerals (entities: the name itself)."""
    if v.kind == "entity":
        return [v.key[0]]
    if v.kind == "date":
        y, m, d = v.key
        arabic = (f"{y}年" if y is not None else "") + (f"{m}月" if m is not None else "") + (f"{d}日" if d is not None else "")
        chinese = (f"{number_to_cn(y, digit_by_digit=True)}年" if y is not None else "") + (
            f"{number_to_cn(m)}月" if m is not None else "") + (f"{number_to_cn(d)}日" if d is not None else "")
        return [arabic, chinese]
    value, unit = v.key
    if unit == "%":
        return [f"{_fmt(value)}%", f"百分之{number_to_cn(value)}"]
    forms = [f"{_fmt(value)}{unit}", f"{number_to_cn(value)}{unit}"]
    if value >= 10**4 and value == int(value):
        big, scale = ("亿", 10**8) if value >= 10**8 else ("万", 10**4)
        forms.append(f"{_fmt(value / scale)}{big}{unit}")
    return forms


def _matches(q: Value, c: Value) -> bool:
    """Whether chunk value ``c`` states query value ``q`` (a chunk date may be more precise)."""
    if q.kind != c.kind:
        return False
    if q.kind == "date":
        return all(a is None or a == b for a, b in zip(q.key, c.key, strict=True))
    if q.kind == "number":
        return q.key[0] == c.key[0] and (not q.key[1] or not c.key[1] or q.key[1] == c.key[1])
    return q.key == c.key


def _conflicts(q: Value, c: Value) -> bool:
    """Whether chunk value ``c`` is a different value of the same kind and slot as ``q``."""
    if q.kind != c.kind or _matches(q, c):
        return False
    if q.kind == "date":
        shared = [(a, b) for a, b in zip(q.key, c.key, strict=True) if a is not None and b is not None]
        return bool(shared) and any(a != b for a, b in shared)
    if q.kind == "number":
        return bool(q.key[1]) and q.key[1] == c.key[1]
    return q.slot == c.slot and q.slot in CONFLICT_ENTITY_TYPES and q.key[0] not in c.key[0] and c.key[0] not in q.key[0]


def evidence(analysis: QueryAnalysis, chunk_text: str) -> float:
    """How far ``chunk_text`` agrees with the query's values, in [-1, 1]: per value +1 when the chunk
    states it (any surface form), -1 when it states a conflicting value of the same kind next to one of
    the value's query anchors, else 0; weighted by kind (:data:`KIND_WEIGHT`) and averaged over the
    values, so a query naming only entities moves hits less than one naming a date."""
    if not analysis.values or not isinstance(chunk_text, str) or not chunk_text:
        return 0.0
    text = normalize(chunk_text)
    found = _dates_and_numbers(text)
    total = 0.0
    for q, anchors in zip(analysis.values, analysis.anchors, strict=True):
        w = KIND_WEIGHT[q.kind]
        if q.kind == "entity":
            hit = q.key[0] in text  # a name is matched as text: it may be cut differently in the chunk
        else:
            hit = any(_matches(q, c) for c in found)
        if hit or not any(a in text for a in anchors):
            # A conflict needs one of the value's anchors near it: none in the chunk, none to look for.
            total += w if hit else 0.0
            continue
        # Only a person's or an organisation's name can conflict with another; the chunk's names (jieba
        # POS tagging, the slow part of a search) are looked for only then.
        rivals = _analyze_normalized(text) if q.kind == "entity" and q.slot in CONFLICT_ENTITY_TYPES else found
        if any(
            _conflicts(q, c) and any(a in text[max(0, c.start - CHUNK_WINDOW) : c.end + CHUNK_WINDOW] for a in anchors)
            for c in rivals
        ):
            total -= w
    return total / len(analysis.values)


def rerank(query: str, hits: list[Hit], *, depth: int = 20, weight: float = 0.25, rank_offset: int = 2,
           analysis: QueryAnalysis | None = None) -> list[Hit]:
    """Re-order the first ``depth`` hits by their rank and the evidence of the query's dates, numbers and
    entities (:func:`evidence`): key ``1 / (rank_offset + rank) + weight * evidence``. Rank keeps most of the
    say: with the defaults, a chunk stating a query's only date, while rank 1 is silent on it, passes rank 1
    from rank 9 at most, and a chunk stating a conflicting date drops by about ten places; a query naming
    only entities moves hits by about one place (entities weigh 0.3). Hits beyond ``depth`` keep
    their order; a query with no such values returns the hits unchanged. Ranks are renumbered; scores are
    the first stage's."""
    analysis = analysis if analysis is not None else analyze_query(query)
    if not analysis or not hits:
        return list(hits)
    head, tail = list(hits[:depth]), list(hits[depth:])
    keys = {}
    for pos, hit in enumerate(head, start=1):
        keys[id(hit)] = (-(1.0 / (rank_offset + pos) + weight * evidence(analysis, hit.text)), pos)
    head.sort(key=lambda h: keys[id(h)])
    return [replace(h, rank=i) for i, h in enumerate(head + tail, start=1)]
