"""Noisy web copies of clean documents, with exact ground truth for every injected span.

A page is built from blocks of pieces. A piece is either kept text or one injected noise span
(pinyin, spam, comment, ...); personal data sits inside pieces at known offsets. Rendering walks the
pieces and records each span's character offsets in the final (correctly decoded) text, so
``decoded[start:end] == text`` holds by construction. ``clean_text`` is what a perfect cleaner keeps:
the kept pieces, with mojibake and pinyin-annotated characters restored to their original.
"""

from __future__ import annotations

import functools
import html
import random
from dataclasses import dataclass, field

from domainlm.errors import DomainlmError
from domainlm.sample import pii
from domainlm.sample.documents import Doc

NOISE_TYPES = ("pinyin", "spam", "comment", "disclaimer", "image_placeholder", "furniture", "repeat",
               "offtopic_tail", "censor", "mojibake")

# Simplified character -> (traditional form, pinyin). Scraped Chinese pages often carry "當(dāng)":
# a traditional character followed by its reading. A short hand-made table is all the generator needs.
PINYIN = {
    "当": ("當", "dāng"), "银": ("銀", "yín"), "贷": ("貸", "dài"), "费": ("費", "fèi"), "险": ("險", "xiǎn"),
    "财": ("財", "cái"), "务": ("務", "wù"), "额": ("額", "é"), "储": ("儲", "chǔ"), "时": ("時", "shí"),
    "间": ("間", "jiān"), "个": ("個", "gè"), "为": ("為", "wéi"), "对": ("對", "duì"), "发": ("發", "fā"),
    "产": ("產", "chǎn"), "业": ("業", "yè"), "资": ("資", "zī"), "续": ("續", "xù"), "还": ("還", "huán"),
    "应": ("應", "yīng"), "请": ("請", "qǐng"), "过": ("過", "guò"), "证": ("證", "zhèng"), "办": ("辦", "bàn"),
    "户": ("戶", "hù"), "存": ("存", "cún"), "卡": ("卡", "kǎ"), "网": ("網", "wǎng"), "营": ("營", "yíng"),
    "期": ("期", "qī"), "款": ("款", "kuǎn"), "品": ("品", "pǐn"), "年": ("年", "nián"), "准": ("準", "zhǔn"),
}

