"""Clean source documents of the sample bank: what they say (blocks and facts) and how they are written
(.md, .html, .txt, .docx, .pdf).

A document is a list of blocks (title, heading, paragraph, list item, table). Its plain text — what a perfect
extractor returns — is the block texts joined by newlines; every fact sentence is a substring of it. A table's
text is one line per body row as :func:`domainlm.data.tables.table_lines` writes it, and a fact stated in a
table has its row line as its sentence.
"""

from __future__ import annotations

import html
import io
import random
import zipfile
from dataclasses import dataclass, field

from domainlm.sample.world import CATEGORY_NAMES, Entity, TableData, World

FORMATS = ("md", "html", "txt", "docx", "pdf")


@dataclass
class Doc:
    id: str
    title: str
    lang: str
    kind: str  # manual | policy | faq | notice
    products: list[str]  # names of the products/services/branches it describes
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (style, text); title|heading|para|item|table
    facts: list[dict] = field(default_factory=list)  # {"entity","attribute","value","sentence"}
    fmt: str = "txt"
    tables: list[TableData] = field(default_factory=list)  # the tables of its "table" blocks, in order

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.blocks)

    @property
    def path(self) -> str:
        return f"docs/{self.id}.{self.fmt}"


def _fact_sentence(rng: random.Random, entity: Entity, key: str, lang: str) -> tuple[str, dict]:
    spec = entity.specs[key]
    value = entity.value(key, lang)
    sentence = rng.choice(spec.templates(lang)).format(name=entity.name(lang), v=value)
    if lang == "en":
        sentence = sentence[0].upper() + sentence[1:]
    return sentence, {"entity": entity, "attribute": key, "value": value, "sentence": sentence}


# -------------------------------------------------------------------------------------------------- manuals

_MANUAL_TEXT = {
    "zh": {
        "title": "{name}产品说明书",
        "h_overview": "一、产品概述",
        "overview": "{name}是海港银行面向个人客户推出的{cat}产品，由海港银行总行统一管理。",
        "h_terms": "二、产品要素",
        "h_channel": "三、办理渠道",
        "channel": ["客户可通过海港银行手机银行、网上银行或各营业网点办理本产品。",
                    "本产品可在海港银行营业网点柜台及手机银行办理，办理时请携带本人有效身份证件。"],
        "h_risk": "四、风险提示",
        "risk": ["本说明书仅供参考，具体以海港银行届时公布的产品合同为准。",
                 "请客户仔细阅读产品合同条款，充分了解产品特点后审慎决策。"],
    },
    "en": {
        "title": "{name}: Product Manual",
        "h_overview": "1. Overview",
        "overview": "{name} is {cat} product offered by Harbor Bank to individual customers.",
        "h_terms": "2. Key Terms",
        "h_channel": "3. How to Apply",
        "channel": ["Customers can apply through Harbor Bank mobile banking, online banking or any branch.",
                    "Apply at any Harbor Bank branch counter or in the mobile app; bring a valid ID document."],
        "h_risk": "4. Risk Notice",
        "risk": ["This manual is for reference only; the product contract published by Harbor Bank prevails.",
                 "Please read the contract carefully and make decisions prudently."],
    },
}


def manual(doc_id: str, product: Entity, rng: random.Random) -> Doc:
    lang = product.lang
    t = _MANUAL_TEXT[lang]
    name = product.name(lang)
    cat = CATEGORY_NAMES[product.category][1 if lang == "en" else 0]
    if lang == "en":
        cat = ("an " if cat[0] in "aeiou" else "a ") + cat
    doc = Doc(id=doc_id, title=t["title"].format(name=name), lang=lang, kind="manual", products=[name])
    doc.blocks.append(("title", doc.title))
    doc.blocks.append(("heading", t["h_overview"]))
    doc.blocks.append(("para", t["overview"].format(name=name, cat=cat)))
    doc.blocks.append(("heading", t["h_terms"]))
    keys = list(product.attrs)
    rng.shuffle(keys)
    for key in keys:
        sentence, fact = _fact_sentence(rng, product, key, lang)
        doc.blocks.append(("item", sentence))
        doc.facts.append(fact)
    doc.blocks.append(("heading", t["h_channel"]))
    doc.blocks.append(("para", rng.choice(t["channel"])))
    doc.blocks.append(("heading", t["h_risk"]))
    doc.blocks.append(("para", rng.choice(t["risk"])))
    return doc


