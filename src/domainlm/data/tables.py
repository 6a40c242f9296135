"""Tables as facts: HTML, DOCX and PDF tables read as tables, written one line per body row with its header.

A table flattened to its cell texts loses what a cell means ("200元" of what?), and the quality filter then
drops the residue. Here each reader (lxml for HTML, python-docx for DOCX, pdfplumber for PDF) gives a
:class:`Table`: header rows and body rows on a full grid, merged cells repeated into every slot they
cover (HTML colspan/rowspan, DOCX gridSpan/vMerge, PDF cells spanning several ruling lines), and
:func:`table_lines` writes every body row as one self-contained sentence::

    【信用卡收费标准·第2行】卡片等级：金卡，主卡年费：200元，附属卡年费：100元，免年费条件：每年刷卡满6次。

The row label names the table and the row (the citation a reader shows), multi-row headers are joined
the way a reader asks for the column ("年费" over "主卡": "主卡年费", :func:`join_levels`), and the line is one sentence for the sentence splitter (cells are joined with commas,
never with sentence-ending punctuation), so retrieval and the extractive reader answer "金卡的年费是多少"
from one row and cite it. The knowledge base's chunker keeps every row line as its own chunk
(:data:`ROW_LINE`).

Which rows are header rows: the format's own marking when there is one (``<thead>``/``<th>`` rows, DOCX
"repeat as header row"), else the first row plus every row a header cell spans into (a rowspan going
down, or a colspan whose sub-headers stand in the next row). A leading row made of one cell spanning the
whole width is the table's title, not a header. Layout tables (a page laid out in a grid, a cell holding
a whole paragraph) and single-column tables are not data: the readers return None and the caller keeps
their text as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A row line as table_lines writes it: the chunker keeps each one as its own chunk.
ROW_LINE = re.compile(r"^【[^【】\n]{1,100}·(?:第\d+行|row \d+)】")

MAX_CELL_CHARS = 200  # a cell longer than this holds prose: the table is a layout table
_SPACE = re.compile(r"\s+")
_HAN = re.compile("[\u3400-\u9fff]")
# Punctuation that would end the row's sentence inside a cell; a row must stay one sentence.
_STOPS_ZH = str.maketrans({"。": "，", "；": "，", ";": "，", "！": "，", "？": "，"})
_STOPS_EN = str.maketrans({";": ",", "。": ",", "；": ","})


@dataclass
class Table:
    """A table on a full grid: ``header`` rows and ``rows`` (body) of equal width, merged cells repeated."""

    header: list[list[str]]
    rows: list[list[str]]
    caption: str = ""
    number: int = 1  # the table's position in its document (表2), counted from 1
    lang: str = "zh"
    sections: list[str] = field(default_factory=list)  # per body row: the section row above it ("" if none)
    first_row: int = 1  # the number of the first body row (a table continued from the previous page goes on)

    @property
    def columns(self) -> list[str]:
        """One name per column from its header levels (repeats of a merged header cell counted once); "" for
        a column without a header. See :func:`join_levels`."""
        names = []
        for c in range(len(self.rows[0]) if self.rows else 0):
            levels: list[str] = []
            for row in self.header:
                text = row[c] if c < len(row) else ""
                if text and text not in levels:
                    levels.append(text)
            names.append(join_levels(levels, self.lang))
        return names

    @property
    def name(self) -> str:
        """The table's name in row labels: its caption, else its number ("表2")."""
        return self.caption or (f"表{self.number}" if self.lang == "zh" else f"Table {self.number}")

    def location(self, index: int) -> str:
        """Where body row ``index`` (from 0) is: "表2 第3行" / "Table 2, row 3"."""
        if self.lang == "zh":
            return f"表{self.number} 第{index + self.first_row}行"
        return f"Table {self.number}, row {index + self.first_row}"


_COORDINATION = re.compile(r"[与和及、/]")  # "税率与扣除" over "税率": a list of its parts, not a kind
_MODIFIER = re.compile(r"\d|^[本上下前后当同环]")  # "2024年", "第1季度", "本期", "上年", "同比": said first


