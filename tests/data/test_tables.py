"""Tables become facts: HTML, DOCX and PDF tables with merged cells and two-row headers are read as tables,
written one line per row with its headers, kept by the clean recipe, and answered from a cell with a citation
to the row (``kb build`` + ``kb search`` and the extractive reader).

The tables are public figures written the way their publishers lay them out: Beijing subway fares (HTML),
the individual income tax rates for comprehensive income (DOCX) and the PBoC benchmark deposit rates of
24 October 2015 (PDF, reportlab's built-in CID font as the sample domain uses).
"""

import io
import json

import pytest

from domainlm.cli import main
from domainlm.data.ingest import read_docx, read_html, read_pdf
from domainlm.data.tables import ROW_LINE, html_table, join_levels, table_lines, tables_from_docx, tables_from_html
from domainlm.kb import KBConfig, answer, build_kb, open_kb
from domainlm.kb.chunking import chunk_document
from domainlm.kb.sources import iter_documents

FARES_HTML = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>北京地铁票价调整方案</title></head><body>
<nav><a href="/">首页</a> <a href="/news">新闻</a></nav>
<article><h1>北京地铁票价调整方案</h1>
<p>经市政府批准，本市轨道交通实行按里程分段计价，具体票价如下。</p>
<h2>轨道交通票价表</h2>
<table>
<thead><tr><th rowspan="2">乘车里程</th><th colspan="2">票价</th><th rowspan="2">支付方式</th></tr>
<tr><th>全票</th><th>学生票</th></tr></thead>
<tbody>
<tr><td>6公里以内</td><td>3元</td><td>1.5元</td><td rowspan="4">一卡通刷卡或扫码乘车</td></tr>
<tr><td>6至12公里</td><td>4元</td><td>2元</td></tr>
<tr><td>12至22公里</td><td>5元</td><td>2.5元</td></tr>
<tr><td>22至32公里</td><td>6元</td><td>3元</td></tr>
</tbody></table>
<p>32公里以上部分，每增加1元可乘坐20公里。</p>
</article><footer>版权所有</footer></body></html>
"""

FARE_ROWS = [
    "【轨道交通票价表·第1行】乘车里程：6公里以内，全票票价：3元，学生票票价：1.5元，支付方式：一卡通刷卡或扫码乘车。",
    "【轨道交通票价表·第2行】乘车里程：6至12公里，全票票价：4元，学生票票价：2元，支付方式：一卡通刷卡或扫码乘车。",
    "【轨道交通票价表·第3行】乘车里程：12至22公里，全票票价：5元，学生票票价：2.5元，支付方式：一卡通刷卡或扫码乘车。",
    "【轨道交通票价表·第4行】乘车里程：22至32公里，全票票价：6元，学生票票价：3元，支付方式：一卡通刷卡或扫码乘车。",
]

TAX_BRACKETS = [
    ("1", "不超过36000元的部分", "3", "0"),
    ("2", "超过36000元至144000元的部分", "10", "2520"),
    ("3", "超过144000元至300000元的部分", "20", "16920"),
    ("4", "超过300000元至420000元的部分", "25", "31920"),
]

DEPOSIT_RATES = [("三个月", "1.35", "1.10"), ("半年", "1.55", "1.30"), ("一年", "1.75", "1.50"), ("二年", "2.35", "2.10"),
                 ("三年", "3.00", "2.75")]


def make_docx(path):
    """The income tax table: "税率与扣除" spans two columns (gridSpan), "级数"/"全年应纳税所得额" span the two
    header rows (vMerge), and one note cell spans every body row (vMerge)."""
    import docx

    document = docx.Document()
    document.add_heading("个人所得税税率表", level=1)
    document.add_paragraph("居民个人的综合所得，以每一纳税年度的收入额减除费用六万元以及专项扣除后的余额为应纳税所得额。")
    document.add_paragraph("综合所得税率表")
    table = document.add_table(rows=2 + len(TAX_BRACKETS), cols=5)
    table.style = "Table Grid"
    table.cell(0, 0).merge(table.cell(1, 0)).text = "级数"
    table.cell(0, 1).merge(table.cell(1, 1)).text = "全年应纳税所得额"
    table.cell(0, 2).merge(table.cell(0, 3)).text = "税率与扣除"
    table.cell(0, 4).merge(table.cell(1, 4)).text = "适用范围"
    table.cell(1, 2).text, table.cell(1, 3).text = "税率（%）", "速算扣除数"
    for r, row in enumerate(TAX_BRACKETS, start=2):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(2, 4).merge(table.cell(1 + len(TAX_BRACKETS), 4)).text = "居民个人综合所得"
    document.add_paragraph("本表所称全年应纳税所得额，是指依照税法规定计算的余额。")
    document.save(str(path))


def make_pdf(path):
    """The deposit rate table: "项目" spans two columns and both header rows, "年利率（%）" spans 调整前/调整后,
    "活期存款" spans the two label columns, "定期存款（整存整取）" spans five rows."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("p", fontName="STSong-Light", fontSize=10.5, leading=16, wordWrap="CJK")
    grid = [["项目", "", "年利率（%）", ""], ["", "", "调整前", "调整后"], ["活期存款", "", "0.35", "0.35"]]
    grid += [["定期存款（整存整取）" if i == 0 else "", term, before, after]
             for i, (term, before, after) in enumerate(DEPOSIT_RATES)]
    table = Table(grid)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), "STSong-Light"), ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
        ("SPAN", (0, 0), (1, 1)), ("SPAN", (2, 0), (3, 0)), ("SPAN", (0, 2), (1, 2)), ("SPAN", (0, 3), (0, 7)),
    ]))
    story = [Paragraph("中国人民银行决定下调金融机构人民币存款基准利率", style),
             Paragraph("自2015年10月24日起，金融机构一年期存款基准利率下调0.25个百分点至1.50%，其他各档次存款基准利率相应调整。",
                       style),
             Spacer(1, 6), Paragraph("金融机构人民币存款基准利率调整表", style), Spacer(1, 4), table, Spacer(1, 6),
             Paragraph("个人住房公积金存款利率保持不变。", style)]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, invariant=1).build(story)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables") / "docs"
    root.mkdir()
    (root / "fares.html").write_text(FARES_HTML, encoding="utf-8")
    make_docx(root / "tax.docx")
    make_pdf(root / "rates.pdf")
    return root