# -------------------------------------------------------------------------------------------------- policies

POLICIES = {
    "fees": {
        "zh": ("海港银行个人账户服务收费标准", "为规范服务收费，现将个人账户主要服务收费标准公布如下。",
               "以上收费标准自公布之日起执行，如有调整将提前三十日公告。"),
        "en": ("Harbor Bank Personal Account Fee Schedule", "The main fees for personal account services are listed below.",
               "These fees apply from the date of publication; changes are announced thirty days in advance."),
        "services": ["transfer_fee", "atm_fee", "lost_card_fee", "replacement_fee", "sms_fee", "low_balance_fee"],
    },
    "security": {
        "zh": ("海港银行个人账户安全管理办法", "为保障客户资金安全，海港银行对电子渠道交易实行限额管理。",
               "客户发现账户异常时，应立即致电客服热线办理挂失。"),
        "en": ("Harbor Bank Account Security Rules", "To protect customer funds, Harbor Bank limits electronic transactions.",
               "If you notice unusual activity, call the hotline at once to report it."),
        "services": ["daily_limit", "lost_card_fee", "hotline"],
    },
    "privacy": {
        "zh": ("海港银行个人信息保护政策", "海港银行依法收集、使用和保护客户个人信息，不会向无关第三方提供。",
               "客户可随时查询、更正本人个人信息。"),
        "en": ("Harbor Bank Privacy Policy",
               "Harbor Bank collects, uses and protects personal data lawfully and never sells it to third parties.",
               "Customers may view and correct their personal data at any time."),
        "services": ["retention", "hotline"],
    },
}


def _service(world: World, key: str) -> Entity:
    return next(s for s in world.services if key in s.attrs)


def policy(doc_id: str, name: str, lang: str, world: World, rng: random.Random) -> Doc:
    spec = POLICIES[name]
    title, intro, outro = spec[lang]
    doc = Doc(id=doc_id, title=title, lang=lang, kind="policy", products=[])
    doc.blocks += [("title", title), ("para", intro)]
    for n, key in enumerate(spec["services"], start=1):
        entity = _service(world, key)
        sentence, fact = _fact_sentence(rng, entity, key, lang)
        prefix = f"第{n}条 " if lang == "zh" else f"Article {n}. "
        doc.blocks.append(("para", prefix + sentence))
        doc.facts.append(fact)
        doc.products.append(entity.name(lang))
    doc.blocks.append(("para", outro))
    return doc


# -------------------------------------------------------------------------------------------------- FAQs

_FAQ_Q = {
    "zh": {"hotline": "问：海港银行的客服电话是多少？", "daily_limit": "问：手机银行每天最多能转多少钱？",
           "replacement_fee": "问：借记卡坏了，补办要花钱吗？", "sms_fee": "问：开通短信提醒收费吗？",
           "transfer_fee": "问：给其他银行的账户转账收费吗？", "lost_card_fee": "问：卡丢了怎么办，挂失收费吗？"},
    "en": {"hotline": "Q: How do I call Harbor Bank?", "daily_limit": "Q: How much can I transfer per day in the app?",
           "replacement_fee": "Q: My debit card is damaged. Is a new one free?", "sms_fee": "Q: Do SMS alerts cost anything?",
           "transfer_fee": "Q: Do transfers to other banks cost money?", "lost_card_fee": "Q: I lost my card. What does it cost?"},
}


