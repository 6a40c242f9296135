"""Noise inside otherwise good documents: pinyin annotations, spliced-in spam, page furniture,
repeated paragraphs, off-topic tails, censor marks.

These are pattern rules written by hand (no library covers Chinese web furniture); every pattern list is
a parameter so a recipe can extend it. Each function returns an :class:`OpResult` whose changes say
exactly which spans went and why.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from domainlm.data.edits import OpResult, line_spans, replace_spans

HAN = "\u3400-\u9fff\uf900-\ufaff"

# --- Pinyin annotations after Han characters --------------------------------------------------

_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ"
# Atomic: a letter run is one candidate syllable group (validated by _is_pinyin), never re-split by
# backtracking, which on long English phrases after a Han character would be exponential.
_SYLLABLE = rf"(?>[a-zü{_TONED}]+[1-5]?)"
# "(hǎi gǎng)", "（hai3 gang3）", "[yín háng]" right after a Han character.
_PINYIN_BRACKETED = re.compile(
    rf"(?<=[{HAN}])\s?[(（\[【]\s*{_SYLLABLE}(?:[\s'·-]*{_SYLLABLE}){{0,11}}\s*[)）\]】]", re.IGNORECASE
)
# Unbracketed runs of tone-marked syllables right after a Han character: "银行 yín háng".
_PINYIN_BARE = re.compile(
    rf"(?<=[{HAN}])\s?{_SYLLABLE}(?:[\s'·-]+{_SYLLABLE}){{0,11}}(?:\s(?=[{HAN}]))?(?=[\s，。、；：！？,.;:]|[{HAN}]|$)"
)

# Valid pinyin syllables (initials x finals): a bracketed word is pinyin only if every syllable is one.
_INITIALS = (
    "",
    "b",
    "p",
    "m",
    "f",
    "d",
    "t",
    "n",
    "l",
    "g",
    "k",
    "h",
    "j",
    "q",
    "x",
    "zh",
    "ch",
    "sh",
    "r",
    "z",
    "c",
    "s",
    "y",
    "w",
)
_FINALS = (
    "a o e i u v ai ei ui ao ou iu ie ve er an en in un vn ang eng ing ong ia iao ian iang iong ua uai uan uang uo "
    "ue ueng"
).split()
_SYLLABLES = {i + f for i in _INITIALS for f in _FINALS} | {"n", "ng", "m", "hm", "hng"}
_STRIP_TONES = str.maketrans(
    {
        **{c: "a" for c in "āáǎà"},
        **{c: "e" for c in "ēéěè"},
        **{c: "i" for c in "īíǐì"},
        **{c: "o" for c in "ōóǒò"},
        **{c: "u" for c in "ūúǔù"},
        **{c: "v" for c in "ǖǘǚǜü"},
    }
)


def _is_pinyin(words: str, need_tone: bool) -> bool:
    syllables = re.findall(rf"[a-zü{_TONED}]+[1-5]?", words.lower())
    if not syllables:
        return False
    toned = any(ch in _TONED or ch.isdigit() for ch in words)
    if need_tone and not toned:
        return False
    plain = [s.rstrip("12345").translate(_STRIP_TONES) for s in syllables]
    return all(_split_syllables(p) for p in plain)


def _split_syllables(word: str) -> bool:
    """Whether ``word`` is a concatenation of pinyin syllables ("yinhang" -> yin+hang)."""
    ok = [True] + [False] * len(word)
    for end in range(1, len(word) + 1):
        ok[end] = any(ok[start] and word[start:end] in _SYLLABLES for start in range(max(0, end - 6), end))
    return ok[len(word)]


def remove_pinyin(text: str) -> OpResult:
    """Remove pinyin annotations that follow Han characters; keep the Han characters."""
    spans = []
    for match in _PINYIN_BRACKETED.finditer(text):
        inner = re.sub(r"^\s?[(（\[【]|[)）\]】]$", "", match.group())
        # Untoned bracketed words ("(yinhang)") count too; an English word in brackets ("(fee)") does not
        # split into syllables... unless it happens to ("(long)"), hence the length floor.
        if _is_pinyin(inner, need_tone=len(inner.strip()) < 6):
            spans.append((match.start(), match.end(), "", "pinyin"))
    for match in _PINYIN_BARE.finditer(text):
        if _is_pinyin(match.group(), need_tone=True):
            spans.append((match.start(), match.end(), "", "pinyin"))
    return replace_spans(text, spans)


# --- Spam spliced into good sentences ---------------------------------------------------------

SPAM_WORDS_ZH = (
    "彩票",
    "六合彩",
    "时时彩",
    "北京赛车",
    "快三",
    "特码",
    "博彩",
    "赌场",
    "赌博",
    "百家乐",
    "真人娱乐",
    "威尼斯人",
    "葡京",
    "澳门赌",
    "注册送",
    "注册即送",
    "彩金",
    "首充",
    "返水",
    "足球投注",
    "体育投注",
    "棋牌",
    "老虎机",
    "加微信",
    "加V",
    "加v",
    "QQ群",
    "代开发票",
    "日赚",
    "刷单",
    "兼职赚",
    "网赚",
    "点击领取",
    "免费领取",
    "点击进入",
    "精准计划",
    "充值秒到账",
    "无抵押秒批",
    "一夜暴富",
    "稳赚不赔",
    "开奖",
    "领红包",
)
SPAM_WORDS_EN = (
    "casino",
    "lottery",
    "jackpot",
    "betting",
    "online bet",
    "online slots",
    "free spins",
    "free bonus",
    "deposit match",
    "viagra",
    "click here",
    "earn $",
    "make money fast",
    "work from home",
    "bitcoin giveaway",
    "promo code",
    "bonus code",
    "never lose",
    "returns guaranteed",
)
_BRACKETS = {"【": "】", "[": "]", "（": "）", "(": ")", "《": "》", "「": "」", "〖": "〗"}
_CLAUSE_END = re.compile(r"[，。！？；!?;\n]|,(?!\d)|\.(?!\d)(?=\s|$)")
# A contact handle or link glued to Chinese text ("加微信cqssc888由...", "访问 www.x.example现将..."): the spam
# ends where the ASCII run ends.
_HANDLE_THEN_HAN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-/:%?=&+]{{2,}}(?=[{HAN}])")
# Calls to action end a spam insert: what follows them is the host sentence again (or their handle).
CTA_WORDS = (
    "点击进入",
    "点击领取",
    "免费领取",
    "加微信",
    "加V",
    "加v",
    "QQ群",
    "充值秒到账",
    "returns guaranteed",
    "click here",
)
# (ASCII look-arounds, not \b: in Python's Unicode regexes a Han character is a word character too.)
_LINK = re.compile(
    r"(?:https?://|www\.)[A-Za-z0-9.\-/_%?=&#:~+]+"
    r"|(?<![A-Za-z0-9.])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|cn|net|org|cc|top|vip|xyz|info|example)(?![A-Za-z0-9])"
)


def remove_spam(text: str, words: Sequence[str] = SPAM_WORDS_ZH + SPAM_WORDS_EN) -> OpResult:
    """Cut spam out of a sentence and keep the sentence.

    A hit inside brackets takes the bracketed insert; otherwise the clause around it (from the clause
    punctuation before it to the one after it, or to the end of a contact handle glued to the next
    sentence). A following clause that is only a link ("详情访问 www.x.example") goes with it, but a link
    is never spam on its own: banks publish their own URLs.
    """
    if not words:
        return OpResult(text)
    from domainlm.data.normalize import _opencc

    # Traditional-script spam (時時彩) matches too: the word list is extended with its OpenCC forms.
    variants = set(words) | {_opencc("s2t").convert(w) for w in words}
    pattern = re.compile("|".join(re.escape(w) for w in sorted(variants, key=len, reverse=True)), re.IGNORECASE)
    spans = []
    cta = {w.lower() for w in CTA_WORDS} | {_opencc("s2t").convert(w).lower() for w in CTA_WORDS}
    matches = list(pattern.finditer(text))
    cta_ends = {m.end() for m in matches if m.group().lower() in cta}
    for match in matches:
        span = _enclosing_brackets(text, match.start(), match.end()) or _spam_clause(
            text, match.start(), match.end(), match.end() in cta_ends, cta_ends
        )
        spans.append([*span, "", "spam"])
    # Chain: a spam span followed by a link-only clause takes the link clause too.
    for span in spans:
        after = text[span[1] :]
        link_clause = re.match(
            r"(?:\s|详情|访问|訪問|詳情|请|請|visit|at|:|：)*(" + _LINK.pattern + ")", after, re.IGNORECASE
        )
        if link_clause:
            glued = _HANDLE_THEN_HAN.match(text, span[1] + link_clause.start(1))
            span[1] = glued.end() if glued else span[1] + link_clause.end()
            if span[1] < len(text) and text[span[1]] in "，,;；":
                span[1] += 1
    return replace_spans(text, [tuple(s) for s in spans])


def _enclosing_brackets(text: str, start: int, end: int) -> tuple[int, int] | None:
    line_start = text.rfind("\n", 0, start) + 1
    for i in range(start - 1, max(line_start, start - 60) - 1, -1):
        close = _BRACKETS.get(text[i])
        if close:
            j = text.find(close, end)
            newline = text.find("\n", end)
            if j != -1 and (newline == -1 or j < newline) and j - end < 60:
                return i, j + 1
            return None
        if text[i] in _BRACKETS.values():
            return None
    return None


def _spam_clause(
    text: str, start: int, end: int, call_to_action: bool = False, cta_ends: set[int] = frozenset()
) -> tuple[int, int]:
    lo = start
    while lo > 0 and not _CLAUSE_END.match(text, lo - 1):
        lo -= 1
    if call_to_action:
        # The insert ends with the call to action and the handle or link right after it.
        handle = re.compile(r"\s?(?:" + _LINK.pattern + r")|(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{3,}").match(
            text, end
        )
        hi = handle.end() if handle else end
        if hi < len(text) and text[hi] in "，,;；":
            hi += 1
        return lo, hi
    hi = end
    while hi < len(text) and not _CLAUSE_END.match(text, hi):
        if hi in cta_ends:  # the clause's call to action ends the insert
            return _spam_clause(text, start, hi, True)
        link = _LINK.match(text, hi) if hi > end else None
        if link:  # a link ends the insert ("claim your bonus at x.example repaid monthly")
            return lo, link.end()
        glued = _HANDLE_THEN_HAN.match(text, hi)
        if glued and (hi == end or not text[hi - 1].isascii()):
            return lo, glued.end()
        hi += 1
    # Take the clause's closing punctuation with it, unless that ends the sentence: then take the comma
    # before the clause instead ("利率1.5%，加微信领红包。" -> "利率1.5%。").
    if hi < len(text) and text[hi] in "，,;；!?！？":
        hi += 1
    elif lo > 0 and text[lo - 1] in "，;；,":
        lo -= 1
    return lo, hi


# --- Boilerplate and page furniture (line rules) ----------------------------------------------

FURNITURE_PATTERNS = (
    # disclaimers
    ("disclaimer", r"^\s*[【\[]?(免责声明|声明|版权声明|特别提示)[】\]]?\s*[:：]"),
    ("disclaimer", r"(本文|本站|本网|文章)(内容)?(仅供参考|不构成(任何)?投资建议|观点仅代表作者)"),
    ("disclaimer", r"(转载请注明|版权所有|未经(书面)?(许可|授权).{0,10}(转载|使用|复制)|侵权.{0,6}删除)"),
    (
        "disclaimer",
        r"(?i)^\s*(disclaimer|copyright ©|all rights reserved|this article is for reference only)",
    ),
    # image placeholders and captions
    ("image_placeholder", r"^\s*[\[【(（]?\s*(图片|图|配图|img|image|photo)\s*[\]】)）]?\s*$"),
    ("image_placeholder", r"(?i)^\s*(\[图片\]|\[image\]|<img[^>]*>|!\[[^\]]*\]\([^)]*\))"),
    ("image_placeholder", r"^\s*[(（]?(图片来源|图源|图\s*\d+|配图|摄影|图片由)[:：]?.{0,40}$"),
    ("image_placeholder", r"(?i)^\s*(image|photo|picture|figure)( source| credit)?\s*[:：]"),
    ("image_placeholder", r"(?i)^\s*[\w\-]+\.(jpe?g|png|gif|webp|bmp)\s*$"),
    ("image_placeholder", r"^\s*(第\s*\d+\s*张|点击查看大图|查看原图|点击图片查看)\s*$"),
    # end marks and share/like bars
    ("furniture", r"(?i)^\s*[-—=~·\s]*(THE\s*END|END|完|全文完)[-—=~·\s]*$"),
    ("furniture", r"^\s*(分享到|分享至|一键分享|扫一扫|扫码关注|长按识别|阅读原文)"),
    (
        "furniture",
        r"^.{0,30}(点赞|收藏|转发|在看|打赏|阅读\s*\d+|分享).{0,10}(点赞|收藏|转发|在看|打赏|阅读\s*\d+|分享|评论).{0,20}$",
    ),
    ("furniture", r"(?i)^\s*(share( this)?( on)?|like|tweet|follow us|subscribe|print|email this)\b.{0,40}$"),
    (
        "furniture",
        r"^\s*(上一篇|下一篇|返回顶部|返回首页|首页\s*[>›»]|当前位置|责任编辑|编辑[:：]|来源[:：]|作者[:：]|发布时间[:：])",
    ),
    (
        "furniture",
        r"(?i)^\s*(home\s*[>›»/]|previous( article)?[:：]|next( article)?[:：]|editor[:：]|source[:：])",
    ),
    ("furniture", r"(?i)^\s*(previous|prev|上一篇|上一页)\s*[|/·]?\s*(next|下一篇|下一页)\s*$"),
    (
        "furniture",
        r"(?i)^\s*(暂无评论|还没有评论|no comments( yet)?|be the first to comment|back to top|返回顶部|点击排行|热门排行)\W*$",
    ),
    (
        "furniture",
        r"(?i)^\s*(share|分享)\s*[:：]?\s*((wechat|weibo|facebook|twitter|linkedin|微信|微博|qq空间|朋友圈|qq)[\s,，、|]*)+$",
    ),
    ("furniture", r"^\s*首页\s*[/>›»]"),
)
# A comment section starts with a header line; what follows is comments (often "user 2024-05-01 12:00").
COMMENT_HEADERS = r"(?i)^\s*[【\[]?(网友评论|用户评论|评论区|热门评论|最新评论|全部评论|发表评论|评论\s*[（(]?\d+[)）]?|comments?\s*[(（]?\d*[)）]?)[】\]]?\s*[:：]?\s*$"
TIMESTAMP = r"(\d{4}[-/年.]\d{1,2}[-/月.]\d{1,2}日?|\d{1,2}[-/]\d{1,2})\s*\d{1,2}:\d{2}|\d+\s*(分钟|小时|天)前|(?i:\d+\s*(minutes?|hours?|days?) ago)"


def remove_furniture(
    text: str, patterns: Sequence[Sequence[str]] = FURNITURE_PATTERNS, max_line_chars: int = 200
) -> OpResult:
    """Remove whole lines that are page furniture: disclaimers, image placeholders, end marks, share bars,
    and comment sections (a comment header and the timestamped comments that follow it).

    A line longer than ``max_line_chars`` is content, never furniture.
    """
    compiled = [(kind, re.compile(p, re.MULTILINE)) for kind, p in patterns]
    header, stamp = re.compile(COMMENT_HEADERS), re.compile(TIMESTAMP)
    spans = []
    in_comments = False
    for start, end in line_spans(text):
        line = text[start:end].rstrip("\n")
        if not line.strip():
            continue
        if header.match(line):
            in_comments = True
            spans.append((start, end, "", "comment"))
            continue
        if in_comments or (stamp.search(line) and len(line) < 120 and _looks_like_comment(line)):
            # Inside a comment section every short line is a comment or its byline; a long line with
            # sentence punctuation and no timestamp ends the section.
            if in_comments and len(line) > 150 and not stamp.search(line):
                in_comments = False
            else:
                spans.append((start, end, "", "comment"))
                continue
        if len(line) > max_line_chars:
            continue
        for kind, pattern in compiled:
            if pattern.search(line):
                spans.append((start, end, "", kind))
                break
    return replace_spans(text, spans)


def _looks_like_comment(line: str) -> bool:
    # A byline with a timestamp: "网友小王 2024-03-01 10:22 说：..." or "回复 / 赞 3".
    return bool(re.search(r"(网友|用户|匿名|回复|赞\s*\d|楼|says?|replied|@)", line)) or len(line) < 40


# --- Repeated paragraphs ------------------------------------------------------------------------


def remove_repeats(text: str, min_chars: int = 10) -> OpResult:
    """Drop a paragraph (line) that repeats an earlier one in the same document (first copy kept)."""
    seen: set[str] = set()
    spans = []
    for start, end in line_spans(text):
        key = re.sub(r"\s+", "", text[start:end])
        if len(key) < min_chars:
            continue
        if key in seen:
            spans.append((start, end, "", "repeat"))
        else:
            seen.add(key)
    return replace_spans(text, spans)


# --- Off-topic tails ----------------------------------------------------------------------------

TAIL_HEADERS = (
    r"(相关阅读|相关文章|相关推荐|延伸阅读|推荐阅读|猜你喜欢|热门文章|热门推荐|热点新闻|精彩推荐|更多精彩|往期回顾|今日热点|热门标签|大家都在看)",
    r"(?i)(related (articles|posts|stories|reading)|recommended( for you)?|you may also like|more stories|trending( now)?|popular posts|read more)",
)


def remove_offtopic_tail(
    text: str, headers: Sequence[str] = TAIL_HEADERS, min_position: float = 0.3, max_overlap: float = 0.1
) -> OpResult:
    """Cut an off-topic tail: from a tail header ("相关阅读", "猜你喜欢") to the end, or trailing paragraphs
    that share (almost) no vocabulary with the rest of the document (a recipe or a sports story
    pasted under a product page).

    Only the latter part of the document (after ``min_position`` of its length) is considered; a header
    must be a short line that is mostly the header, and a topical cut only takes prose paragraphs
    (15+ Han characters or 8+ words) whose share of (jieba or English) words seen earlier in the
    document is at most ``max_overlap``. Short lines (signatures, contacts) stop the cut.
    """
    compiled = [re.compile(h) for h in headers]
    lines = line_spans(text)
    spans = []
    for index, (start, end) in enumerate(lines):
        line = text[start:end].strip()
        if not line or len(line) > 40:
            continue
        for pattern in compiled:
            match = pattern.search(line)
            if match and len(match.group()) >= 0.4 * len(re.sub(r"[\W_]+", "", line) or "x"):
                # A header followed only by link-title lines (short, no full stop) starts a tail; a header
                # line anywhere else is page furniture and goes alone.
                after = [text[a:b].strip() for a, b in lines[index + 1 :] if text[a:b].strip()]
                if start >= min_position * len(text) and all(len(t) <= 40 and t[-1] not in "。！？.!?" for t in after):
                    return replace_spans(text, spans + [(start, len(text), "", "offtopic_tail")])
                spans.append((start, end, "", "offtopic_tail"))
                break
    if spans:
        result = replace_spans(text, spans)
        rest = remove_offtopic_tail(result.text, (), min_position, max_overlap)
        result.changes += rest.changes  # (offsets of these are in the text after the header lines went)
        result.text = rest.text
        return result
    cut = None
    for start, end in reversed(lines):
        line = text[start:end].strip()
        if not line:
            continue
        if start < min_position * len(text):
            break
        han = len(re.findall(f"[{HAN}]", line))
        words = _topic_words(line)
        if han < 15 and sum(1 for w in words if w.isascii()) < 8:
            break
        earlier = _topic_words(text[:start], counts=True)
        shared = [w for w in words if w in earlier]
        # Off topic: no word the document uses repeatedly (产品, 客户, fee, card...) and little else shared.
        if any(earlier[w] >= 2 for w in shared) or len(shared) > max_overlap * len(words):
            break
        cut = start
    if cut is None:
        return OpResult(text)
    return replace_spans(text, [(cut, len(text), "", "offtopic_tail")])


# Function words and very common words: sharing them says nothing about sharing a topic.
_STOPWORDS = frozenset(
    "the and for with that this from are was were you your our its can any all not but has have will may per into "
    "than then them they their there what when which who how also more most other such only over after before first "
    "well even way use used get like just know take see come came could would should about some very time times "
    "back last year years day days new one two three make made good".split()
)


def _topic_words(text: str, counts: bool = False):
    """Chinese words (jieba) plus lower-cased English words of 3+ letters (minus stopwords): a set, or a
    Counter of occurrences with ``counts``."""
    grams: Counter = Counter()
    runs = re.findall(f"[{HAN}]+", text)
    if runs:
        # jieba words of 2+ characters: character bigrams across word boundaries ("旅行地是海边" shares
        # "是海" with "是海港银行") would make unrelated text look on topic.
        import jieba

        jieba.setLogLevel(60)
        grams.update(w for run in runs for w in jieba.lcut(run) if len(w) >= 2)
    text = re.sub(r"\S+@\S+|(?:https?://|www\.)\S+", " ", text)  # contact details are not topic words
    # Crude plural folding ("fees" ~ "fee") is enough to compare vocabularies.
    grams.update(w.rstrip("s") for w in (m.lower() for m in re.findall(r"[A-Za-z]{3,}", text)) if w not in _STOPWORDS)
    return grams if counts else set(grams)


# --- Censor marks (flagged; the sentence around them is still information) ------------------------

CENSOR_PATTERN = r"[*＊]{2,}|[□■█●○×Ｘ]{2,}|[XＸ]{3,}|(?<![A-Za-z])XX(?![A-Za-z])|\[(已屏蔽|已删除|屏蔽词|敏感词)\]|[(（](此处)?(已删节|已屏蔽|内容已删除|略)[)）]|<censored>|\[censored\]|\[redacted\]"


def flag_censor(text: str, pattern: str = CENSOR_PATTERN, remove: bool = True) -> OpResult:
    """Flag censor marks ("***", "□□", "[已屏蔽]") so a reviewer sees where text was hidden; with
    ``remove`` the mark itself also goes (the sentence stays), since a model should not learn "***"."""
    matches = list(re.finditer(pattern, text, re.IGNORECASE))
    result = replace_spans(text, [(m.start(), m.end(), "", "censor") for m in matches]) if remove else OpResult(text)
    result.flags = [{"start": m.start(), "end": m.end(), "text": m.group(), "kind": "censor"} for m in matches]
    return result
