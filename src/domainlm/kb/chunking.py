"""Structure-aware chunking: headings give context, paragraphs and tables stay whole, long paragraphs
split at sentence ends (Chinese and English), and every chunk is an exact slice of its document.

A table row written by the ingest readers (``【费率表·第3行】卡种：金卡，年费：200元。``, see
:mod:`domainlm.data.tables`) is a chunk of its own: it carries its table name and header names, and a
citation then points at the row that states the answer, not at the whole table.

A chunk id is ``<doc_id>#<hash of the chunk text>``: rebuilding from the same documents gives the same
ids, and editing one part of a document keeps the ids of the chunks that did not change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from domainlm.data.tables import ROW_LINE
from domainlm.kb.text import split_sentences

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
# Numbered section titles common in Chinese and English documents: "第三章 …", "一、…", "2.1 …".
_NUMBERED_HEADING = re.compile(r"^(第[一二三四五六七八九十百零\d]+[章节条部分篇]|[一二三四五六七八九十]+[、.．]|\d+(\.\d+)*[、.．\s])")
_TABLE_LINE = re.compile(r"^\s*\|.*\|\s*$|\t")
_END_PUNCT = "。！？!?；;:：，,.、"


@dataclass
class Block:
    start: int
    end: int
    kind: str  # heading | paragraph | table | row (one table row with its headers)
    level: int = 0


@dataclass
class Chunk:
    id: str
    doc_id: str
    text: str
    start: int
    end: int
    headings: list[str] = field(default_factory=list)
    title: str = ""
    source: str = ""

    def context(self) -> str:
        """What gets indexed: title and headings first, so a chunk that never names its product
        (a fee table under "活期存款") still matches a question that does."""
        head = " / ".join(h for h in [self.title, *self.headings] if h)
        return f"{head}\n{self.text}" if head else self.text

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "headings": self.headings,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


def _is_heading(line: str) -> tuple[bool, int, str]:
    match = _MD_HEADING.match(line)
    if match:
        return True, len(match.group(1)), match.group(2)
    stripped = line.strip()
    if len(stripped) <= 30 and _NUMBERED_HEADING.match(stripped) and stripped[-1] not in _END_PUNCT:
        return True, 2, stripped
    return False, 0, ""


def blocks(text: str) -> list[Block]:
    """Split a document into headings, paragraphs (blank-line separated) and tables (runs of table lines)."""
    out: list[Block] = []
    pos = 0
    para_start = None
    table_start = None
    table_end = 0

    def close_para(end: int) -> None:
        nonlocal para_start
        if para_start is not None and text[para_start:end].strip():
            out.append(Block(para_start, end, "paragraph"))
        para_start = None

    def close_table() -> None:
        nonlocal table_start
        if table_start is not None:
            out.append(Block(table_start, table_end, "table"))
        table_start = None

    for line in text.splitlines(keepends=True):
        line_start, line_end = pos, pos + len(line.rstrip("\r\n"))
        pos += len(line)
        body = text[line_start:line_end]
        if not body.strip():
            close_para(line_start)
            close_table()
            continue
        if ROW_LINE.match(body):
            close_para(line_start)
            close_table()
            out.append(Block(line_start, line_end, "row"))
            continue
        if _TABLE_LINE.search(body):
            close_para(line_start)
            if table_start is None:
                table_start = line_start
            table_end = line_end
            continue
        close_table()
        heading, level, _ = _is_heading(body)
        if heading:
            close_para(line_start)
            out.append(Block(line_start, line_end, "heading", level))
            continue
        if para_start is None:
            para_start = line_start
    close_para(len(text))
    close_table()
    # Trim trailing whitespace of paragraphs so offsets cover exactly the text.
    for block in out:
        while block.end > block.start and text[block.end - 1].isspace():
            block.end -= 1
    return out


def _heading_text(text: str, block: Block) -> str:
    return _is_heading(text[block.start : block.end])[2] or text[block.start : block.end].strip()


def _split_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Pack the sentences of text[start:end] into pieces of at most ``limit`` characters when possible."""
    pieces: list[tuple[int, int]] = []
    cur_start = cur_end = None
    for s, e in split_sentences(text[start:end], start):
        while e - s > limit:  # one sentence longer than a chunk: cut it (rare; lists without punctuation)
            if cur_start is not None:
                pieces.append((cur_start, cur_end))
                cur_start = None
            pieces.append((s, s + limit))
            s += limit
        if cur_start is None:
            cur_start, cur_end = s, e
        elif e - cur_start <= limit:
            cur_end = e
        else:
            pieces.append((cur_start, cur_end))
            cur_start, cur_end = s, e
    if cur_start is not None:
        pieces.append((cur_start, cur_end))
    return pieces


def chunk_document(
    doc_id: str, text: str, *, chunk_chars: int = 400, title: str = "", source: str = "", max_table_chars: int = 0
) -> list[Chunk]:
    """Chunks of one document. Consecutive paragraphs under the same heading are packed up to
    ``chunk_chars``; a table is one chunk however long (up to ``max_table_chars``, default 4x); a table
    row line is one chunk."""
    max_table_chars = max_table_chars or 4 * chunk_chars
    spans: list[tuple[int, int, list[str]]] = []
    path: list[tuple[int, str]] = []  # (level, heading) stack
    cur: tuple[int, int] | None = None

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            spans.append((cur[0], cur[1], [h for _, h in path]))
            cur = None

    for block in blocks(text):
        if block.kind == "heading":
            flush()
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, _heading_text(text, block)))
            continue
        size = block.end - block.start
        if block.kind == "row":  # never packed with its neighbours: the row is the unit a citation names
            flush()
            spans.append((block.start, block.end, [h for _, h in path]))
            continue
        if block.kind == "table" and size <= max_table_chars:
            flush()
            spans.append((block.start, block.end, [h for _, h in path]))
            continue
        if size > chunk_chars:
            flush()
            if block.kind == "table":  # too big to keep whole: split between rows, never inside one
                lines = _line_spans(text, block.start, block.end)
                pieces = _pack(lines, chunk_chars)
            else:
                pieces = _split_long(text, block.start, block.end, chunk_chars)
            for s, e in pieces:
                spans.append((s, e, [h for _, h in path]))
            continue
        if cur is not None and block.end - cur[0] <= chunk_chars:
            cur = (cur[0], block.end)
        else:
            flush()
            cur = (block.start, block.end)
    flush()

    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for s, e, headings in spans:
        body = text[s:e]
        digest = hashlib.sha1(body.encode("utf-8")).hexdigest()[:10]
        seen[digest] = seen.get(digest, 0) + 1
        suffix = "" if seen[digest] == 1 else f"-{seen[digest]}"  # same text twice in one document
        chunks.append(
            Chunk(
                id=f"{doc_id}#{digest}{suffix}",
                doc_id=doc_id,
                text=body,
                start=s,
                end=e,
                headings=headings,
                title=title,
                source=source,
            )
        )
    return chunks


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for line in text[start:end].splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if stripped.strip():
            spans.append((pos, pos + len(stripped)))
        pos += len(line)
    return spans


def _pack(spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and e - out[-1][0] <= limit:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out