# --- Reading ----------------------------------------------------------------------------------------


def test_html_table_with_spans_and_two_row_header(docs):
    text, meta = read_html((docs / "fares.html").read_bytes())
    lines = text.splitlines()
    # Each row in place, between the paragraph before the table and the one after it; the chrome is gone.
    assert lines == ["北京地铁票价调整方案", "经市政府批准，本市轨道交通实行按里程分段计价，具体票价如下。", "轨道交通票价表",
                     *FARE_ROWS, "32公里以上部分，每增加1元可乘坐20公里。"]
    table = tables_from_html(FARES_HTML)[0]
    assert table.header == [["乘车里程", "票价", "票价", "支付方式"], ["乘车里程", "全票", "学生票", "支付方式"]]
    assert table.columns == ["乘车里程", "全票票价", "学生票票价", "支付方式"]
    assert table.location(2) == "表1 第3行"


def test_docx_table_with_grid_span_and_vertical_merge(docs):
    text, meta = read_docx(str(docs / "tax.docx"))
    assert meta == {"tables": 1}
    assert text.startswith("# 个人所得税税率表\n\n居民个人的综合所得")  # headings stay in place, as the KB needs
    assert ("【综合所得税率表·第2行】级数：2，全年应纳税所得额：超过36000元至144000元的部分，税率（%）：10，"
            "速算扣除数：2520，适用范围：居民个人综合所得。") in text.splitlines()
    rows = [line for line in text.splitlines() if ROW_LINE.match(line)]
    assert len(rows) == len(TAX_BRACKETS) and all("适用范围：居民个人综合所得" in row for row in rows)
    assert text.index("综合所得税率表") < text.index(rows[0]) < text.index("本表所称全年应纳税所得额")
    import docx

    (table,) = tables_from_docx(docx.Document(str(docs / "tax.docx")))
    assert table.header[0] == ["级数", "全年应纳税所得额", "税率与扣除", "税率与扣除", "适用范围"]
    assert table.columns[2:4] == ["税率（%）", "速算扣除数"]  # "税率与扣除" is the group, not part of the name


