"""Character-level repair: Unicode normalisation, mojibake repair, traditional→simplified, whitespace.

ftfy repairs Latin-1/cp1252 mojibake but, by design, not the Chinese case (rspeer/python-ftfy#34):
UTF-8 bytes decoded as GBK or Big5 give islands of rare CJK characters ("海港银行" → "娴锋腐閾惰").
:func:`repair_cjk_mojibake` finds those islands and re-decodes them; where the bytes did not survive
(the decoder replaced them) it flags the island instead.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from domainlm.data.edits import OpResult, replace_spans

# Characters that carry no text: zero-width spaces and joiners, BOM, soft hyphen, bidi marks.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a-\u202e]")
# C0/C1 control characters except tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Full-width ASCII letters and digits (Ａ-Ｚ ａ-ｚ ０-９) become half-width; full-width punctuation
# (，。：；！？（）) is Chinese punctuation and is kept, which NFKC would not do.
_FULLWIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


def normalize_unicode(text: str) -> OpResult:
    """NFC, drop invisible/control characters, half-width letters and digits, \\n line ends.

    Not NFKC: it folds Chinese punctuation (，：（）) to ASCII.
    """
    spans: list[tuple[int, int, str, str]] = []
    for match in re.finditer("\r\n?", text):
        spans.append((match.start(), match.end(), "\n", "newline"))
    for match in _INVISIBLE.finditer(text):
        spans.append((match.start(), match.end(), "", "invisible"))
    for match in _CONTROL.finditer(text):
        spans.append((match.start(), match.end(), "", "control"))
    for match in _FULLWIDTH_ALNUM.finditer(text):
        spans.append((match.start(), match.end(), chr(ord(match.group()) - 0xFEE0), "fullwidth"))
    result = replace_spans(text, spans)
    if not unicodedata.is_normalized("NFC", result.text):
        # Composition changes are rare (decomposed accents); recorded line by line.
        pos, nfc_spans = 0, []
        for line in result.text.splitlines(keepends=True):
            fixed = unicodedata.normalize("NFC", line)
            if fixed != line:
                nfc_spans.append((pos, pos + len(line), fixed, "nfc"))
            pos += len(line)
        after = replace_spans(result.text, nfc_spans)
        result = OpResult(after.text, result.changes + after.changes)
    return result


def _has_han(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


# --- Latin mojibake: ftfy ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _ftfy_config():
    import ftfy

    # Only the encoding repair and what belongs to it; no width folding (it would turn "，" into ","),
    # no quote uncurling (changes correct text), no NFC here (normalize_unicode does it).
    return ftfy.TextFixerConfig(
        unescape_html=False,
        uncurl_quotes=False,
        fix_character_width=False,
        fix_latin_ligatures=False,
        fix_line_breaks=False,
        remove_control_chars=False,
        normalization=None,
        explain=False,
    )


_CODEPAGE_CHARS = re.compile("[\u0080-\u04ff\u2000-\u25ff\ufb00-\ufb06\uf8ff\ufffd]")


def repair_latin_mojibake(text: str) -> OpResult:
    """Repair UTF-8-read-as-Latin-1/cp1252 mojibake with ftfy, line by line so changes stay local."""
    import ftfy

    if text.isascii():
        return OpResult(text)
    config = _ftfy_config()
    spans = []
    pos = 0
    for line in text.splitlines(keepends=True):
        # Only characters of the 8-bit code pages ftfy knows (Latin-1/cp125x, Cyrillic, Greek, MacRoman,
        # cp437 box drawing...) can be mojibake; a line of CJK and ASCII is skipped without calling ftfy.
        if _CODEPAGE_CHARS.search(line):
            fixed = _repair_islands(ftfy.fix_text(line, config))
            if fixed != line:
                spans.append((pos, pos + len(line), fixed, "mojibake_latin"))
        pos += len(line)
    return replace_spans(text, spans)


# Characters of cp1252 (the superset browsers use for "Latin-1"): a run of them between Han characters can
# be UTF-8 bytes of a pinyin syllable or Han word shown one byte per character ("存款cÃºn", "çš„").
_CP1252_RUN = re.compile(
    "[\u0080-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014"
    "\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122a-zA-Z]+"
)


_HAN_CHAR = re.compile("[\u3400-\u9fff\uf900-\ufaff]")


def _repair_islands(line: str) -> str:
    """Decode each cp1252 run that is valid UTF-8 as a whole. ftfy judges a whole line and leaves short
    islands inside Chinese text alone; a run that decodes strictly is mojibake beyond reasonable doubt
    (real Latin text like "café" is not valid UTF-8 when encoded back). Only runs touching a Han character
    are tried."""

    def fix(match: re.Match) -> str:
        run = match.group()
        before, after = line[match.start() - 1 : match.start()], line[match.end() : match.end() + 1]
        # Only islands touching a Han character: Latin text ("Brontë", "Dråber") is ftfy's to judge.
        if run.isascii() or not (_HAN_CHAR.match(before) or _HAN_CHAR.match(after)):
            return run
        try:
            decoded = run.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return run
        return decoded if not decoded.isascii() else run

    return _CP1252_RUN.sub(fix, line)


# --- CJK mojibake: UTF-8 bytes decoded as GBK or Big5 (hand-written: no library does this) ------


@functools.lru_cache(maxsize=1)
def char_ranks() -> dict[str, int]:
    """Rank of every character in jieba's word-frequency dictionary (0 = most frequent)."""
    import os
    from collections import Counter

    import jieba

    counts: Counter = Counter()
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as handle:
        for line in handle:
            word, freq, _ = line.split(" ", 2)
            for ch in word:
                counts[ch] += int(freq)
    return {ch: rank for rank, (ch, _) in enumerate(counts.most_common())}


