"""Documents for the knowledge base: the clean stage's JSONL, or raw files read minimally.

Raw files are read with the clean stage's ingest readers (encodings, HTML, PDF, DOCX with its headings in
place); tables come back one line per row with their headers (:mod:`domainlm.data.tables`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from domainlm.data import (
    IMAGE_EXTS,
    Rejected,
    decode_bytes,
    doc_id,
    named_inputs,
    read_docx,
    read_html,
    read_image,
    read_pdf,
)
from domainlm.errors import DomainlmError

RAW_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".html", ".htm", ".docx", ".pdf", *IMAGE_EXTS}


@dataclass
class Unreadable:
    """An input the knowledge base could not read (a file, a folder, a JSONL line ``file:line``) and why.

    Collected, not raised: one bad input never stops a build (see :func:`iter_documents`). Not to be
    confused with :class:`domainlm.data.Rejected`, the exception the ingest readers raise.
    """

    source: str
    reason: str


def read_file(path: str | Path) -> str:
    """Plain text of one raw file (.md/.txt/.html/.docx/.pdf); DomainlmError when it cannot be read.

    Every format is read by the clean stage's ingest readers; .docx keeps its headings as markdown headings
    and tables as row lines, so the chunker keeps sections, and each table row is a chunk of its own.
    """
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a damaged PDF is reported once, as a rejection
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".docx":
            text = read_docx(str(path))[0]
        elif suffix == ".pdf":
            text = read_pdf(str(path))[0]
        elif suffix in IMAGE_EXTS:
            text = read_image(path)[0]
        elif suffix in {".html", ".htm"}:
            text = read_html(path.read_bytes())[0]
        else:
            text = decode_bytes(path.read_bytes())[0]
    except Rejected as exc:
        raise DomainlmError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DomainlmError(f"{path}: unreadable file ({exc.strerror or exc})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DomainlmError(f"{path}: no text")
    return text


def title_of(text: str) -> str:
    """A raw document's title: its first non-blank line without markdown heading marks, at most 80 characters."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:80]
    return ""


def iter_documents(inputs: list[str | Path], rejected: list[Unreadable] | None = None) -> Iterator[dict]:
    """Documents ``{"id","text","source","meta"}`` from JSONL files and raw files (folders expanded).

    Nothing in the inputs stops the run: an unreadable file or folder, a broken symlink, a JSONL line that
    is not a JSON object with a non-empty ``text`` is appended to ``rejected`` (when given) as an
    :class:`Unreadable` with the reason.
    A JSONL record without an ``id`` gets the id the clean stage would give it (from its file and line),
    so raw JSONL and the clean stage's output are read alike. Raw files are named by their file name
    without extension (the path relative to the folder when two files share a stem).
    """
    entries = list(named_inputs(inputs))
    stems = [p.stem for p, _, problem in entries if problem is None and p.suffix.lower() in RAW_SUFFIXES]
    for path, source, problem in entries:
        suffix = path.suffix.lower()
        if problem is not None:
            _reject(rejected, str(path), problem)
        elif suffix == ".jsonl":
            yield from _jsonl_documents(path, source, rejected)
        elif suffix in RAW_SUFFIXES:
            try:
                text = read_file(path)
            except (DomainlmError, OSError) as exc:
                _reject(rejected, str(path), str(exc).removeprefix(f"{path}: "))
                continue
            doc_id = path.stem if stems.count(path.stem) == 1 else path.with_suffix("").as_posix()
            yield {"id": doc_id, "text": text, "source": str(path), "meta": {"title": title_of(text)}}
        else:
            _reject(rejected, str(path), f"unsupported file type '{suffix}'")


def _reject(rejected: list[Unreadable] | None, source: str, reason: str) -> None:
    if rejected is not None:
        rejected.append(Unreadable(source, reason))


def _jsonl_documents(path: Path, source: str, rejected: list[Unreadable] | None) -> Iterator[dict]:
    """The documents of one JSONL file; each bad line is rejected as ``file:line`` with the reason, and
    the other lines are still read (one broken line never costs the whole file)."""
    line_no = 0
    try:
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                where = f"{path}:{line_no}"
                try:
                    record = json.loads(raw.decode("utf-8", errors="replace"))  # as the clean stage reads it
                except json.JSONDecodeError as exc:
                    _reject(rejected, where, f"not valid JSON ({exc.msg})")
                    continue
                if not isinstance(record, dict):
                    _reject(rejected, where, f"expected a JSON object, got {type(record).__name__}")
                    continue
                text, given_id = record.get("text"), record.get("id")
                if not isinstance(text, str) or not text.strip():
                    _reject(rejected, where, "record needs a non-empty string 'text'")
                    continue
                if given_id is None:
                    given_id = doc_id(source, line_no)  # the clean stage's id for this record
                elif isinstance(given_id, bool) or not isinstance(given_id, (str, int)) or not str(given_id).strip():
                    _reject(rejected, where, f"'id' must be a non-empty string or a number, got {given_id!r}")
                    continue
                meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
                yield {"id": str(given_id), "text": text, "source": str(record.get("source") or where), "meta": meta}
    except OSError as exc:
        after = f" after line {line_no}" if line_no else ""
        _reject(rejected, str(path), f"unreadable file{after} ({exc.strerror or exc})")