SPAM = {
    "zh": ["【澳门新葡京】注册即送88元彩金，详情访问 www.xpj8866.example", "重庆时时彩一分钟开奖稳赚不赔，加微信cqssc888",
           "北京赛车pk10精准计划日赚500+，点击进入", "六合彩特码免费送，请访问 lhc6688.example", "皇冠体育足球投注首充送100%",
           "大发快三官方平台，充值秒到账"],
    "en": ["WIN BIG at Lucky888 Casino, claim your free bonus at lucky888.example", "Best online slots 2025, 200% deposit match!",
           "Daily lottery picks that never lose, visit jackpot-tips.example", "Sports betting tips: 10x returns guaranteed"],
}
DISCLAIMER = {
    "zh": ["免责声明：本站部分内容转载自互联网，仅供参考，不构成任何投资建议。如有侵权，请联系删除。",
           "声明：本文来源于网络，版权归原作者所有，本站仅作信息分享，不承担任何法律责任。"],
    "en": ["Disclaimer: this article was reposted from the Internet for reference only and is not investment advice.",
           "Disclaimer: copyright belongs to the original author; contact us for removal."],
}
IMAGES = {"zh": ["1.png", "第1张", "[图片]", "第2张", "image_003.jpg", "点击查看大图"], "en": ["1.png", "[image]", "img_002.jpg"]}
FURNITURE = {
    "zh": ["THEEND", "暂无评论", "返回顶部", "分享到：微信 微博 QQ空间", "上一篇 下一篇", "相关阅读", "点击排行", "首页 / 财经 / 银行"],
    "en": ["THE END", "No comments yet", "Back to top", "Share: WeChat Weibo", "Previous | Next", "Related articles"],
}
OFFTOPIC = {
    "zh": ["红烧肉的做法：五花肉切块焯水，加冰糖炒出糖色，再放生抽老抽小火炖一小时即可出锅。",
           "昨晚的足球联赛中，主队凭借下半场的两粒进球逆转取胜，球迷在看台上欢呼到深夜。",
           "今年夏天最火的旅行地是海边小城，民宿价格比去年上涨了三成，仍然一房难求。",
           "某明星在综艺节目中透露自己每天坚持跑步十公里，网友纷纷表示佩服。"],
    "en": ["How to bake sourdough: feed the starter the night before, then let the dough rise for twelve hours.",
           "Last night the home team came back from two goals down to win the derby in extra time.",
           "Ten tips for a cheaper summer holiday: book early and travel midweek."],
}
COMMENT_TEXT = {
    "zh": {
        None: ["这个利率还可以吧", "去网点问了，客户经理态度很好", "感觉不如余额宝方便", "收藏了，回头仔细看看", "楼上说得对"],
        "mobile": "有懂的朋友加我，电话{x}", "bank_card": "我的卡号{x}突然被冻结了，怎么回事？",
        "id_card": "身份证号{x}办不了，一直提示信息有误", "email": "求资料，发我邮箱{x}，谢谢",
        "address": "我家在{x}，附近有网点吗",
    },
    "en": {
        None: ["Rates look fine to me", "The branch staff were helpful", "Bookmarked, thanks", "Agree with the above"],
        "mobile": "Anyone who knows, call me on {x}", "bank_card": "My card {x} was frozen, why?",
        "id_card": "ID {x} keeps getting rejected", "email": "Please send the forms to {x}",
        "address": "I live at {x}, is there a branch nearby?",
    },
}
COMMENT_USERS = {"zh": ("网友8823", "理财小白", "匿名用户", "海边的风", "user_5521", "老王"),
                 "en": ("moneyfan", "Amy_W", "guest_2291", "harbor_watcher", "tomtom")}


@dataclass
class Piece:
    text: str
    kind: str | None = None  # None = kept text; else a noise type
    original: str | None = None  # for mojibake/pinyin: the intended text
    pii: list[tuple[str, int, int]] = field(default_factory=list)  # (type, start, end) within text


@dataclass
class Block:
    pieces: list[Piece]
    content: bool = True  # part of the article (clean_text) or a whole-block noise span
    tag: str = "p"

    def clean(self) -> str:
        return "".join(p.original if p.original is not None else ("" if p.kind else p.text) for p in self.pieces)


def _kept_positions(block: Block) -> list[tuple[int, int]]:
    """(piece index, offset) of every place where a kept piece can be split."""
    return [(i, j) for i, p in enumerate(block.pieces) if p.kind is None for j in range(1, len(p.text))]


def _insert(blocks: list[Block], piece: Piece, rng: random.Random, after: tuple[str, ...] = ("，", "；", ",", ";")) -> bool:
    """Splice a noise piece into a sentence, right after a comma where there is one (as spam bots do)."""
    def splits_a_word(text: str, j: int) -> bool:  # never cut inside a number ("500,000") or an English word
        a, b = text[j - 1], text[j]
        return a.isdigit() or b.isdigit() or (a.isascii() and a.isalpha() and b.isascii() and b.isalpha())

    spots = [(b, i, j) for b in blocks for i, j in _kept_positions(b) if not splits_a_word(b.pieces[i].text, j)]
    if not spots:
        return False
    good = [(b, i, j) for b, i, j in spots if b.pieces[i].text[:j].endswith(after)]
    block, i, j = rng.choice(good or spots)
    host = block.pieces[i]
    block.pieces[i:i + 1] = [Piece(host.text[:j]), piece, Piece(host.text[j:])]
    return True


def _pinyin(block: Block, rng: random.Random, k: int = 2) -> bool:
    spots = [(i, j) for i, p in enumerate(block.pieces) if p.kind is None for j, ch in enumerate(p.text) if ch in PINYIN]
    if not spots:
        return False
    chosen = sorted(rng.sample(spots, min(k, len(spots))), reverse=True)  # right to left keeps indices valid
    for i, j in chosen:
        host = block.pieces[i]
        ch = host.text[j]
        trad, reading = PINYIN[ch]
        block.pieces[i:i + 1] = [Piece(host.text[:j]), Piece(f"{trad}({reading})", "pinyin", original=ch),
                                 Piece(host.text[j + 1:])]
    block.pieces = [p for p in block.pieces if p.text]
    return True