# Mojibake of CJK text is made of non-ASCII characters only (every UTF-8 byte of a CJK character is
# >= 0x80), but of any kind: ideographs, box drawing, circled numbers, kana...
_CJK_RUN = re.compile(r"[^\x00-\x7f\s]+")
_TEXT_CHAR = re.compile("[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff01-\uff5e“”‘’—…·]")
_COMMON = 2500  # characters ranked below this count as common Chinese


def _commonness(text: str) -> float:
    ranks = char_ranks()
    han = [ch for ch in text if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"]
    if not han:
        return 1.0
    return sum(1 for ch in han if ranks.get(ch, 10**6) < _COMMON) / len(han)


def _try_redecode(island: str, codec: str) -> str | None:
    try:
        raw = island.encode(codec)
        fixed = raw.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    # The repaired text must be Chinese text (ideographs and CJK punctuation), not more symbols.
    if fixed == island or not all(_TEXT_CHAR.match(ch) for ch in fixed):
        return None
    return fixed


@functools.lru_cache(maxsize=4)
def _island_starts(codecs: tuple[str, ...]) -> re.Pattern:
    """A character class of every character whose code in one of ``codecs`` has a lead byte 0xE2-0xEF
    (the lead bytes of UTF-8's 3-byte sequences): the only possible first characters of an island."""
    chars = set()
    for codec in codecs:
        for lead in range(0xE2, 0xF0):
            for trail in range(0x40, 0xFF):
                try:
                    chars.add(bytes((lead, trail)).decode(codec))
                except UnicodeDecodeError:
                    continue
    return re.compile("[" + "".join(re.escape(ch) for ch in sorted(chars) if len(ch) == 1) + "]")


def _best_island(run: str, start: int, codecs: tuple[str, ...]) -> tuple[int, str] | None:
    """Longest ``run[start:end]`` that re-decodes to clearly more common Chinese text, as (end, fixed)."""
    # UTF-8 encodes a CJK character as 3 bytes starting with 0xE3-0xE9; in GBK/Big5 that first byte is
    # the lead byte of the island's first character, which prunes almost every start position.
    best = None
    for codec in codecs:
        try:
            first = run[start].encode(codec)
        except UnicodeEncodeError:
            continue
        if len(first) != 2 or not 0xE2 <= first[0] <= 0xEF:
            continue
        for end in range(min(len(run), start + 90), start + 1, -1):
            island = run[start:end]
            fixed = _try_redecode(island, codec)
            if fixed is None or len(fixed) < 2:
                continue
            if _commonness(fixed) >= 0.8 and _commonness(fixed) > _commonness(island) + 0.15:
                if best is None or end > best[0]:
                    best = (end, fixed)
                break
    return best


def repair_cjk_mojibake(text: str, codecs: tuple[str, ...] = ("gbk", "big5"), min_len: int = 3) -> OpResult:
    """Re-decode UTF-8-read-as-GBK/Big5 islands; flag islands that cannot be repaired.

    Unrepairable islands are those the wrong decoder already damaged: runs around U+FFFD or the
    classic "锟斤拷" (UTF-8 replacement characters decoded as GBK), plus runs of characters that are
    mostly outside jieba's vocabulary.
    """
    spans: list[tuple[int, int, str, str]] = []
    flags: list[dict] = []
    ranks = char_ranks()
    for match in _CJK_RUN.finditer(text):
        run, base = match.group(), match.start()
        i = 0
        starts = _island_starts(codecs)
        for candidate in starts.finditer(run):
            # Only a character whose GBK/Big5 code starts with a UTF-8 lead byte can open an island.
            if candidate.start() < i or len(run) - candidate.start() < min_len:
                continue
            found = _best_island(run, candidate.start(), codecs)
            if found is not None:
                end, fixed = found
                spans.append((base + candidate.start(), base + end, fixed, "mojibake_cjk"))
                i = end
        # Damaged islands: replacement characters, 锟斤拷, or 3+ consecutive characters jieba never saw.
        for bad in re.finditer("(?:[\ufffd]|锟斤拷)+|[\u3400-\u9fff]{3,}", run):
            chunk = bad.group()
            if "\ufffd" in chunk or "锟斤拷" in chunk:
                # The island around a replacement character is the rare characters next to it.
                lo, hi = bad.start(), bad.end()
                while lo > 0 and ranks.get(run[lo - 1], 10**6) >= _COMMON and not _repaired(spans, base + lo - 1):
                    lo -= 1
                while hi < len(run) and ranks.get(run[hi], 10**6) >= _COMMON and run[hi] != "\ufffd":
                    hi += 1
                flags.append({"start": base + lo, "end": base + hi, "text": run[lo:hi], "kind": "mojibake"})
                continue
            rare = sum(1 for ch in chunk if ranks.get(ch, 10**6) > 6000)
            if rare < 3 or rare < 0.5 * len(chunk):
                continue
            # Traditional characters are rare in jieba's (simplified) dictionary: judge their simplified form.
            simplified = _opencc("t2s").convert(chunk)
            unknown = [ch for ch in simplified if "\u3400" <= ch <= "\u9fff" and ranks.get(ch, 10**6) > 6000]
            if len(unknown) >= 3 and len(unknown) >= 0.5 * len(chunk):
                s = base + bad.start()
                if not _repaired(spans, s):
                    flags.append({"start": s, "end": base + bad.end(), "text": chunk, "kind": "mojibake"})
    result = replace_spans(text, spans)
    result.flags = flags
    return result


def _repaired(spans: list, pos: int) -> bool:
    return any(a <= pos < b for a, b, _, _ in spans)


# --- Traditional → simplified (opencc) ----------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _opencc(config: str):
    from opencc import OpenCC

    return OpenCC(config)


def to_simplified(text: str, config: str = "t2s") -> OpResult:
    """Convert traditional Chinese to simplified with OpenCC, recording the changed lines."""
    if not _has_han(text):
        return OpResult(text)
    converter = _opencc(config)
    spans, pos = [], 0
    for line in text.splitlines(keepends=True):
        converted = converter.convert(line)
        if converted != line:
            spans.append((pos, pos + len(line), converted, "t2s"))
        pos += len(line)
    return replace_spans(text, spans)


# --- Whitespace tidy (runs last, after removals left gaps) ---------------------------------------


def tidy_whitespace(text: str, max_blank_lines: int = 1) -> OpResult:
    """Strip trailing spaces, collapse runs of blank lines, trim the document."""
    spans = []
    for match in re.finditer(r"[ \t\u3000]+(?=\n|$)", text):
        spans.append((match.start(), match.end(), "", "trailing_space"))
    blank = "\n" * (max_blank_lines + 1)
    for match in re.finditer(r"\n[ \t\u3000]*\n(?:[ \t\u3000]*\n)+", text):
        spans.append((match.start(), match.end(), blank, "blank_lines"))
    lead = re.match(r"\s+", text)
    if lead:
        spans.append((0, lead.end(), "", "trim"))
    trail = re.search(r"\s+$", text)
    if trail and (not lead or trail.start() > lead.end()):
        spans.append((trail.start(), len(text), "", "trim"))
    result = replace_spans(text, spans)
    # Merged spans can leave a tidy text that still needs one more pass (e.g. spaces before blank lines).
    if result.changes and (re.search(r"[ \t]+\n", result.text) or blank + "\n" in result.text):
        again = tidy_whitespace(result.text, max_blank_lines)
        result.text = again.text
    return result