def join_levels(levels: list[str], lang: str = "zh") -> str:
    """The name of a column under several header levels (top first), as a reader would ask for it.

    Chinese puts the modifier first: a group header is usually the head noun and its sub-headers the
    modifiers ("年费" over "主卡" is "主卡年费", "缴存比例" over "单位" is "单位缴存比例"), unless the upper level
    is itself a modifier — a period or a figure ("2024年" over "营业收入" is "2024年营业收入"). A lower level
    that already names the upper one's head ("交易费率" over "认购费率": "认购费率"), or stands under a group
header that only lists its parts ("税率与扣除" over "速算扣除数"), stands alone. English
    names keep the levels top-down, joined by " - ".
    """
    if lang != "zh":
        return " - ".join(levels)
    name = ""
    for level in levels:
        if not name:
            name = level
        elif name in level or level.endswith(name[-2:]) or _COORDINATION.search(name):
            name = level
        elif _MODIFIER.search(name):
            name = name + level
        else:
            name = level + name
    return name


def clean_cell(text: str, lang: str = "zh") -> str:
    """One line of cell text: whitespace collapsed (nothing between Han characters a layout broke),
    sentence-ending punctuation inside the cell turned into commas, none at its end."""
    text = (text or "").replace("\u00a0", " ").replace("【", "[").replace("】", "]")
    text = re.sub(r"(?<=[\u3400-\u9fff，、：（）])\s+(?=[\u3400-\u9fff，、：（）])", "", text.strip())
    text = _SPACE.sub(" ", text).strip()
    text = text.rstrip("。；;，,、 ")
    return text.translate(_STOPS_ZH if lang == "zh" else _STOPS_EN).strip()


def table_lines(table: Table) -> list[str]:
    """One line per body row: the row label, then ``header：value`` pairs; empty cells are left out."""
    zh = table.lang == "zh"
    columns = table.columns
    if not table.header and len(columns) == 2:
        columns = ["", ""]
    lines = []
    for index, row in enumerate(table.rows):
        pairs = []
        if not table.header and len(row) == 2 and all(row):  # a name-value list: "年费：200元"
            row = [f"{row[0]}：{row[1]}" if zh else f"{row[0]}: {row[1]}", ""]
        for name, value in zip(columns, row, strict=False):
            if not value:
                continue
            pair = (f"{name}：{value}" if zh else f"{name}: {value}") if name and name != value else value
            if not pairs or pairs[-1] != pair:  # a cell merged across columns of one name is said once
                pairs.append(pair)
        if not pairs:
            continue
        number = index + table.first_row
        where = f"第{number}行" if zh else f"row {number}"
        section = table.sections[index] if index < len(table.sections) else ""
        label = f"{table.name[:50]}·{section[:30]}·{where}" if section else f"{table.name[:50]}·{where}"
        body = "，".join(pairs) + "。" if zh else ", ".join(pairs) + "."
        lines.append(f"【{label}】{body}")
    return lines


# --- From spanning cells to a table ---------------------------------------------------------------


@dataclass
class _Cell:
    text: str
    rowspan: int = 1
    colspan: int = 1
    header: bool = False  # marked as a header cell by the format (<th>)


def _language(texts: list[str]) -> str:
    joined = "".join(texts)
    return "zh" if _HAN.search(joined) or not re.search("[A-Za-z]", joined) else "en"


def _place(rows: list[list[_Cell]]) -> tuple[list[list[str]], list[list[tuple[int, int, _Cell] | None]]]:
    """Lay cells with spans on a grid (as a browser does: each cell takes the next free slot of its row).
    Returns the grid of texts and, per slot, ``(row, col, cell)`` of the cell that covers it."""
    slots: dict[tuple[int, int], tuple[int, int, _Cell]] = {}
    for r, cells in enumerate(rows):
        c = 0
        for cell in cells:
            while (r, c) in slots:
                c += 1
            for dr in range(cell.rowspan):
                for dc in range(cell.colspan):
                    slots.setdefault((r + dr, c + dc), (r, c, cell))
            c += cell.colspan
    height = len(rows)
    width = max((c + 1 for (_, c) in slots), default=0)
    origin = [[slots.get((r, c)) for c in range(width)] for r in range(height)]
    grid = [[slot[2].text if slot else "" for slot in row] for row in origin]
    return grid, origin