def _mojibake(block: Block, rng: random.Random) -> bool:
    """Replace one clause with its UTF-8 bytes decoded as GBK (the classic '鍥犱负' mojibake)."""
    candidates = []
    for i, p in enumerate(block.pieces):
        if p.kind is not None:
            continue
        start = 0
        for end, ch in enumerate(p.text + "。"):
            if ch in "，。；：":
                if end - start >= 4:
                    try:
                        p.text[start:end].encode("utf-8").decode("gbk")
                        candidates.append((i, start, end))
                    except UnicodeDecodeError:
                        pass
                start = end + 1
    if not candidates:  # no whole clause decodes as GBK: fall back to a shorter run of Chinese characters
        for i, p in enumerate(block.pieces):
            if p.kind is not None:
                continue
            for start in range(len(p.text)):
                for end in range(start + 10, start + 3, -2):
                    chunk = p.text[start:end]
                    if end <= len(p.text) and all("\u4e00" <= ch <= "\u9fff" for ch in chunk):
                        try:
                            chunk.encode("utf-8").decode("gbk")
                        except UnicodeDecodeError:
                            continue
                        candidates.append((i, start, end))
                        break
    if not candidates:
        return False
    i, start, end = rng.choice(candidates)
    host = block.pieces[i]
    original = host.text[start:end]
    garbled = original.encode("utf-8").decode("gbk")
    block.pieces[i:i + 1] = [Piece(host.text[:start]), Piece(garbled, "mojibake", original=original),
                             Piece(host.text[end:])]
    block.pieces = [p for p in block.pieces if p.text]
    return True


def _comments(lang: str, rng: random.Random, pii_types: list[str]) -> Piece:
    """A comment section: header, then user + timestamp + text lines; some comments leak personal data."""
    texts = COMMENT_TEXT[lang]
    kinds: list[str | None] = list(pii_types) + [None] * rng.randint(1, 2)
    rng.shuffle(kinds)
    lines = ["网友评论：" if lang == "zh" else "Comments:"]
    spans: list[tuple[str, int, int]] = []
    offset = len(lines[0]) + 1
    for kind in kinds:
        stamp = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        head = f"{rng.choice(COMMENT_USERS[lang])} {stamp} "
        if kind is None:
            line = head + rng.choice(texts[None])
        else:
            value = pii.GENERATORS[kind](rng)
            template = texts[kind]
            before = head + template[: template.index("{x}")]
            line = before + value + template[template.index("{x}") + 3:]
            spans.append((kind, offset + len(before), offset + len(before) + len(value)))
        lines.append(line)
        offset += len(line) + 1
    return Piece("\n".join(lines), "comment", pii=spans)


def _contact_line(lang: str, rng: random.Random) -> Block:
    """A kept byline with an author's contact details: personal data a cleaner must mask, not drop."""
    phone, mail = pii.mobile(rng), pii.email(rng)
    if lang == "zh":
        head, mid, tail = "（本文编辑联系电话：", "，邮箱：", "）"
    else:
        head, mid, tail = "(Editor contact: phone ", ", email ", ")"
    text = head + phone + mid + mail + tail
    spans = [("mobile", len(head), len(head) + len(phone)),
             ("email", len(head) + len(phone) + len(mid), len(head) + len(phone) + len(mid) + len(mail))]
    return Block([Piece(text, pii=spans)])


@dataclass
class WebCopy:
    path: str
    encoding: str
    data: bytes
    record: dict
    noise: list[dict]
    pii: list[dict]


@functools.lru_cache(maxsize=1)
def _s2tw():
    import opencc

    return opencc.OpenCC("s2tw")  # loading the dictionaries takes a moment: once per process


