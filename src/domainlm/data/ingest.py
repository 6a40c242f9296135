"""Ingest: turn input files into raw documents, or into rejections with a reason.

txt/md (any encoding: UTF-8, UTF-16, GBK/GB18030, Big5), html (block text without page chrome, lxml), pdf (text
layer by pypdf, tables by pdfplumber), docx (python-docx, headings and tables in document order), jsonl/csv (one
document per record, a named text column). A bad file becomes a rejection; it never stops the run.

Tables in HTML, DOCX and PDF are read as tables and written one line per body row, each row with its table
name, row number and header names (:mod:`domainlm.data.tables`), so a cell stays a fact.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import expand_inputs

TEXT_EXTS = {".txt", ".md", ".markdown", ".text", ".rst"}
HTML_EXTS = {".html", ".htm", ".xhtml"}
RECORD_EXTS = {".jsonl", ".csv"}


class Rejected(Exception):
    """An input that cannot become a document; the message is the reason written to rejected.jsonl."""


@dataclass
class Unit:
    """One piece of work for a worker: a whole file, or one record of a jsonl/csv file."""

    source: str  # stable name: the input folder's name + the path inside it
    position: int  # 0 for a file; the line/row number for a record
    path: str
    record: str | dict | None = None  # raw jsonl line, or a csv row already parsed
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return doc_id(self.source, self.position)


def doc_id(source: str, position: int) -> str:
    """Stable id from where the document came from, never from run order."""
    return hashlib.sha1(f"{source}#{position}".encode()).hexdigest()[:16]


def named_inputs(inputs: list[str | Path]) -> Iterator[tuple[Path, str, str | None]]:
    """``(path, source, problem)`` for every input file, in a deterministic order (files sorted).

    ``source`` is the stable name a document gets: the input folder's name + the path inside it, or the
    file name. ``problem`` is why the path cannot be read at all (a folder that cannot be listed, a broken
    symlink, a FIFO), else None: such a path is reported by the caller, never dropped without a word.
    Shared with the knowledge base's reader so that both name (and so id) a document alike.
    """
    seen: set[str] = set()
    for item in inputs:
        item = Path(item)
        root = item.parent if os.path.isdir(item) else None
        problems: list[tuple[Path, str]] = []
        files = expand_inputs([item], problems)
        entries = sorted([(path, None) for path in files] + problems, key=lambda entry: entry[0])
        for path, problem in entries:
            source = path.relative_to(root).as_posix() if root is not None else path.name
            if path == item and problem is not None:  # a named input that cannot be read: as the user wrote it
                source = path.as_posix()
            if source in seen:  # two inputs with the same name (a/web, b/web): the path as given
                source = path.as_posix()
            seen.add(source)
            yield path, source, problem


def iter_units(inputs: list[str | Path], text_field: str = "text") -> Iterator[Unit]:
    """Every unit of work in the inputs, in a deterministic order (files sorted, records in file order).

    A path that cannot be read becomes a unit that is rejected with the reason."""
    for path, source, problem in named_inputs(inputs):
        if problem is not None:
            yield Unit(source, 0, str(path), record={"__error__": problem})
            continue
        ext = path.suffix.lower()
        if ext == ".jsonl":
            yield from _jsonl_units(path, source)
        elif ext == ".csv":
            yield from _csv_units(path, source, text_field)
        else:
            yield Unit(source, 0, str(path))


def _jsonl_units(path: Path, source: str) -> Iterator[Unit]:
    line_no = 0
    try:
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield Unit(source, line_no, str(path), record=raw.decode("utf-8", errors="replace"))
    except OSError as exc:
        # Position 0 is free (records count from line 1); the lines read before the failure are kept.
        after = f" after line {line_no}" if line_no else ""
        yield Unit(source, 0, str(path), record={"__error__": f"unreadable file{after} ({exc.strerror or exc})"})


def _csv_units(path: Path, source: str, text_field: str) -> Iterator[Unit]:
    try:
        text = decode_bytes(path.read_bytes())[0]
    except Rejected as exc:
        yield Unit(source, 0, str(path), record={"__error__": str(exc)})
        return
    except OSError as exc:
        yield Unit(source, 0, str(path), record={"__error__": f"unreadable file ({exc.strerror or exc})"})
        return
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        yield Unit(
            source,
            0,
            str(path),
            record={"__error__": f"no '{text_field}' column (columns: {reader.fieldnames})"},
        )
        return
    for row_no, row in enumerate(reader, start=2):  # row 1 is the header
        yield Unit(source, row_no, str(path), record=dict(row))


# --- Decoding -------------------------------------------------------------------------------------


def _plausibility(text: str) -> float:
    """How much a decoded text looks like real text: common Chinese characters and ASCII count, rare
    characters, control characters and replacement characters count against."""
    from domainlm.data.normalize import char_ranks

    ranks = char_ranks()
    sample = text[:5000]
    if not sample:
        return 0.0
    good = 0
    for ch in sample:
        if ch.isascii():
            good += ch.isprintable() or ch in "\n\r\t"
        elif ranks.get(ch, 10**6) < 3500 or ch in "，。、；：？！“”‘’（）《》【】—…·":
            good += 1
    return good / len(sample)


def decode_bytes(raw: bytes) -> tuple[str, str]:
    """``(text, encoding)``: BOMs first, then strict UTF-8, then the most plausible of the CJK codecs
    and charset-normalizer's guess. Binary data (NUL bytes outside UTF-16) is rejected."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    nul = raw[:4096].count(0)
    if nul:
        sample = raw[:4096]
        # UTF-16 without a BOM: NUL bytes in every other position.
        for encoding, half in (("utf-16-le", sample[1::2]), ("utf-16-be", sample[0::2])):
            if nul >= len(sample) // 4 and half.count(0) > 0.3 * len(half):
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError:
                    continue
                if _plausibility(text) >= 0.8:
                    return text, encoding
        raise Rejected("binary file (NUL bytes)")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates = ["gb18030", "big5"]
    from charset_normalizer import from_bytes

    guess = from_bytes(raw[:65536]).best()
    if guess is not None and guess.encoding not in candidates:
        candidates.append(guess.encoding)
    best: tuple[float, str, str] | None = None
    for encoding in candidates:
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        score = _plausibility(text)
        if best is None or score > best[0]:
            best = (score, encoding, text)
    if best is None or best[0] < 0.5:
        raise Rejected("undecodable text (no encoding gives readable text)")
    return best[2], best[1]