def _header_count(origin: list[list[tuple[int, int, _Cell] | None]], marked: int) -> int:
    """How many leading rows are header rows (see the module docstring); at least one body row is left."""
    height = len(origin)
    if marked:
        return min(marked, height - 1)
    count = 1
    changed = True
    while changed and count < height:
        changed = False
        for r in range(count):
            for slot in origin[r]:
                if slot and slot[0] + slot[2].rowspan > count:  # a header cell reaching down into row `count`
                    count, changed = slot[0] + slot[2].rowspan, True
        last = [slot for slot in origin[count - 1] if slot and slot[0] == count - 1]
        if any(slot[2].colspan > 1 for slot in last) and count < height - 1:  # sub-headers under a span
            count, changed = count + 1, True
    return min(count, height - 1)


def _key_value(first_row: list) -> bool:
    """A first row of two plain cells whose second states a figure: a name-value pair, not a header."""
    cells = [slot[2] for slot in first_row if slot]
    return all(c.rowspan == 1 and c.colspan == 1 for c in cells) and bool(re.search(r"\d", cells[-1].text))


def build_table(rows: list[list[_Cell]], *, number: int = 1, caption: str = "", marked_header: int = 0) -> Table | None:
    """A :class:`Table` from rows of spanning cells, or None when it is not a data table."""
    if any(len(cell.text) > MAX_CELL_CHARS for row in rows for cell in row):
        return None
    lang = _language([cell.text for row in rows for cell in row] + [caption])
    rows = [[_Cell(clean_cell(c.text, lang), max(1, c.rowspan), max(1, c.colspan), c.header) for c in row]
            for row in rows]
    grid, origin = _place(rows)
    # Leading title rows: one cell across the whole width names the table.
    while len(rows) > 2 and len(grid[0]) > 1 and len({id(slot[2]) if slot else None for slot in origin[0]}) == 1 \
            and rows[0][0].rowspan == 1:
        caption = caption or rows[0][0].text
        rows = rows[1:]
        grid, origin = _place(rows)
    width = len(grid[0]) if grid else 0
    # Drop empty rows and empty columns (ruling lines pdfplumber found around nothing, spacer cells).
    keep_rows = [r for r, row in enumerate(grid) if any(row)]
    keep_cols = [c for c in range(width) if any(grid[r][c] for r in keep_rows)]
    grid = [[grid[r][c] for c in keep_cols] for r in keep_rows]
    origin = [[origin[r][c] for c in keep_cols] for r in keep_rows]
    if len(grid) < 2 or len(keep_cols) < 2:
        return None
    marked = 0
    while marked < len(grid) and all(slot and slot[2].header for slot in origin[marked] if slot):
        marked += 1
    count = _header_count(origin, max(marked_header, marked if marked < len(grid) else 0))
    if not marked_header and not marked and len(grid[0]) == 2 and _key_value(origin[0]):
        count = 0  # "年费 | 200元": a two-column list of names and values, no header row
    # Section rows inside the body (one cell across the whole width: "一、定期存款") name the rows below.
    body, sections, section = [], [], ""
    for row, slots in zip(grid[count:], origin[count:], strict=True):
        if len({id(slot[2]) if slot else None for slot in slots}) == 1 and slots[0]:
            section = row[0]
            continue
        body.append(row)
        sections.append(section)
    if not body:
        return None
    return Table(header=grid[:count], rows=body, caption=clean_cell(caption, lang), number=number, lang=lang,
                 sections=sections if any(sections) else [])


def caption_like(text: str) -> bool:
    """A line that can name the table below it: short, and not a sentence."""
    text = text.strip()
    return 0 < len(text) <= 40 and not text.endswith(("。", "；", ";", "：", ":", ".", "！", "？", "!", "?", "，", ","))


# --- HTML (lxml) ----------------------------------------------------------------------------------


def _int_attr(element, name: str) -> int:
    try:
        return max(1, min(int(str(element.get(name, "1")).strip() or 1), 1000))
    except ValueError:
        return 1


