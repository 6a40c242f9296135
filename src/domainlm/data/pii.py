"""Chinese PII detection and redaction: ID numbers (check digit), mobile numbers, bank cards (Luhn),
emails, street addresses. Reused by the serving router, so it depends on nothing but ``re``.

Written by hand: the PII libraries on PyPI (presidio, scrubadub) target English and need spaCy models;
none validates a PRC resident ID's check digit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from domainlm.data.edits import OpResult, replace_spans

PLACEHOLDERS = {
    "id_card": "[ID_CARD]",
    "mobile": "[MOBILE]",
    "bank_card": "[BANK_CARD]",
    "email": "[EMAIL]",
    "address": "[ADDRESS]",
}


@dataclass(frozen=True)
class PiiSpan:
    start: int
    end: int
    type: str
    text: str


_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])"
)
_MOBILE = re.compile(r"(?<![\d])(?:(?:\+|00)?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?![\d])")
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){15,18}\d(?![\d])")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_HAN = "\u4e00-\u9fff"
# Province/city/district (optional) + road/street + number, optional building/room.
# Province/city/district (optional) + road/street + number, optional building/room; simplified or
# traditional script (区/區, 号/號, 栋/棟, 楼/樓...).
_ADDRESS_ZH = re.compile(
    rf"(?:[{_HAN}]{{2,6}}(?:省|自治区|自治區))?(?:[{_HAN}]{{2,6}}市)?(?:[{_HAN}]{{2,6}}(?:区|區|县|縣))?"
    rf"[{_HAN}\d]{{1,12}}(?:路|街|大道|道|巷|弄|胡同)(?:[{_HAN}\d]{{0,6}}(?:段|巷|弄))?\d+(?:-\d+)?[号號]"
    rf"(?:[{_HAN}\d]{{0,8}}?(?:\d+(?:栋|棟|幢|座|楼|樓|号楼|號樓))?(?:\d+[单單]元)?(?:\d+(?:层|層|楼|樓))?(?:\d+室)?)?"
)
_ADDRESS_EN = re.compile(
    r"\b\d{1,5}(?:\s[A-Z][a-z]+){1,4}\s(?:Street|St\.|Road|Rd\.|Avenue|Ave\.|Boulevard|Blvd\.|Lane|Ln\.|Drive|Dr\.|Way|Court|Ct\.)"
    r"(?:,?\s(?:Apt|Suite|Unit|Room|Flat)\.?\s?\w+)?"
)

# Words that introduce an address; the Han-character prefix of the pattern can swallow them.
_ADDRESS_LABEL = re.compile(
    r"(?:通讯|联系|家庭|居住|收货|邮寄)?(?:住址|地址|住在|家住|我家在|家在|居住在|位于|寄往|寄到|迁至|搬到)[:：]?"
)

_BUSINESS = re.compile(
    r"(支行|分行|网点|網點|营业部|營業部|营业厅|營業廳|公司|新址|办公|辦公|门店|門店|总部|總部|(?i:branch|office|headquarters))"
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_id_card(number: str) -> bool:
    """PRC resident ID (GB 11643): 17 digits, a real birth date, ISO 7064 MOD 11-2 check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_DIGITS = re.compile(r"\d{3}")  # every number PII type has a run of 3+ digits
_HOUSE_NUMBER = re.compile(r"\d+(?:-\d+)?[号號]")


def _addresses(text: str):
    """Address matches. The Chinese pattern is only tried in a window before each house number ("29号"):
    running it at every Han character is slow (its optional prefixes backtrack)."""
    seen_end = -1
    for number in _HOUSE_NUMBER.finditer(text):
        lo = max(0, number.start() - 48)
        for m in _ADDRESS_ZH.finditer(text, max(lo, seen_end), min(len(text), number.end() + 24)):
            if m.start() <= number.start() < m.end():
                seen_end = m.end()
                yield m
                break
    yield from _ADDRESS_EN.finditer(text)


def find_pii(text: str, types: tuple[str, ...] = tuple(PLACEHOLDERS)) -> list[PiiSpan]:
    """Every PII span in ``text``, sorted by position, non-overlapping (ID numbers win over cards)."""
    found: list[PiiSpan] = []

    def add(start: int, end: int, kind: str) -> None:
        if kind in types and not any(s.start < end and start < s.end for s in found):
            found.append(PiiSpan(start, end, kind, text[start:end]))

    # Cheap pre-checks skip the number patterns on text without long digit runs, and emails without "@".
    if _DIGITS.search(text):
        for m in _ID_CARD.finditer(text):
            if valid_id_card(m.group()):
                add(m.start(), m.end(), "id_card")
    if "@" in text:
        for m in _EMAIL.finditer(text):
            add(m.start(), m.end(), "email")
    if _DIGITS.search(text):
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 16 <= len(digits) <= 19 and luhn_ok(digits) and not valid_id_card(digits):
                add(m.start(), m.end(), "bank_card")
    if _DIGITS.search(text):
        for m in _MOBILE.finditer(text):
            add(m.start(), m.end(), "mobile")
    for m in _addresses(text):
        # The Han-character prefix can swallow the label before the address ("住址上海市...").
        labels = list(_ADDRESS_LABEL.finditer(m.group()))
        start = m.start() + (labels[-1].end() if labels else 0)
        # A branch's or company's address is public business information, not personal data.
        if _BUSINESS.search(text[max(0, start - 12) : start]):
            continue
        add(start, m.end(), "address")
    return sorted(found, key=lambda s: s.start)


def redact_pii(text: str, types: tuple[str, ...] = tuple(PLACEHOLDERS)) -> OpResult:
    """Replace every PII span with its typed placeholder (``[MOBILE]``, ``[ID_CARD]``...)."""
    spans = [(s.start, s.end, PLACEHOLDERS[s.type], s.type) for s in find_pii(text, types)]
    result = replace_spans(text, spans)
    if spans:
        result.meta = {"pii": {t: sum(1 for s in spans if s[3] == t) for t in types if any(s[3] == t for s in spans)}}
    return result