# --- Readers --------------------------------------------------------------------------------------


_BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "td",
    "th",
    "blockquote",
    "pre",
    "figure",
    "figcaption",
    "address",
    "title",
    "body",
}
_CHROME = (
    "//script|//style|//noscript|//template|//nav|//header|//footer|//aside|//form|//iframe|//svg|//select|//button"
)


def html_to_text(html: str) -> tuple[str, str | None]:
    """``(text, title)``: the text of every block element on its own line, page chrome dropped.

    Semantic chrome (nav, header, footer, aside, forms, scripts) and link lists (blocks whose text is
    mostly link text) go; everything else is kept line by line for the cleaning operators. Written on
    lxml rather than trafilatura.extract because trafilatura drops headings and short blocks of the small
    pages industry sites are made of (a product page is mostly short blocks), losing real content.
    """
    import lxml.html
    from lxml import etree

    html = re.sub(r"^\s*<\?xml[^>]*>", "", html)
    try:
        tree = lxml.html.fromstring(html)
    except (etree.ParserError, ValueError):
        return "", None
    title_nodes = tree.xpath("//title")
    title = title_nodes[0].text_content().strip() if title_nodes else None
    for node in tree.xpath("//head|" + _CHROME):
        node.drop_tree()
    for node in tree.xpath("//ul|//ol|//div|//p|//table|//td"):
        links = node.xpath(".//a")
        text = node.text_content().strip()
        if len(links) >= 3 and text and sum(len(a.text_content().strip()) for a in links) > 0.8 * len(text):
            node.drop_tree()
    _tables_to_rows(tree)
    for node in tree.iter():
        if not isinstance(node.tag, str):
            continue
        if node.tag == "br":
            node.tail = "\n" + (node.tail or "")
        elif node.tag in _BLOCK_TAGS:
            node.text = "\n" + (node.text or "")
            node.tail = "\n" + (node.tail or "")
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in tree.text_content().splitlines())
    return "\n".join(line for line in lines if line), title