def html_table(element, number: int = 1) -> Table | None:
    """A ``<table>`` element as a :class:`Table`; None for a layout table (nested tables, prose cells)."""
    if element.xpath(".//table"):
        return None
    rows, marked = [], 0
    for tr in element.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr"):
        cells = [_Cell(td.text_content(), _int_attr(td, "rowspan"), _int_attr(td, "colspan"), td.tag == "th")
                 for td in tr.xpath("./td|./th")]
        if cells:
            rows.append(cells)
            if tr.getparent().tag == "thead":
                marked = len(rows)
    if not rows:
        return None
    captions = element.xpath("./caption")
    caption = captions[0].text_content() if captions else ""
    if not caption:
        previous = element.getprevious()
        if previous is not None and isinstance(previous.tag, str) and caption_like(previous.text_content()):
            caption = previous.text_content()
    return build_table(rows, number=number, caption=caption, marked_header=marked)


def tables_from_html(html) -> list[Table]:
    """The data tables of an HTML page (a string or an lxml tree), numbered in document order."""
    if isinstance(html, (str, bytes)):
        import lxml.html

        html = lxml.html.fromstring(html)
    found: list[Table] = []
    for element in html.iter("table"):
        table = html_table(element, number=len(found) + 1)
        if table is not None:
            found.append(table)
    return found


# --- DOCX (python-docx) ---------------------------------------------------------------------------


def docx_table(table, number: int = 1, caption: str = "") -> Table | None:
    """A python-docx table as a :class:`Table`, read from its XML: ``w:gridSpan`` is a colspan, a
    ``w:vMerge`` run (``restart`` then continuations) one cell with a rowspan. (``row.cells`` would
    repeat a merged cell per grid column and hide which cell is which.)"""
    from docx.oxml.ns import qn
    from docx.table import _Cell as DocxCell

    if table._tbl.find(".//" + qn("w:tc") + "/" + qn("w:tbl")) is not None:
        return None  # a table inside a cell: a layout table
    trs = table._tbl.tr_lst
    # Per row: (grid column, tc) of each cell, so vertical continuations can be matched by column.
    positions: list[list[tuple[int, object]]] = []
    for tr in trs:
        col = tr.grid_before
        cells = []
        for tc in tr.tc_lst:
            cells.append((col, tc))
            col += tc.grid_span
        positions.append(cells)
    rows: list[list[_Cell]] = []
    marked = 0
    for r, cells in enumerate(positions):
        out = []
        for col, tc in cells:
            if tc.vMerge == "continue":
                continue  # covered by the cell above that starts the run
            rowspan = 1
            if tc.vMerge == "restart":
                for below in positions[r + 1:]:
                    match = next((t for c, t in below if c == col), None)
                    if match is None or match.vMerge != "continue":
                        break
                    rowspan += 1
            out.append(_Cell(DocxCell(tc, table).text, rowspan, tc.grid_span))
        rows.append(out)
        tr_pr = trs[r].trPr
        if tr_pr is not None and tr_pr.find(qn("w:tblHeader")) is not None and marked == r:
            marked = r + 1
    if not rows:
        return None
    return build_table(rows, number=number, caption=caption, marked_header=marked)


def tables_from_docx(document) -> list[Table]:
    """The data tables of a python-docx ``Document``, numbered in document order."""
    found: list[Table] = []
    for table in document.tables:
        parsed = docx_table(table, number=len(found) + 1)
        if parsed is not None:
            found.append(parsed)
    return found


# --- PDF (pdfplumber) -----------------------------------------------------------------------------


def _edges(values: list[float], tolerance: float = 1.0) -> list[float]:
    out: list[float] = []
    for value in sorted(values):
        if not out or value - out[-1] > tolerance:
            out.append(value)
    return out


