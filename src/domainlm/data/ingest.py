"""Ingest: turn input files into raw documents, or into rejections with a reason.

txt/md (any encoding: UTF-8, UTF-16, GBK/GB18030, Big5), html (block text without page chrome, lxml), pdf (text
layer by pypdf), docx (python-docx), jsonl/csv (one document per record, a named text column). A bad
file becomes a rejection; it never stops the run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
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
    import re

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


def read_pdf(path: str) -> tuple[str, dict]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise Rejected("encrypted PDF (password required)")
            except Exception as exc:  # pypdf raises several types here (missing crypto backend, bad key)
                if isinstance(exc, Rejected):
                    raise
                raise Rejected(f"encrypted PDF ({exc})") from None
        pages = [page.extract_text() or "" for page in reader.pages]
    except Rejected:
        raise
    except (PdfReadError, OSError, ValueError, KeyError, TypeError) as exc:
        raise Rejected(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(unwrap_lines(p) for p in pages if p.strip())
    if not text:
        raise Rejected("PDF has no text layer (scanned?)")
    return text, {"pages": len(pages)}


def read_docx(path: str) -> tuple[str, dict]:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(path)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise Rejected(f"unreadable docx ({type(exc).__name__}: {exc})") from None
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n".join(parts), {}


def read_unit(unit: Unit, text_field: str = "text") -> tuple[str, dict]:
    """``(text, meta)`` of one unit; raises :class:`Rejected` with the reason."""
    if unit.record is not None:
        return _read_record(unit, text_field)
    path = Path(unit.path)
    ext = path.suffix.lower()
    try:
        if ext == ".pdf":
            text, meta = read_pdf(unit.path)
        elif ext == ".docx":
            text, meta = read_docx(unit.path)
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