def _convert_traditional(blocks: list[Block]) -> None:
    """Big5 pages are written in traditional characters (Taiwan standard, which Big5 can encode)."""
    converter = _s2tw()
    for block in blocks:
        for piece in block.pieces:
            converted = converter.convert(piece.text)
            # Offsets of personal data inside the piece must survive: only accept a same-length conversion.
            if len(converted) == len(piece.text):
                piece.text = converted
            if piece.original is not None:
                piece.original = converter.convert(piece.original)


def make_copy(doc: Doc, path: str, encoding: str, noise_types: list[str], rng: random.Random,
              contact: bool, pii_types: list[str], drop_block: bool = False) -> WebCopy:
    lang = doc.lang
    tags = {"title": "h1", "heading": "h2"}
    blocks = [Block([Piece(text)], tag=tags.get(style, "p")) for style, text in doc.blocks]
    if drop_block:  # near duplicates lose one block, as a re-post that trimmed a paragraph
        del blocks[rng.randrange(1, len(blocks))]
    body = [b for b in blocks if b.tag == "p"]  # paragraphs and list items: where sentences are
    applied: list[str] = []
    gap = " " if lang == "en" else ""  # English spam goes in after a comma, as its own words
    for kind in noise_types:
        ok = True
        if kind == "pinyin":
            ok = any(_pinyin(b, rng) for b in rng.sample(body, len(body)))
        elif kind == "mojibake":
            ok = any(_mojibake(b, rng) for b in rng.sample(body, len(body)))
        elif kind == "spam":
            ok = _insert(body, Piece(gap + rng.choice(SPAM[lang]), "spam"), rng)
        elif kind == "censor":
            ok = _insert(body, Piece("***", "censor"), rng)
        if ok and kind in ("pinyin", "mojibake", "spam", "censor"):
            applied.append(kind)
    # Whole-block noise, placed between or after the article's blocks.
    if "repeat" in noise_types:
        chosen = rng.choice(body)
        i = next(n for n, b in enumerate(blocks) if b is chosen)
        blocks.insert(i + 1, Block([Piece(blocks[i].clean(), "repeat")], content=False))
        applied.append("repeat")
    if "image_placeholder" in noise_types:
        for _ in range(rng.randint(1, 2)):
            blocks.insert(rng.randint(1, len(blocks)),
                          Block([Piece(rng.choice(IMAGES[lang]), "image_placeholder")], content=False))
        applied.append("image_placeholder")
    if contact:
        blocks.append(_contact_line(lang, rng))
    tail: list[Block] = []
    if "furniture" in noise_types:
        blocks.insert(0, Block([Piece(rng.choice(FURNITURE[lang][3:]), "furniture")], content=False, tag="div"))
        tail.append(Block([Piece(rng.choice(FURNITURE[lang][:3]), "furniture")], content=False, tag="div"))
        applied.append("furniture")
    if "offtopic_tail" in noise_types:
        tail.append(Block([Piece(rng.choice(OFFTOPIC[lang]), "offtopic_tail")], content=False))
        applied.append("offtopic_tail")
    if "disclaimer" in noise_types:
        tail.append(Block([Piece(rng.choice(DISCLAIMER[lang]), "disclaimer")], content=False, tag="div"))
        applied.append("disclaimer")
    if "comment" in noise_types:
        tail.append(Block([_comments(lang, rng, pii_types)], content=False, tag="div"))
        applied.append("comment")
    blocks += tail
    if encoding == "big5":
        _convert_traditional(blocks)

    is_html = path.endswith(".html")
    out: list[str] = []
    pos = 0
    noise: list[dict] = []
    found_pii: list[dict] = []

    def emit(text: str) -> None:
        nonlocal pos
        out.append(text)
        pos += len(text)

    title = next(b for b in blocks if b.tag == "h1").clean()
    if is_html:
        charset = {"utf-8": "utf-8", "gbk": "gbk", "gb18030": "gb18030", "big5": "big5"}[encoding]
        emit(f'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="{charset}">\n<title>{html.escape(title)}</title>\n'
             "</head>\n<body>\n")
    for block in blocks:
        if is_html:
            emit(f"<{block.tag}>" if block.content else f'<{block.tag} class="extra">')
        for piece in block.pieces:
            text = html.escape(piece.text, quote=False) if is_html else piece.text
            if piece.pii and text != piece.text:
                raise DomainlmError(f"{path}: personal data piece changed by HTML escaping")
            start = pos
            emit(text)
            if piece.kind is not None:
                record = {"path": path, "type": piece.kind, "start": start, "end": pos, "text": text}
                if piece.original is not None:
                    record["original"] = piece.original
                noise.append(record)
            for kind, s, e in piece.pii:
                found_pii.append({"path": path, "type": kind, "start": start + s, "end": start + e,
                                  "text": piece.text[s:e]})
        emit(f"</{block.tag}>\n" if is_html else "\n")
    if is_html:
        emit("</body>\n</html>\n")
    text = "".join(out)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise DomainlmError(f"{path}: generated text not encodable as {encoding}: {exc}") from None
    clean_text = "\n".join(b.clean() for b in blocks if b.content)
    record = {"path": path, "encoding": encoding, "source_doc": doc.id, "duplicate_of": None,
              "near_duplicate_of": None, "clean_text": clean_text, "lang": lang, "noise_types": sorted(set(applied))}
    return WebCopy(path, encoding, data, record, noise, found_pii)