def pdf_table(found, number: int = 1, caption: str = "") -> Table | None:
    """A pdfplumber table as a :class:`Table`. Spans come from the cells' boxes (a merged cell's box
    covers several column or row edges); pdfplumber's own ``extract()`` gives None for those slots
    without saying whether the cell spans left or up."""
    boxes = [tuple(box) for box in found.cells]
    if not boxes:
        return None
    xs = _edges([box[0] for box in boxes])
    ys = _edges([box[1] for box in boxes])
    texts = {}
    page = found.page
    for box in boxes:
        texts[box] = page.crop(box, strict=False).extract_text() or ""

    def index(edges: list[float], value: float) -> int:
        return min(range(len(edges)), key=lambda i: abs(edges[i] - value))

    placed: dict[tuple[int, int], tuple] = {}
    for box in boxes:
        placed[(index(ys, box[1]), index(xs, box[0]))] = box
    rows: list[list[_Cell]] = []
    for r in range(len(ys)):
        row = []
        for c in range(len(xs)):
            box = placed.get((r, c))
            if box is None:
                continue
            colspan = sum(1 for x in xs if box[0] - 1 <= x < box[2] - 1)
            rowspan = sum(1 for y in ys if box[1] - 1 <= y < box[3] - 1)
            row.append(_Cell(texts[box], rowspan, colspan))
        rows.append(row)
    return build_table(rows, number=number, caption=caption)


def continuation(previous: Table, table: Table) -> Table | None:
    """``table`` as the rest of ``previous`` (the last table of the page before) when it has the same columns:
    with the header repeated or without one (its first rows are then body rows), the rows go on under
    ``previous``'s header, name, number and section, numbered on from its last row. None otherwise."""
    if not previous.rows or not table.rows or len(table.columns) != len(previous.columns):
        return None
    if table.header == previous.header:
        rows, sections = table.rows, table.sections or [""] * len(table.rows)
    else:
        rows = table.header + table.rows
        sections = [""] * len(table.header) + (table.sections or [""] * len(table.rows))
    carried = previous.sections[-1] if previous.sections else ""
    sections = [section or carried for section in sections]
    return Table(header=previous.header, rows=rows, caption=previous.caption, number=previous.number,
                 lang=previous.lang, sections=sections if any(sections) else [],
                 first_row=previous.first_row + len(previous.rows))


def page_tables(page, first_number: int = 1, previous: Table | None = None
                ) -> list[tuple[tuple[float, float, float, float], Table]]:
    """``(bbox, table)`` of the data tables on one pdfplumber page, top to bottom. The caption of a table is
    the line of text just above it when that line is short and not a sentence. ``previous``: the last table
    of the page before; a first table without a caption and with its columns continues it (a table that
    runs over a page break), keeping its number."""
    found = sorted(page.find_tables(), key=lambda t: (t.bbox[1], t.bbox[0]))
    out = []
    number = first_number
    previous_bottom = 0.0
    for candidate in found:
        above = page.crop((0, previous_bottom, page.width, candidate.bbox[1]), strict=False).extract_text() or ""
        lines = [line for line in above.splitlines() if line.strip()]
        caption = lines[-1] if lines and caption_like(lines[-1]) else ""
        table = pdf_table(candidate, number=number, caption=caption)
        if table is not None:
            rest = continuation(previous, table) if previous is not None and not out and not caption else None
            if rest is None:
                number += 1
            out.append((tuple(candidate.bbox), rest or table))
        previous_bottom = candidate.bbox[3]
    return out


def tables_from_pdf(path: str) -> list[Table]:
    """The data tables of a PDF, page by page, numbered in document order."""
    import pdfplumber

    found: list[Table] = []
    with pdfplumber.open(path) as pdf:
        last = None  # the last table of the page before: a table at the top of a page may continue it
        for page in pdf.pages:
            tables = [table for _, table in page_tables(page, found[-1].number + 1 if found else 1, last)]
            for table in tables:
                if table.first_row > 1 and found and found[-1].number == table.number:
                    found[-1] = _joined(found[-1], table)
                else:
                    found.append(table)
            last = tables[-1] if tables else None
    return found


def _joined(first: Table, rest: Table) -> Table:
    """One table from its part on one page and its continuation on the next."""
    sections = (first.sections or [""] * len(first.rows)) + (rest.sections or [""] * len(rest.rows))
    return Table(header=first.header, rows=first.rows + rest.rows, caption=first.caption, number=first.number,
                 lang=first.lang, sections=sections if any(sections) else [], first_row=first.first_row)