def faq(doc_id: str, lang: str, world: World, rng: random.Random) -> Doc:
    title = "海港银行常见问题解答" if lang == "zh" else "Harbor Bank Frequently Asked Questions"
    doc = Doc(id=doc_id, title=title, lang=lang, kind="faq", products=[])
    doc.blocks.append(("title", title))
    keys = list(_FAQ_Q[lang])
    rng.shuffle(keys)
    for key in keys[:4]:
        entity = _service(world, key)
        sentence, fact = _fact_sentence(rng, entity, key, lang)
        doc.blocks.append(("para", _FAQ_Q[lang][key]))
        doc.blocks.append(("para", ("答：" if lang == "zh" else "A: ") + sentence))
        doc.facts.append(fact)
        doc.products.append(entity.name(lang))
    return doc


# -------------------------------------------------------------------------------------------------- notices


def notice(doc_id: str, branch: Entity, lang: str, rng: random.Random) -> Doc:
    name = branch.name(lang)
    if lang == "zh":
        title = f"关于{name}迁址营业的公告"
        lead = "尊敬的客户：为进一步提升服务品质，我行网点将迁址营业，现将有关事项公告如下。"
        tail = "迁址期间给您带来的不便，敬请谅解。特此公告。"
        sign = "海港银行股份有限公司"
    else:
        title = f"Notice: {name} Is Moving"
        lead = "Dear customers, to serve you better our branch is moving. Details are below."
        tail = "We apologise for any inconvenience during the move."
        sign = "Harbor Bank Co., Ltd."
    doc = Doc(id=doc_id, title=title, lang=lang, kind="notice", products=[name])
    doc.blocks += [("title", title), ("para", lead)]
    for key in ("opening_date", "new_address", "business_hours"):
        sentence, fact = _fact_sentence(rng, branch, key, lang)
        doc.blocks.append(("para", sentence))
        doc.facts.append(fact)
    doc.blocks += [("para", tail), ("para", sign)]
    return doc


def build_documents(world: World, rng: random.Random, n_notices: int, policy_langs: dict[str, list[str]],
                    faq_langs: list[str]) -> list[Doc]:
    docs: list[Doc] = []
    for n, product in enumerate(world.products, start=1):
        docs.append(manual(f"manual-{n:03d}-{product.lang}", product, rng))
    for name, langs in policy_langs.items():
        for lang in langs:
            docs.append(policy(f"policy-{name}-{lang}", name, lang, world, rng))
    for lang in faq_langs:
        docs.append(faq(f"faq-{lang}", lang, world, rng))
    for n, branch in enumerate(world.branches[:n_notices], start=1):
        lang = "en" if n % 5 == 0 else "zh"  # most notices are Chinese; every fifth one English
        docs.append(notice(f"notice-{n:03d}-{lang}", branch, lang, rng))
    # Spread the five file formats over the documents: shuffled, then round-robin, so each format appears.
    formats = list(FORMATS)
    rng.shuffle(formats)
    order = list(range(len(docs)))
    rng.shuffle(order)
    for i, index in enumerate(order):
        docs[index].fmt = formats[i % len(formats)]
    return docs


# -------------------------------------------------------------------------------------------------- tables

# (document id, format, title, introduction, closing line) of each table of the world.
_TABLE_DOCS = {
    "fees_html": ("table-card-fees-zh", "html", "海港银行信用卡收费标准公告",
                  "为便于客户了解信用卡收费项目，现将海港银行信用卡年费标准公布如下。",
                  "附属卡须与主卡同时申领，收费标准如有调整将提前公告。"),
    "wealth_docx": ("table-wealth-fees-zh", "docx", "海港银行理财产品费率说明",
                    "投资者购买理财产品前，请仔细阅读以下费率信息。",
                    "以上费率按产品说明书约定的方式收取，产品过往业绩不代表未来表现。"),
    "rates_pdf": ("table-deposit-rates-zh", "pdf", "海港银行个人存款利率公告",
                  "根据市场利率变化，海港银行调整个人人民币存款挂牌利率，现公告如下。",
                  "以上利率自公告之日起执行，单位为年利率（%）。"),
}


