"""Noise inside otherwise good documents: pinyin annotations, markup left in the text, spliced-in spam,
page furniture (gallery navigation, photo credits, disclaimers, comment sections), repeated paragraphs,
off-topic tails, censor marks.

These are pattern rules written by hand (no library covers Chinese web furniture); every pattern list is
a parameter so a recipe can extend it. Each function returns an :class:`OpResult` whose changes say
exactly which spans went and why.
"""

from __future__ import annotations

import functools
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
# A "?" or U+FFFD right after the run and before a Han character is what a lost byte or tag left behind
# ("银行yín háng?的存款"): it goes with the annotation.
_PINYIN_BARE = re.compile(
    rf"(?<=[{HAN}])\s?{_SYLLABLE}(?:[\s'·-]+{_SYLLABLE}){{0,11}}(?:[?\ufffd]+(?=[{HAN}]))?(?:\s(?=[{HAN}]))?"
    rf"(?=[\s，。、；：！？,.;:]|[{HAN}]|$)"
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
# Without an initial only a/o/e-type finals are written as they are ("an", "er"); i/u/ü ones are spelled
# with y/w ("yi", "wu", "yu"), so "i" or "v" alone is no syllable ("Selim III", "vacante" are not pinyin).
_ZERO_INITIAL = {"a", "o", "e", "ai", "ei", "ao", "ou", "an", "en", "ang", "eng", "er"}
_SYLLABLES = {i + f for i in _INITIALS if i for f in _FINALS} | _ZERO_INITIAL | {"ng", "hm", "hng"}
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


def _syllable_counts(words: str) -> set[int]:
    """Every number of syllables ``words`` can be read as ("xian" -> {1, 2}: xian or xi+an)."""
    total = {0}
    for word in re.findall(rf"[a-zü{_TONED}]+", words.lower()):
        plain = word.translate(_STRIP_TONES)
        counts: list[set[int]] = [{0}] + [set() for _ in plain]
        for end in range(1, len(plain) + 1):
            for start in range(max(0, end - 6), end):
                if counts[start] and plain[start:end] in _SYLLABLES:
                    counts[end] |= {c + 1 for c in counts[start]}
        total = {t + c for t in total for c in counts[len(plain)]}
    return total


def _split_syllables(word: str) -> bool:
    """Whether ``word`` is a concatenation of pinyin syllables ("yinhang" -> yin+hang)."""
    ok = [True] + [False] * len(word)
    for end in range(1, len(word) + 1):
        ok[end] = any(ok[start] and word[start:end] in _SYLLABLES for start in range(max(0, end - 6), end))
    return ok[len(word)]


# A Latin run wedged between Han characters that holds U+FFFD ("中zhÅ\ufffdng?国"): an annotation whose
# bytes were lost on the way; it cannot be repaired, and the Han characters around it are the text.
_GARBLED = re.compile(rf"(?<=[{HAN}])[A-Za-z\u00c0-\u024f?]*\ufffd[A-Za-z\u00c0-\u024f\ufffd?]*(?=[{HAN}])")


def remove_pinyin(text: str) -> OpResult:
    """Remove pinyin annotations that follow Han characters (and garbled ones, see ``_GARBLED``); keep the
    Han characters."""
    spans = [(m.start(), m.end(), "", "pinyin") for m in _GARBLED.finditer(text)]
    for match in _PINYIN_BRACKETED.finditer(text):
        inner = re.sub(r"^\s?[(（\[【]|[)）\]】]$", "", match.group())
        # Untoned bracketed words ("(yinhang)") count too; an English word in brackets ("(fee)") does not
        # split into syllables... unless it happens to ("(long)"), hence the length floor.
        if not _is_pinyin(inner, need_tone=len(inner.strip()) < 6):
            continue
        # Untoned, it must also read the word before it: as many syllables as Han characters right before
        # the bracket ("海港银行（hai gang yin hang）"), which an English gloss seldom matches
        # ("本·拉登(Osama Bin Laden)", "塔科马（Tacoma）").
        toned = any(ch in _TONED or ch.isdigit() for ch in inner)
        han_before = len(re.search(f"[{HAN}]*$", text[: match.start()]).group())
        if toned or han_before in _syllable_counts(inner):
            spans.append((match.start(), match.end(), "", "pinyin"))
    for match in _PINYIN_BARE.finditer(text):
        if _is_pinyin(match.group().rstrip("?\ufffd "), need_tone=True):
            spans.append((match.start(), match.end(), "", "pinyin"))
    return replace_spans(text, spans)


# --- Markup left in the text -------------------------------------------------------------------

# Tags a page's text should never show: an escaped or half-parsed tag ("银行?</span>的") is residue of the
# page, not content. Only these names count, so "a<b" or "<5%" in prose stays.
MARKUP_TAGS = (
    "a abbr b big br center div em font h1 h2 h3 h4 h5 h6 i img li ol p s small span strong sub sup table tbody "
    "td th tr u ul"
).split()
_ENTITY = re.compile(
    r"&(nbsp|lt|gt|amp|quot|apos|ldquo|rdquo|lsquo|rsquo|middot|hellip|mdash|ndash|#\d{2,5}|#x[0-9a-fA-F]{2,4});"
)


def remove_markup(text: str, tags: Sequence[str] = MARKUP_TAGS) -> OpResult:
    """Remove HTML tags left in the text (escaped or from a broken page) and decode character entities
    ("&nbsp;" -> a space), so the words they sat between join again."""
    import html as _html

    spans = []
    if tags:
        names = "|".join(sorted((re.escape(t) for t in tags), key=len, reverse=True))
        tag = re.compile(rf"</?(?:{names})(?:\s[^<>\n]{{0,200}}?)?\s*/?>", re.IGNORECASE)
        spans += [(m.start(), m.end(), "", "markup") for m in tag.finditer(text)]
    for m in _ENTITY.finditer(text):
        spans.append((m.start(), m.end(), _html.unescape(m.group()).replace("\u00a0", " "), "entity"))
    return replace_spans(text, spans)


# --- Spam spliced into good sentences ---------------------------------------------------------

# Words that are spam wherever they occur (gambling products, promotions, calls to action).
SPAM_WORDS_ZH = (
    "时时彩",
    "分分彩",
    "北京赛车",
    "幸运飞艇",
    "PK10",
    "PK拾",
    "快三",
    "特码",
    "百家乐",
    "真人娱乐",
    "真人视讯",
    "电子游艺",
    "娱乐城",
    "荷官",
    "真人平台",
    "新葡京",
    "皇冠体育",
    "亚博体育",
    "太阳城集团",
    "澳门赌",
    "网投",
    "注册送",
    "注册就送",
    "注册即送",
    "注册领",
    "注册返",
    "提款秒到",
    "送彩金",
    "彩金",
    "首充",
    "首存",
    "返水",
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
    "稳赚",
    "充值秒到账",
    "秒提现",
    "无抵押秒批",
    "一夜暴富",
    "稳赚不赔",
    "领红包",
)
# Words of the same topic that real news uses too ("福利彩票销售178亿元", "打击跨境赌博"): spam only in a
# run (see remove_spam) that also holds a spam word, a promotion word or a contact handle/link.
SPAM_TOPIC_ZH = (
    "彩票",
    "娱乐场",  # Macau casinos in business news
    "极速赛车",  # also a game's name (《极速赛车手》)
    "六合彩",  # Hong Kong's legal Mark Six
    "威尼斯人",  # a Macau resort
    "开奖",
    "赌场",
    "赌博",
    "博彩",
    "葡京",
    "棋牌",
    "投注",
    "下注",
    "捕鱼",
    "足球投注",
    "体育投注",
)
# Longer words that contain a spam word and are not spam ("歌舞娱乐场所").
SPAM_EXCEPT_ZH = ("娱乐场所", "娱乐城市", "点击进入下一页", "点击进入下一张")
# Promotion words: evidence that a topic word is an advert, never spam alone ("登录银行官网").
SPAM_PROMO_ZH = (
    "官网",
    "官方网站",
    "网址",
    "注册",
    "开户",
    "下载",
    "手机版",
    "信誉",
    "直营",
    "提现",
    "提款",
    "计划",
    "资料",
    "线上",
    "秒到账",
)
# Words that continue a spam run without being evidence (brands, places, filler of adverts).
SPAM_GLUE_ZH = (
    "澳门",
    "金沙",
    "太阳城",
    "永利",
    "皇冠",
    "亚博",
    "银河",
    "凤凰",
    "重庆",
    "北京",
    "腾讯",
    "天天",
    "体育",
    "在线",
    "平台",
    "集团",
    "官方",
    "第一",
    "免费",
    "首选",
    "就送",
    "即送",
    "送",
    "真人",
    "娱乐",
    "电子",
    "结果",
    "最新",
    "24小时",
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
# (Headline separators "_", "|", "—" end a clause too: "标题_某某娱乐城官网" is two.)
_CLAUSE_END = re.compile(r"[，。！？；!?;\n_|｜—]|,(?!\d)|\.(?!\d)(?=\s|$)")
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


def remove_spam(
    text: str,
    words: Sequence[str] = SPAM_WORDS_ZH + SPAM_WORDS_EN,
    topic_words: Sequence[str] = SPAM_TOPIC_ZH,
    promo_words: Sequence[str] = SPAM_PROMO_ZH,
    glue_words: Sequence[str] = SPAM_GLUE_ZH,
    clause_share: float = 0.5,
    except_words: Sequence[str] = SPAM_EXCEPT_ZH,
) -> OpResult:
    """Cut spam out of a sentence and keep the sentence.

    A hit is a spam word, a promotion word right before a gambling-style domain ("官网bodog88.com"), or a
    topic word (彩票, 投注) whose run also holds a spam or promotion word or a contact handle/link; a hit
    inside one of ``except_words`` ("娱乐场所") is none. The *run* of a hit is the stretch around it made
    only of spam, topic, promotion and glue words, handles, links and amounts ("金沙娱乐城官网注册送38元彩金"),
    its ends pulled back to word boundaries. Then, in this order:

    - a hit inside brackets takes the bracketed insert;
    - when spam vocabulary fills ``clause_share`` of the hit's clause (an advert that is a clause of its
      own), the clause goes: from the clause punctuation before it to the one after it, or to the end of
      a contact handle glued to the next sentence;
    - otherwise only the run goes (an advert glued between two words of a sentence, as a hidden link's
      text is), and the words around it stay; at the end of a headline it takes the separator before it.

    A following clause that is only a link ("详情访问 www.x.example") goes with the spam, but a link is
    never spam on its own: banks publish their own URLs.
    """
    if not words:
        return OpResult(text)
    strong, topic, promo, lexicon, pattern, promo_domain, vocabulary, cta = _spam_patterns(
        tuple(words), tuple(topic_words), tuple(promo_words), tuple(glue_words)
    )
    excepted = [(m.start(), m.end()) for w in except_words for m in re.finditer(re.escape(w), text)]
    matches = [m for m in pattern.finditer(text) if not any(a <= m.start() and m.end() <= b for a, b in excepted)]
    matches = sorted(matches + [m for m in promo_domain.finditer(text) if promo], key=lambda m: m.start())
    cta_ends = {m.end() for m in matches if m.group().lower() in cta}
    runs: dict[tuple[int, int], tuple[int, int]] = {}  # hit -> its run
    hits = []
    alone = strong | promo  # a hit on its own (promotion words only come in before a domain, see above)
    for match in matches:
        english = match.group().isascii() and match.group()[:1].isalpha()
        # An English hit has no run: English words around it cannot be told from the host sentence's.
        run = (match.start(), match.end()) if english else _spam_run(text, match.start(), match.end(), lexicon)
        if match.group().lower() in alone or _has_evidence(text[run[0] : run[1]], strong, promo):
            hits.append(match)
            runs[(match.start(), match.end())] = run
    spans = []
    for match in hits:
        run = runs[(match.start(), match.end())]
        if match.group().isascii() and match.group()[:1].isalpha():
            share = 1.0  # English spam: take the clause
        else:
            lo, hi = _clause_bounds(text, match.start(), match.end())
            # The clause's share of advert: its runs plus any other spam vocabulary and handles in it.
            in_clause = {runs[(m.start(), m.end())] for m in hits if lo <= m.start() < hi}
            in_clause |= {(m.start(), m.end()) for m in vocabulary.finditer(text, lo, hi)}
            covered = sum(min(b, hi) - max(a, lo) for a, b in _union(in_clause))
            share = covered / max(1, len(re.sub(r"\s", "", text[lo:hi])))
            # A long run with the host's words on both sides of it was glued into the clause: it goes alone.
            a, b = run
            left, right = len(re.findall(f"[{HAN}]", text[lo:a])), len(re.findall(f"[{HAN}]", text[b:hi]))
            if b - a >= 6 and min(left, right) >= 2 and left + right >= 6:
                share = 0.0
        bracket = _enclosing_brackets(text, match.start(), match.end())
        if bracket:
            spans.append([*bracket, "", "spam"])
        elif share >= clause_share:
            lo, hi = _spam_clause(text, match.start(), match.end(), match.end() in cta_ends, cta_ends)
            if run[1] > hi:  # a handle glued to more of the advert ("bet365官网，"): the run decides
                hi = run[1] + (1 if text[run[1] : run[1] + 1] in ("，", ",", ";", "；") else 0)
            spans.append([*_run_with_separator(text, min(lo, run[0]), hi), "", "spam"])
        else:
            spans.append([*_run_with_separator(text, *run), "", "spam"])
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


@functools.lru_cache(maxsize=16)
def _spam_patterns(words: tuple, topic_words: tuple, promo_words: tuple, glue_words: tuple) -> tuple:
    """The word sets and compiled patterns of :func:`remove_spam`, built once per word lists."""
    from domainlm.data.normalize import _opencc

    # Traditional-script spam (時時彩) matches too: the word lists are extended with their OpenCC forms.
    s2t = _opencc("s2t").convert

    def variants(items) -> frozenset:
        return frozenset({w.lower() for w in items} | {s2t(w).lower() for w in items})

    strong, topic, promo = variants(words), variants(topic_words), variants(promo_words)
    lexicon = strong | topic | promo | variants(glue_words)

    def alternation(items) -> str:
        return "|".join(re.escape(w) for w in sorted(items, key=len, reverse=True))

    pattern = re.compile(alternation(strong | topic), re.IGNORECASE)
    promo_domain = re.compile(f"(?:{alternation(promo)})(?={_PROMO_DOMAIN})", re.IGNORECASE)
    # Topic words and bare numbers are left out: the host sentence may hold them ("彩票销售下降6.3%").
    vocabulary = re.compile(alternation(lexicon - topic) + r"|[A-Za-z0-9_.\-]*[A-Za-z][A-Za-z0-9_.\-]*", re.IGNORECASE)
    return strong, topic, promo, lexicon, pattern, promo_domain, vocabulary, variants(CTA_WORDS)


# What else a spam run may hold: a contact handle or link with a letter in it, an amount ("38元", "100%").
_RUN_ASCII = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/:%?=&+]*")
_RUN_AMOUNT = re.compile(r"\d+(?:\.\d+)?(?:[%％+]|元)?")
# A gambling-style domain (letters and digits mixed: "bodog88.com", "hg0088.cc") right after a promotion
# word ("官网bodog88.com") is an advert even without a spam word; plain domains ("icbc.com.cn") are not.
_PROMO_DOMAIN = (
    r"\s?(?:www\.)?(?=[a-z0-9-]*[a-z])(?=[a-z-]*\d)[a-z0-9-]{3,}\.(?:com|cc|net|vip|top|xyz|me|co|info)(?![A-Za-z0-9])"
)


def _spam_run(text: str, start: int, end: int, lexicon: set[str]) -> tuple[int, int]:
    """Grow ``text[start:end]`` over neighbouring lexicon words, handles/links and amounts (spaces inside)."""
    longest = max((len(w) for w in lexicon), default=1)
    lo, hi = start, end
    while True:  # to the right; a word may overlap the run's end ("澳门赌" then "赌场")
        step = next(
            (
                n - back
                for back in range(min(longest, hi - lo))
                for n in range(longest, back, -1)
                if text[hi - back : hi - back + n].lower() in lexicon
            ),
            0,
        )
        if not step:
            found = [m.end() - hi for m in (_RUN_ASCII.match(text, hi), _RUN_AMOUNT.match(text, hi)) if m]
            step = max(found, default=0)
        if not step and text[hi : hi + 1] == " " and hi + 1 < len(text) and not text[hi + 1].isspace():
            step = (
                1
                if _RUN_ASCII.match(text, hi + 1)
                or any(text[hi + 1 : hi + 1 + n].lower() in lexicon for n in range(longest, 0, -1))
                else 0
            )
        if not step:
            break
        hi += step
    while True:  # to the left: words, or a handle with a letter in it (a number before an advert is the host's)
        step = next((n for n in range(longest, 0, -1) if n <= lo and text[lo - n : lo].lower() in lexicon), 0)
        if not step:
            handle = re.search(r"[A-Za-z0-9_.\-]*[A-Za-z][A-Za-z0-9_.\-]*\s?$", text[max(0, lo - 40) : lo])
            step = len(handle.group()) if handle else 0
        if not step:
            break
        lo -= step
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return _word_boundaries(text, lo, hi, start, end)


def _word_boundaries(text: str, lo: int, hi: int, start: int, end: int) -> tuple[int, int]:
    """Pull a run's ends back to word boundaries: a glue word that is half of the host's next word
    ("…开户|集团公司") is the host's (jieba on a few characters either side)."""
    import jieba

    jieba.setLogLevel(60)
    if hi < len(text) and re.match(f"[{HAN}]", text[hi]) and re.match(f"[{HAN}]", text[hi - 1]):
        window_start = max(lo, hi - 6)
        pos, cut = window_start, None
        for word in jieba.lcut(text[window_start : hi + 6]):
            if pos < hi < pos + len(word):
                cut = pos
            pos += len(word)
        if cut is not None and cut >= end:
            hi = cut
    if lo > 0 and re.match(f"[{HAN}]", text[lo - 1]) and re.match(f"[{HAN}]", text[lo]):
        window_start = max(0, lo - 6)
        pos, cut = window_start, None
        for word in jieba.lcut(text[window_start : min(hi, lo + 6)]):
            if pos < lo < pos + len(word):
                cut = pos + len(word)
            pos += len(word)
        if cut is not None and cut <= start:
            lo = cut
    return lo, hi


def _has_evidence(run: str, strong: set[str], promo: set[str]) -> bool:
    low = run.lower()
    return (
        any(w in low for w in strong)
        or any(w in low for w in promo)
        or bool(_LINK.search(run))
        or bool(re.search(r"[A-Za-z][A-Za-z_\-]*\d{2,}|\d{5,}", run))
    )


def _clause_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    lo = start
    while lo > 0 and not _CLAUSE_END.match(text, lo - 1):
        lo -= 1
    hi = end
    while hi < len(text) and not _CLAUSE_END.match(text, hi):
        hi += 1
    return lo, hi


def _union(spans) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _run_with_separator(text: str, lo: int, hi: int) -> tuple[int, int]:
    """A run at the end of a line takes the separator before it ("标题_某某娱乐城官网"); a run between two
    spaces takes one of them."""
    line_end = text.find("\n", hi)
    if not text[hi : line_end if line_end != -1 else len(text)].strip():
        # The rest of a headline after its last separator is the advert's, a brand name included ("|开元").
        sep = re.search(r"\s*[_|｜\-—–·:：]+\s*[^\s_|｜\-—–·:：，。]{0,4}$", text[max(0, lo - 10) : lo])
        if sep:
            return lo - len(sep.group()), hi
    if lo > 0 and text[lo - 1] == " " and hi < len(text) and text[hi] == " ":
        return lo, hi + 1
    return lo, hi


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
        handle = re.compile(
            r"\s?(?:" + _LINK.pattern + r")|\s?(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{3,}|\s?\d{5,}"
        ).match(text, end)
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
    ("disclaimer", r"^\s*[【\[]?(免责声明|声明|版权声明|版权说明|特别声明|郑重声明|特别提示)[】\]]?\s*[:：]"),
    ("disclaimer", r"^\s*[【\[](免责声明|声明|版权声明|版权说明|特别声明|郑重声明|特别提示)[】\]]"),
    ("disclaimer", r"据此(操作|投资)[^。]{0,6}风险自(担|负)|(如|若)(涉及|有)(版权|侵权)(问题)?[^。]{0,12}(联系|删除)"),
    ("disclaimer", r"(本文|本站|本网|文章)(内容)?(仅供参考|不构成(任何)?投资建议|观点仅代表作者)"),
    # "本文仅代表作者观点，不代表本站立场", "均转载自其它媒体", "本平台仅提供信息存储服务"
    ("disclaimer", r"(仅|只)代表作者(本人|个人)?(的)?(观点|立场)|不代表本(站|网|网站|报|刊|平台|号)(的)?(观点|立场)"),
    ("disclaimer", r"转载自(其它|其他)媒体|(本平台|本站|本网)仅提供信息存储(空间)?服务"),
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
    (
        "image_placeholder",
        r"^\s*(高清)?(组图|图集|大图|多图)\s*$|^\s*点击(图片)?(进入|查看)?(下一页|下一张|大图|原图)\s*$",
    ),
    # A gallery's navigation: only counters ("3 / 8"), arrows and 上一张/下一张-type words on the line.
    (
        "image_placeholder",
        r"^([\s\d/|‹›<>«»←→·\-]|第\s*\d+\s*张|共\s*\d+\s*张)*((上|下)一(张|图|页|组)|首张|末张|自动播放|全屏|返回图集)"
        r"([\s\d/|‹›<>«»←→·\-]|第\s*\d+\s*张|共\s*\d+\s*张|(上|下)一(张|图|页|组)|首张|末张|自动播放|全屏|返回图集)*$",
    ),
    ("image_placeholder", r"^\s*(\d{1,3}\s*/\s*\d{1,3}|第\s*\d+\s*张\s*/?\s*共\s*\d+\s*张)\s*$"),
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
COMMENT_HEADERS = (
    r"(?i)^\s*[【\[]?(网友评论|用户评论|读者评论|评论区|热门评论|最新评论|全部评论|精彩评论|发表评论|我要评论|查看全部评论"
    r"|网友跟帖|热门跟帖|跟帖|(已有|共有|共)\s*\d+\s*(条|人)(参与)?(评论|跟帖)?|评论\s*[（(]?\d+[)）]?|comments?\s*[(（]?\d*[)）]?)"
    r"\s*[（(]?\d*[)）]?[】\]]?\s*[:：]?\s*$"
)
TIMESTAMP = r"(\d{4}[-/年.]\d{1,2}[-/月.]\d{1,2}日?|\d{1,2}[-/]\d{1,2})\s*\d{1,2}:\d{2}|\d+\s*(分钟|小时|天)前|(?i:\d+\s*(minutes?|hours?|days?) ago)"


# Furniture glued to the end of a paragraph: a photo credit in brackets ("（图片来源：视觉中国）",
# "（新华社记者 王某 摄）"). A bracket without the credit word ("（记者商婧）") is the article's own.
INLINE_PATTERNS = (
    ("image_credit", r"[（(]\s*(图片来源|图源|图片提供|图片由|供图|摄影|图/|图：)[^（）()\n]{0,40}[)）]"),
    ("image_credit", r"[（(][^（）()\n]{0,24}\s摄\s*[)）]|[（(](记者|通讯员)?[^（）()\n，。]{1,16}摄[)）]"),
)


def remove_furniture(
    text: str,
    patterns: Sequence[Sequence[str]] = FURNITURE_PATTERNS,
    max_line_chars: int = 200,
    inline_patterns: Sequence[Sequence[str]] = INLINE_PATTERNS,
) -> OpResult:
    """Remove whole lines that are page furniture: disclaimers, image placeholders and gallery navigation,
    end marks, share bars, and comment sections (a comment header and the timestamped comments that
    follow it); and photo credits glued inside a paragraph (``inline_patterns``).

    A line longer than ``max_line_chars`` is content, never furniture.
    """
    compiled = [(kind, re.compile(p, re.MULTILINE)) for kind, p in patterns]
    header, stamp = re.compile(COMMENT_HEADERS), re.compile(TIMESTAMP)
    spans = [(m.start(), m.end(), "", kind) for kind, p in inline_patterns for m in re.finditer(p, text)]
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
    r"(相关阅读|相关文章|相关推荐|相关新闻|相关报道|延伸阅读|推荐阅读|更多阅读|猜你喜欢|热门文章|热门推荐|热点新闻|精彩推荐"
    r"|更多精彩|往期回顾|今日热点|热门标签|大家都在看|为您推荐|编辑推荐|好书推荐|图书推荐|新书推荐|热门阅读)",
    r"(?i)(related (articles|posts|stories|reading)|recommended( for you)?|you may also like|more stories|trending( now)?|popular posts|read more)",
)


MIN_TOPIC_HAN = 120  # Han characters (or words, for English) before a tail needed to judge it off-topic
MIN_TOPIC_WORDS = 80


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
        # Too little before it to know the document's topic (a two-line notice): nothing is off-topic.
        if len(re.findall(f"[{HAN}]", text[:start])) < MIN_TOPIC_HAN and len(text[:start].split()) < MIN_TOPIC_WORDS:
            break
        han = len(re.findall(f"[{HAN}]", line))
        words = _topic_words(line)
        if han < 15 and sum(1 for w in words if w.isascii()) < 8:
            break
        if _ARTICLE_END.search(line):  # the article's own end mark ("（完）"): its last paragraph, not a tail
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


_ARTICLE_END = re.compile(r"[（(【\[]\s*(完|全文完|END)\s*[)）】\]]\s*$")

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