def test_pdf_table_with_merged_cells_once_and_in_place(docs):
    text, meta = read_pdf(str(docs / "rates.pdf"))
    assert meta == {"pages": 1, "tables": 1}
    rows = [line for line in text.splitlines() if ROW_LINE.match(line)]
    assert rows[0] == "【金融机构人民币存款基准利率调整表·第1行】项目：活期存款，调整前年利率（%）：0.35，调整后年利率（%）：0.35。"
    assert rows[3] == ("【金融机构人民币存款基准利率调整表·第4行】项目：定期存款（整存整取），项目：一年，"
                       "调整前年利率（%）：1.75，调整后年利率（%）：1.50。")
    assert len(rows) == 1 + len(DEPOSIT_RATES)
    # pypdf's copy of the cells is not added a second time; the prose around the table is kept in order.
    assert text.count("2.75") == 1 and "调整前" not in text.replace("调整前年利率", "")
    assert text.index("其他各档次存款基准利率相应调整") < text.index(rows[0]) < text.index("个人住房公积金存款利率保持不变")


@pytest.mark.parametrize("repeat_header", [True, False], ids=["header-repeated", "header-not-repeated"])
def test_pdf_table_over_a_page_break_is_one_table(tmp_path, repeat_header):
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    from domainlm.data.tables import tables_from_pdf

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("p", fontName="STSong-Light", fontSize=10.5, leading=16)
    # Telephone area codes of prefecture-level cities (public numbering plan), 70 rows: two pages.
    grid = [["地区", "号码", ""], ["", "区号", "邮编前缀"]]
    grid += [[f"第{i}号地区", f"0{300 + i}", f"{100000 + i * 100}"] for i in range(70)]
    table = Table(grid, repeatRows=2 if repeat_header else 0)
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), "STSong-Light"),
                               ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
                               ("SPAN", (0, 0), (0, 1)), ("SPAN", (1, 0), (2, 0))]))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, invariant=1).build([Paragraph("地区编码表", style), table])
    (tmp_path / "codes.pdf").write_bytes(buffer.getvalue())
    text, meta = read_pdf(str(tmp_path / "codes.pdf"))
    assert meta["pages"] >= 2 and meta["tables"] == 1
    rows = [line for line in text.splitlines() if ROW_LINE.match(line)]
    assert rows == [f"【地区编码表·第{i + 1}行】地区：第{i}号地区，区号号码：0{300 + i}，邮编前缀号码：{100000 + i * 100}。"
                    for i in range(70)]
    (whole,) = tables_from_pdf(str(tmp_path / "codes.pdf"))
    assert len(whole.rows) == 70 and whole.location(69) == "表1 第70行"


def test_layout_tables_and_lists_stay_text():
    prose = "本行坚持以客户为中心，持续完善服务渠道，" * 12
    layout = f"<html><body><table><tr><td><p>{prose}</p></td><td>侧栏</td></tr></table></body></html>"
    text, _ = read_html(layout.encode())
    assert prose in text and not any(ROW_LINE.match(line) for line in text.splitlines())
    one_column = "<html><body><table><tr><td>第一条</td></tr><tr><td>第二条</td></tr></table></body></html>"
    assert read_html(one_column.encode())[0].splitlines() == ["第一条", "第二条"]
    # Two columns, no header cells, a figure in the first row: names and values, not a header.
    pairs = "<table><tr><td>手续费</td><td>每笔2元</td></tr><tr><td>开户行</td><td>北京分行</td></tr></table>"
    import lxml.html

    table = html_table(lxml.html.fromstring(pairs))
    assert table_lines(table) == ["【表1·第1行】手续费：每笔2元。", "【表1·第2行】开户行：北京分行。"]