def table_of(data: TableData, number: int = 1):
    """The :class:`domainlm.data.tables.Table` of a sample table, as a perfect reader returns it."""
    from domainlm.data.tables import Table

    return Table(header=data.header, rows=data.rows, caption=data.caption, number=number, lang="zh")


def table_document(data: TableData) -> Doc:
    """A short Chinese notice around one table: title, introduction, the caption as a heading, the table,
    a closing line. Each asked cell is a fact whose sentence is its row's line."""
    from domainlm.data.tables import table_lines

    doc_id, fmt, title, intro, outro = _TABLE_DOCS[data.key]
    lines = table_lines(table_of(data))
    kind = "notice" if fmt == "pdf" else "policy"
    doc = Doc(id=doc_id, title=title, lang="zh", kind=kind, products=[], fmt=fmt, tables=[data])
    doc.blocks += [("title", title), ("para", intro), ("heading", data.caption), ("table", "\n".join(lines)),
                   ("para", outro)]
    for entity, key, row in data.facts:
        value = entity.value(key, "zh")
        doc.facts.append({"entity": entity, "attribute": key, "value": value, "sentence": lines[row]})
        if entity.name_zh not in doc.products:
            doc.products.append(entity.name_zh)
    return doc


def _spans(data: TableData) -> tuple[dict[tuple[int, int], tuple[int, int]], set[tuple[int, int]]]:
    """``(starts, covered)``: the (rowspan, colspan) of each merged cell by its top-left slot, and the slots
    a merged cell covers besides its own."""
    starts, covered = {}, set()
    for r0, c0, r1, c1 in data.merges:
        starts[(r0, c0)] = (r1 - r0 + 1, c1 - c0 + 1)
        covered |= {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)} - {(r0, c0)}
    return starts, covered