def _tables_to_rows(tree) -> None:
    """Replace each data table of an HTML tree by one paragraph per row (see :mod:`domainlm.data.tables`);
    layout tables stay and are flattened block by block like the rest of the page."""
    import lxml.html

    from domainlm.data.tables import html_table, table_lines

    number = 0
    for element in list(tree.iter("table")):
        if element.getparent() is None:
            continue
        table = html_table(element, number=number + 1)
        if table is None:
            continue
        number += 1
        block = lxml.html.Element("div")
        for line in table_lines(table):
            lxml.html.etree.SubElement(block, "p").text = line
        block.tail = element.tail
        element.getparent().replace(element, block)


def read_html(raw: bytes) -> tuple[str, dict]:
    html, encoding = decode_bytes(raw)
    text, title = html_to_text(html)
    meta = {"encoding": encoding}
    if title:
        meta["title"] = title
    return text, meta


_SENTENCE_END = tuple("。！？；：.!?;:」）)")


def unwrap_lines(page: str) -> str:
    """Re-join the lines a PDF layout broke mid-sentence: a long line (70%+ of the page's longest) that
    does not end a sentence continues on the next line (with a space between Latin words, nothing
    between Han characters). Headings and list items are short and stay on their own lines."""
    lines = [line.strip() for line in page.splitlines()]
    longest = max((len(line) for line in lines), default=0)
    out: list[str] = []
    for line in lines:
        if not line:
            continue
        previous = out[-1] if out else ""
        if previous and len(previous) >= 0.7 * longest and not previous.endswith(_SENTENCE_END):
            joiner = "" if previous[-1] >= "\u2e80" or line[0] >= "\u2e80" else " "
            out[-1] = previous + joiner + line
        else:
            out.append(line)
    return "\n".join(out)


def _open_pdf(path: str):
    """A pypdf reader for ``path``, decrypted when it opens with the empty password; Rejected otherwise."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise Rejected("encrypted PDF (password required)")
        except Exception as exc:  # pypdf raises several types here (missing crypto backend, bad key)
            if isinstance(exc, Rejected):
                raise
            raise Rejected(f"encrypted PDF ({exc})") from None
    return reader


def _open_plumber(path: str):
    """pdfplumber's view of the same file, for its tables; None when pdfplumber cannot read it (the
    text layer from pypdf is still used)."""
    import pdfplumber

    try:
        return pdfplumber.open(path, password="")
    except Exception:  # pdfminer raises many types on files pypdf reads; tables are then not found
        return None


# Path operators that draw ruling lines: "x y w h re" (a rectangle) and "x y l" (a line). pdfplumber finds
# tables from such lines; a page without any has no ruled table, and laying it out with pdfminer (10x the
# cost of pypdf's text) is skipped.
_RULING = re.compile(rb"(?:-?[\d.]+\s+){3}-?[\d.]+\s+re\b|(?:-?[\d.]+\s+){2}l\b")


def _has_rulings(page) -> bool:
    """Whether a pypdf page's content stream draws lines or rectangles (form XObjects are not looked into)."""
    try:
        contents = page.get_contents()
        return contents is not None and _RULING.search(contents.get_data()) is not None
    except Exception:  # a damaged stream: let pdfplumber try
        return True