def test_docx_layout_table_is_walked_cell_by_cell(tmp_path):
    # A page laid out with a table (prose beside a nested data table) and a one-column list.
    import docx

    document = docx.Document()
    document.add_paragraph("办理须知如下。")
    layout = document.add_table(rows=1, cols=2)
    layout.cell(0, 0).text = "左栏：请携带本人身份证件。"
    inner = layout.cell(0, 1).add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("项目", "金额"), ("工本费", "10元"), ("加急费", "30元")]):
        inner.cell(r, 0).text, inner.cell(r, 1).text = a, b
    listing = document.add_table(rows=2, cols=1)
    listing.cell(0, 0).text, listing.cell(1, 0).text = "第一条", "第二条"
    document.save(str(tmp_path / "layout.docx"))
    text, meta = read_docx(str(tmp_path / "layout.docx"))
    assert text.split("\n\n") == ["办理须知如下。", "左栏：请携带本人身份证件。",
                                   "【表1·第1行】项目：工本费，金额：10元。\n【表1·第2行】项目：加急费，金额：30元。",
                                   "第一条", "第二条"]
    assert meta == {"tables": 1}


def test_title_rows_sections_english_and_odd_spans():
    import lxml.html

    html = """<table><tr><td colspan="3">2024年城市公共自行车收费标准</td></tr>
    <tr><td>类别</td><td>时长</td><td>费用</td></tr>
    <tr><td colspan="3">一、普通用户</td></tr><tr><td>单次</td><td>1小时内</td><td>免费</td></tr>
    <tr><td colspan="3">二、月卡用户</td></tr><tr><td>月卡</td><td colspan="abc">30天</td><td>10元。含税；</td></tr></table>"""
    table = html_table(lxml.html.fromstring(html))
    assert table.caption == "2024年城市公共自行车收费标准"
    assert table_lines(table) == [
        "【2024年城市公共自行车收费标准·一、普通用户·第1行】类别：单次，时长：1小时内，费用：免费。",
        "【2024年城市公共自行车收费标准·二、月卡用户·第2行】类别：月卡，时长：30天，费用：10元，含税。",
    ]
    english = """<table><tr><th rowspan="2">Card</th><th colspan="2">Annual fee</th></tr>
    <tr><th>Primary</th><th>Supplementary</th></tr><tr><td>Gold</td><td>CNY 200</td><td>CNY 100</td></tr></table>"""
    table = html_table(lxml.html.fromstring(english))
    assert table_lines(table) == ["【Table 1·row 1】Card: Gold, Annual fee - Primary: CNY 200, Annual fee - Supplementary: CNY 100."]


def test_header_levels_join_as_a_reader_asks():
    assert join_levels(["年费", "主卡"]) == "主卡年费"
    assert join_levels(["缴存比例", "单位"]) == "单位缴存比例"
    assert join_levels(["2024年", "营业收入"]) == "2024年营业收入"  # a period is said first
    assert join_levels(["交易费率", "认购费率"]) == "认购费率"  # the lower level already names the kind
    assert join_levels(["Fee", "Counter"], "en") == "Fee - Counter"


def test_each_row_is_its_own_chunk():
    text = "# 收费标准\n\n说明文字。\n" + "\n".join(FARE_ROWS) + "\n后记。"
    chunks = chunk_document("d", text, chunk_chars=400)
    rows = [c for c in chunks if ROW_LINE.match(c.text)]
    assert [c.text for c in rows] == FARE_ROWS
    assert all(text[c.start:c.end] == c.text and c.headings == ["收费标准"] for c in rows)