def _html_table(data: TableData) -> list[str]:
    starts, covered = _spans(data)
    out = ["<table>"]
    for part, rows, offset, tag in (("thead", data.header, 0, "th"), ("tbody", data.rows, len(data.header), "td")):
        out.append(f"<{part}>")
        for r, row in enumerate(rows, start=offset):
            cells = []
            for c, text in enumerate(row):
                if (r, c) in covered:
                    continue
                rowspan, colspan = starts.get((r, c), (1, 1))
                attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (f' colspan="{colspan}"' if colspan > 1 else "")
                cells.append(f"<{tag}{attrs}>{html.escape(text)}</{tag}>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append(f"</{part}>")
    out.append("</table>")
    return out


def _docx_table(document, data: TableData) -> None:
    grid = data.header + data.rows
    table = document.add_table(rows=len(grid), cols=len(grid[0]))
    table.style = "Table Grid"
    starts, covered = _spans(data)
    for r, row in enumerate(grid):
        for c, text in enumerate(row):
            if (r, c) not in covered and (r, c) not in starts:
                table.cell(r, c).text = text
    for (r, c), (rowspan, colspan) in starts.items():
        table.cell(r, c).merge(table.cell(r + rowspan - 1, c + colspan - 1)).text = grid[r][c]


def _pdf_table(data: TableData, font: str):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    grid = data.header + data.rows
    starts, covered = _spans(data)
    cells = [["" if (r, c) in covered else text for c, text in enumerate(row)] for r, row in enumerate(grid)]
    style = [("FONTNAME", (0, 0), (-1, -1), font), ("FONTSIZE", (0, 0), (-1, -1), 10),
             ("GRID", (0, 0), (-1, -1), 0.5, colors.black), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]
    style += [("SPAN", (c, r), (c + colspan - 1, r + rowspan - 1)) for (r, c), (rowspan, colspan) in starts.items()]
    table = Table(cells, hAlign="LEFT")
    table.setStyle(TableStyle(style))
    return table


# -------------------------------------------------------------------------------------------------- writers


def render_md(doc: Doc) -> str:
    out = []
    for style, text in doc.blocks:
        out.append({"title": "# ", "heading": "## ", "item": "- "}.get(style, "") + text)
    return "\n\n".join(out) + "\n"


def render_txt(doc: Doc) -> str:
    return doc.text + "\n"


def render_html(doc: Doc) -> str:
    lines = ["<!DOCTYPE html>", f'<html lang="{"zh-CN" if doc.lang == "zh" else "en"}">', "<head>",
             '<meta charset="utf-8">', f"<title>{html.escape(doc.title)}</title>", "</head>", "<body>", "<article>"]
    in_list = False
    for n, (style, text) in enumerate(doc.blocks):
        if style == "item" and not in_list:
            lines.append("<ul>")
            in_list = True
        if style != "item" and in_list:
            lines.append("</ul>")
            in_list = False
        if style == "table":
            lines += _html_table(doc.tables[sum(1 for s, _ in doc.blocks[:n] if s == "table")])
            continue
        tag = {"title": "h1", "heading": "h2", "item": "li"}.get(style, "p")
        lines.append(f"<{tag}>{html.escape(text)}</{tag}>")
    if in_list:
        lines.append("</ul>")
    lines += ["</article>", "</body>", "</html>"]
    return "\n".join(lines) + "\n"


# Fixed timestamp for every zip member and document property, so the same seed gives the same bytes.
_EPOCH = (2025, 1, 1, 0, 0, 0)


def _normalize_zip(data: bytes) -> bytes:
    """Rewrite a zip (docx) with fixed member timestamps: python-docx stamps members with the current time."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_EPOCH)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def render_docx(doc: Doc) -> bytes:
    import datetime

    import docx

    document = docx.Document()
    props = document.core_properties
    stamp = datetime.datetime(*_EPOCH, tzinfo=datetime.timezone.utc)
    props.author, props.last_modified_by, props.title = "Harbor Bank", "Harbor Bank", doc.title
    props.created, props.modified, props.revision = stamp, stamp, 1
    tables = iter(doc.tables)
    for style, text in doc.blocks:
        if style == "table":
            _docx_table(document, next(tables))
        elif style == "title":
            document.add_heading(text, level=0)
        elif style == "heading":
            document.add_heading(text, level=1)
        elif style == "item":
            document.add_paragraph(text, style="List Bullet")
        else:
            document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return _normalize_zip(buffer.getvalue())


def render_pdf(doc: Doc) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    # STSong-Light is one of reportlab's built-in CID fonts: Chinese text without shipping a font file.
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    font = "STSong-Light" if doc.lang == "zh" else "Helvetica"
    wrap = "CJK" if doc.lang == "zh" else None
    styles = {
        "title": ParagraphStyle("title", fontName=font, fontSize=16, leading=22, wordWrap=wrap, spaceAfter=8),
        "heading": ParagraphStyle("heading", fontName=font, fontSize=13, leading=18, wordWrap=wrap, spaceBefore=6),
        "para": ParagraphStyle("para", fontName=font, fontSize=10.5, leading=16, wordWrap=wrap),
        "item": ParagraphStyle("item", fontName=font, fontSize=10.5, leading=16, wordWrap=wrap, leftIndent=12),
    }
    story = []
    tables = iter(doc.tables)
    for style, text in doc.blocks:
        if style == "table":
            story.append(_pdf_table(next(tables), font))
        else:
            story.append(Paragraph(html.escape(text), styles[style]))
        story.append(Spacer(1, 3))
    buffer = io.BytesIO()
    # invariant=1 pins the creation date and document ID, so the bytes depend only on the content.
    template = SimpleDocTemplate(buffer, pagesize=A4, invariant=1, title=doc.title, author="Harbor Bank",
                                 creator="domainlm sample", producer="domainlm sample", subject=doc.kind)
    template.build(story)
    return buffer.getvalue()


def render(doc: Doc) -> bytes:
    """The file bytes of a document in its format."""
    if doc.fmt == "docx":
        return render_docx(doc)
    if doc.fmt == "pdf":
        return render_pdf(doc)
    text = {"md": render_md, "html": render_html, "txt": render_txt}[doc.fmt](doc)
    return text.encode("utf-8")