def _page_with_tables(page, first_number: int, previous=None) -> tuple[str, list]:
    """``(text, tables)`` of a pdfplumber page that has tables: the text above, between and below the
    tables (bands of the page's full width, unwrapped; a caption kept on its own line), with each table
    written as row lines in its place. ``previous``: the last table of the page before, which a table at
    the top of this page may continue. pypdf's text of such a page is not used: it holds the cell texts a
    second time, without their header."""
    from domainlm.data.tables import page_tables, table_lines

    found = page_tables(page, first_number, previous)
    if not found:
        return "", []
    parts: list[str] = []
    top = 0.0
    for bbox, table in found:
        lines = (page.crop((0, top, page.width, bbox[1]), strict=False).extract_text() or "").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        caption = [lines.pop()] if lines and table.caption and lines[-1].strip() == table.caption else []
        parts += [unwrap_lines("\n".join(lines)), *caption, "\n".join(table_lines(table))]
        top = bbox[3]
    parts.append(unwrap_lines(page.crop((0, top, page.width, page.height), strict=False).extract_text() or ""))
    return "\n".join(part for part in parts if part.strip()), [table for _, table in found]


def read_pdf(path: str, ocr=None) -> tuple[str, dict]:
    """Text of a PDF, page by page: the text layer (pypdf), and on pages with ruled tables (pdfplumber, opened
    at the first page that draws lines) the text around the tables plus one line per table row. Pages without
    a text layer are OCR'd (:mod:`domainlm.data.ocr`, settings ``ocr``: an OcrConfig); a scanned page below
    the confidence floor rejects the file, naming the page."""
    from pypdf.errors import PdfReadError

    plumber = None  # pdfplumber's view of the file: opened once a page draws ruling lines; False if it cannot
    pages: list[str] = []
    tables = 0
    last = None  # the last table of the page before: a table at the top of the next page may continue it
    try:
        reader = _open_pdf(path)
        for number, page in enumerate(reader.pages):
            text, found = "", []
            if plumber is not False and _has_rulings(page):
                plumber = plumber or _open_plumber(path) or False
                if plumber and number < len(plumber.pages):
                    try:
                        text, found = _page_with_tables(plumber.pages[number], tables + 1, last)
                    except Exception:  # a page pdfminer cannot lay out: its text layer from pypdf still counts
                        text, found = "", []
                    plumber.pages[number].close()  # drop its laid-out objects: long PDFs stay small in memory
            tables = max([tables] + [table.number for table in found])
            last = found[-1] if found else None
            if not text:
                text = unwrap_lines(page.extract_text() or "")
            pages.append(text)
    except Rejected:
        raise
    except (PdfReadError, OSError, ValueError, KeyError, TypeError) as exc:
        raise Rejected(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    finally:
        if plumber:
            plumber.close()
    ocr_meta: dict = {}
    if not all(p.strip() for p in pages):
        from domainlm.data.ocr import DEFAULT_CONFIG, fill_scanned_pages  # ocr imports this module

        pages, ocr_meta = fill_scanned_pages(path, pages, ocr or DEFAULT_CONFIG)
    text = "\n\n".join(p for p in pages if p.strip())
    if not text:
        raise Rejected("PDF has no text: no text layer and nothing OCR could read")
    meta = {"pages": len(pages), **ocr_meta}
    if tables:
        meta["tables"] = tables
    return text, meta


def read_docx(path: str) -> tuple[str, dict]:
    """Text of a .docx in document order: headings as markdown headings ("## 二、产品要素"), paragraphs
    separated by blank lines, tables one line per row (:mod:`domainlm.data.tables`), so the knowledge base's
    chunker keeps sections and rows. Shared by the clean stage and the knowledge base."""
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(path)
    # python-docx: not a zip / no document part / broken XML (lxml's errors are SyntaxErrors)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError, OSError) as exc:
        raise Rejected(f"unreadable docx ({type(exc).__name__}: {exc})") from None
    blocks: list[str] = []
    tables = _docx_blocks(document.element.body, document, blocks, 0)
    return "\n\n".join(blocks), ({"tables": tables} if tables else {})


def _docx_blocks(container, document, blocks: list[str], tables: int) -> int:
    """Append the blocks of a body (or of a layout table's cell) to ``blocks``; returns the data tables
    counted so far. A data table becomes its row lines; a layout table (prose in cells, a table inside a
    cell, one column) is read cell by cell, so the tables and paragraphs inside it keep their form."""
    from docx.oxml.ns import qn
    from docx.table import Table as DocxTable
    from docx.text.paragraph import Paragraph

    from domainlm.data.tables import caption_like, docx_table, table_lines

    previous = ""  # the paragraph just before a table: its caption when short
    for child in container.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name or "") if para.style is not None else ""
            if style.lower().startswith("heading") and style[-1:].isdigit():
                blocks.append("#" * int(style[-1]) + " " + text)
            elif style.lower() == "title":
                blocks.append("# " + text)
            else:
                blocks.append(text)
            previous = text
        elif tag == "tbl":
            parsed = docx_table(DocxTable(child, document), number=tables + 1,
                                caption=previous if caption_like(previous) else "")
            if parsed is not None:
                tables += 1
                blocks.append("\n".join(table_lines(parsed)))
            else:
                for tc in child.iter(qn("w:tc")):
                    if tc.getparent().getparent() is child:  # this table's own cells; nested ones are walked inside
                        tables = _docx_blocks(tc, document, blocks, tables)
            previous = ""
    return tables


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def read_unit(unit: Unit, text_field: str = "text", ocr=None) -> tuple[str, dict]:
    """``(text, meta)`` of one unit; raises :class:`Rejected` with the reason. ``ocr`` (an OcrConfig, default
    settings when None) is how scans and images are read."""
    if unit.record is not None:
        return _read_record(unit, text_field)
    path = Path(unit.path)
    ext = path.suffix.lower()
    try:
        if ext == ".pdf":
            text, meta = read_pdf(unit.path, ocr)
        elif ext == ".docx":
            text, meta = read_docx(unit.path)
        elif ext in IMAGE_EXTS:
            from domainlm.data.ocr import DEFAULT_CONFIG, read_image  # ocr imports this module

            text, meta = read_image(unit.path, ocr or DEFAULT_CONFIG)
        else:
            raw = path.read_bytes()
            if ext in HTML_EXTS:
                text, meta = read_html(raw)
            else:
                text, encoding = decode_bytes(raw)
                meta = {"encoding": encoding}
    except OSError as exc:
        raise Rejected(f"unreadable file ({exc.strerror or exc})") from None
    if not text.strip():
        raise Rejected("empty document")
    meta["format"] = ext.lstrip(".") or "txt"
    return text, meta


def _read_record(unit: Unit, text_field: str) -> tuple[str, dict]:
    record = unit.record
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError as exc:
            raise Rejected(f"line {unit.position}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise Rejected(f"line {unit.position}: expected a JSON object")
    if "__error__" in record:
        raise Rejected(record["__error__"])
    text = record.get(text_field)
    where = f"line {unit.position}" if unit.path.endswith(".jsonl") else f"row {unit.position}"
    if not isinstance(text, str):
        raise Rejected(f"{where}: no text field '{text_field}'")
    if not text.strip():
        raise Rejected(f"{where}: empty text")
    meta = dict(record.get("meta") or {}) if isinstance(record.get("meta"), dict) else {}
    if "id" in record:
        meta["orig_id"] = record["id"]
    meta["format"] = Path(unit.path).suffix.lstrip(".")
    return text, meta


def check_inputs(inputs: list[str | Path]) -> None:
    """Fail early (before any work) when an input does not exist."""
    for item in inputs:
        try:
            Path(item).stat()
        except FileNotFoundError:
            raise DomainlmError(f"{item}: no such file or folder") from None
        except OSError:
            continue  # exists but cannot be read (a parent folder it may not enter): rejected with the reason
