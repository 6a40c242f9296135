"""Documents for the knowledge base: the clean stage's JSONL, or raw files read minimally.

Raw files are read with the clean stage's ingest readers (encodings, HTML, PDF); only .docx has its own
reader here, because the knowledge base needs headings and tables in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import iter_jsonl
from domainlm.workspace import expand_inputs

RAW_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".docx", ".pdf"}


@dataclass
class Rejected:
    source: str
    reason: str


def _read_docx(path: Path) -> str:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    # python-docx: not a zip / no document part / broken XML (lxml's errors are SyntaxErrors)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError, OSError) as exc:
        raise DomainlmError(f"{path}: not a readable .docx ({type(exc).__name__})") from None
    lines: list[str] = []
    body = document.element.body
    # Walk paragraphs and tables in document order; headings become markdown headings, tables markdown
    # rows, so the chunker keeps sections and tables intact.
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = docx.text.paragraph.Paragraph(child, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name or "") if para.style is not None else ""
            if style.lower().startswith("heading") and style[-1:].isdigit():
                lines += ["", "#" * int(style[-1]) + " " + text, ""]
            elif style.lower() == "title":
                lines += ["", "# " + text, ""]
            else:
                lines += [text, ""]
        elif tag == "tbl":
            table = docx.table.Table(child, document)
            lines.append("")
            for row in table.rows:
                lines.append("| " + " | ".join(cell.text.strip().replace("\n", " ") for cell in row.cells) + " |")
            lines.append("")
    return "\n".join(lines).strip()


def read_file(path: str | Path) -> str:
    """Plain text of one raw file (.md/.txt/.html/.docx/.pdf); DomainlmError when it cannot be read.

    Encodings, HTML main text and PDF text come from the clean stage's ingest readers; .docx is read
    here so that headings and tables stay where they are (the chunker keeps sections and tables whole).
    """
    import logging

    from domainlm.data.ingest import Rejected, decode_bytes, read_html, read_pdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a damaged PDF is reported once, as a rejection
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".docx":
            text = _read_docx(path)
        elif suffix == ".pdf":
            text = read_pdf(str(path))[0]
        elif suffix in {".html", ".htm"}:
            text = read_html(path.read_bytes())[0]
        else:
            text = decode_bytes(path.read_bytes())[0]
    except Rejected as exc:
        raise DomainlmError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DomainlmError(f"{path}: unreadable ({exc.strerror or exc})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DomainlmError(f"{path}: no text")
    return text


def _title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:80]
    return ""


def iter_documents(inputs: list[str | Path], rejected: list[Rejected] | None = None) -> Iterator[dict]:
    """Documents ``{"id","text","source","meta"}`` from JSONL files and raw files (folders expanded).

    A document that cannot be read is appended to ``rejected`` (when given) instead of stopping the run.
    Raw files are named by their file name without extension (the path relative to the folder when two
    files share a stem).
    """
    files = expand_inputs(inputs)
    raw = [p for p in files if p.suffix.lower() in RAW_SUFFIXES]
    stems = [p.stem for p in raw]
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            for n, record in enumerate(iter_jsonl(path), start=1):
                where = f"{path}:{n}"
                text, doc_id = record.get("text"), record.get("id")
                if not isinstance(text, str) or not text.strip() or not isinstance(doc_id, (str, int)):
                    if rejected is not None:
                        rejected.append(Rejected(where, "record needs a string 'id' and a non-empty 'text'"))
                    continue
                meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
                yield {"id": str(doc_id), "text": text, "source": str(record.get("source") or where), "meta": meta}
        elif suffix in RAW_SUFFIXES:
            try:
                text = read_file(path)
            except (DomainlmError, OSError) as exc:
                if rejected is not None:
                    rejected.append(Rejected(str(path), str(exc).removeprefix(f"{path}: ")))
                continue
            doc_id = path.stem if stems.count(path.stem) == 1 else path.with_suffix("").as_posix()
            yield {"id": doc_id, "text": text, "source": str(path), "meta": {"title": _title(text)}}
        elif rejected is not None:
            rejected.append(Rejected(str(path), f"unsupported file type '{suffix}'"))