def build_web(docs: list[Doc], rng: random.Random, n_copies: int, n_exact: int, n_near: int) -> list[WebCopy]:
    """Noisy copies of some documents, then exact and near duplicates of some copies."""
    zh_docs = [d for d in docs if d.lang == "zh" and len(d.blocks) >= 4]
    en_docs = [d for d in docs if d.lang == "en" and len(d.blocks) >= 4]
    n_en = max(1, n_copies // 5) if en_docs else 0
    chosen = rng.sample(zh_docs, min(len(zh_docs), n_copies - n_en)) + rng.sample(en_docs, min(len(en_docs), n_en))
    # Encodings cycle so every size has GBK, GB18030 and Big5 pages; English pages are UTF-8.
    zh_encodings = ["utf-8", "gbk", "big5", "gb18030", "utf-8", "gbk"]
    copies: list[WebCopy] = []
    zh_count = 0
    for n, doc in enumerate(chosen, start=1):
        if doc.lang == "zh":
            encoding = zh_encodings[zh_count % len(zh_encodings)]
            zh_count += 1
        else:
            encoding = "utf-8"
        applicable = [t for t in NOISE_TYPES
                      if not (t in ("pinyin", "mojibake") and (doc.lang == "en" or encoding == "big5"))]
        if n == 1:  # the first page carries every kind of noise and personal data, so even `tiny` covers all
            types, pii_types = applicable, list(pii.GENERATORS)
        else:
            types = sorted(rng.sample(applicable, rng.randint(3, len(applicable))), key=NOISE_TYPES.index)
            pii_types = rng.sample(list(pii.GENERATORS), rng.randint(1, 3))
        ext = "html" if n % 2 == 1 else "txt"
        path = f"web/page-{n:03d}.{ext}"
        copies.append(make_copy(doc, path, encoding, types, rng, contact=n == 1 or rng.random() < 0.4,
                                pii_types=pii_types))
    originals = list(copies)
    k = len(copies)
    for source in rng.sample(originals, min(n_exact, len(originals))):
        k += 1
        path = f"web/page-{k:03d}.{source.path.rsplit('.', 1)[1]}"
        record = dict(source.record, path=path, duplicate_of=source.path)
        copies.append(WebCopy(path, source.encoding, source.data, record,
                              [dict(r, path=path) for r in source.noise], [dict(r, path=path) for r in source.pii]))
    for source in rng.sample(originals, min(n_near, len(originals))):
        k += 1
        doc = next(d for d in docs if d.id == source.record["source_doc"])
        path = f"web/page-{k:03d}.{'txt' if source.path.endswith('html') else 'html'}"
        types = [t for t in source.record["noise_types"] if t not in ("comment", "offtopic_tail")]
        near = make_copy(doc, path, source.encoding, types, rng, contact=False, pii_types=[], drop_block=True)
        near.record["near_duplicate_of"] = source.path
        copies.append(near)
    return copies