# --- Clean, kb build, kb search, the extractive reader --------------------------------------------------


def test_clean_recipe_keeps_every_row(docs, tmp_path):
    from domainlm.data import clean

    clean([docs], tmp_path / "clean", {"workers": 1})
    kept = {json.loads(line)["source"]: json.loads(line)["text"]
            for line in (tmp_path / "clean" / "clean.jsonl").read_text(encoding="utf-8").splitlines()}
    assert (tmp_path / "clean" / "rejected.jsonl").read_text(encoding="utf-8").strip() == ""
    assert all(row in kept["docs/fares.html"] for row in FARE_ROWS)
    for source, count in (("docs/tax.docx", len(TAX_BRACKETS)), ("docs/rates.pdf", 1 + len(DEPOSIT_RATES))):
        assert sum(bool(ROW_LINE.match(line)) for line in kept[source].splitlines()) == count, kept[source]


QUESTIONS = [
    # (question, the value, the row label the answer must cite)
    ("12至22公里的学生票票价是多少？", "2.5元", "轨道交通票价表·第3行"),
    ("6至12公里的全票票价是多少？", "4元", "轨道交通票价表·第2行"),
    ("全年应纳税所得额超过144000元至300000元的部分，速算扣除数是多少？", "16920", "综合所得税率表·第3行"),
    ("三年定期存款调整后年利率是多少？", "2.75", "金融机构人民币存款基准利率调整表·第6行"),
    ("活期存款调整前的年利率是多少？", "0.35", "金融机构人民币存款基准利率调整表·第1行"),
]


@pytest.fixture(scope="module")
def table_kb(docs, tmp_path_factory):
    out = tmp_path_factory.mktemp("table-kb") / "kb"
    assert main(["kb", "build", str(docs), "--out", str(out), "--embedder", "none"]) == 0
    return out


@pytest.mark.parametrize("question,value,row", QUESTIONS)
def test_kb_search_returns_the_row(table_kb, capsys, question, value, row):
    capsys.readouterr()
    assert main(["kb", "search", str(table_kb), question, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["text"].startswith(f"【{row}】") and value in hits[0]["text"], hits[0]


@pytest.mark.parametrize("question,value,row", QUESTIONS)
def test_extractive_reader_answers_from_the_cell_citing_the_row(table_kb, question, value, row):
    reply = answer(open_kb(table_kb), question)
    assert not reply.refused, reply.reason
    assert value in reply.answer
    cited = reply.citations[0]
    assert cited.text.startswith(f"【{row}】") and ROW_LINE.match(cited.text) and "\n" not in cited.text


def test_kb_reads_docx_with_the_clean_stage_reader(docs):
    (doc,) = [d for d in iter_documents([docs]) if d["id"] == "tax"]
    assert doc["text"] == read_docx(str(docs / "tax.docx"))[0]
    assert doc["meta"]["title"] == "个人所得税税率表"


def test_a_document_without_tables_reads_as_before(tmp_path):
    # Public prose (CMRC 2018 style) in HTML, DOCX and PDF: no row lines appear, the text is all there.
    import docx

    sentence = "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。本作以三大故事为主轴。"
    html = f"<html><body><h1>战国无双3</h1><p>{sentence}</p></body></html>"
    assert read_html(html.encode())[0] == f"战国无双3\n{sentence}"
    document = docx.Document()
    document.add_paragraph(sentence)
    document.save(str(tmp_path / "a.docx"))
    assert read_docx(str(tmp_path / "a.docx")) == (sentence, {})


def test_kb_answers_table_questions_after_a_plain_build(docs, tmp_path):
    # The same through the Python API (what `chatfile` and `serve` use).
    build_kb(list(iter_documents([docs])), tmp_path / "kb", KBConfig(embedder="none"))
    kb = open_kb(tmp_path / "kb")
    right = sum(value in answer(kb, q).answer for q, value, _ in QUESTIONS)
    assert right == len(QUESTIONS)
