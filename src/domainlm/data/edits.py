"""What an operator did to one document: the new text plus the spans it changed or flagged.

Every operator returns an :class:`OpResult`. Offsets in ``changes`` and ``flags`` are character offsets
into the text the operator received, so ``trace.jsonl`` can show exactly what was removed or replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OpResult:
    text: str
    changes: list[dict] = field(default_factory=list)  # {"start","end","old","new","kind"}
    flags: list[dict] = field(default_factory=list)  # {"start","end","text","kind"} - kept but marked
    score: float | None = None
    drop: str | None = None  # a reason: the whole document is rejected
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"lang": "zh"} merged into the record's meta


def replace_spans(text: str, spans: list[tuple[int, int, str, str]]) -> OpResult:
    """Apply ``(start, end, replacement, kind)`` spans to ``text``; overlapping spans are merged.

    Spans are applied left to right; a span overlapping the previous one extends it (the kind of the
    first wins), so an operator may propose overlapping matches without corrupting the text.
    """
    merged: list[list] = []
    for start, end, new, kind in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start >= end and not new:
            continue
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if end > last[1]:
                last[1] = end
            continue
        merged.append([start, end, new, kind])
    if not merged:
        return OpResult(text)
    out, changes, pos = [], [], 0
    for start, end, new, kind in merged:
        out.append(text[pos:start])
        out.append(new)
        changes.append({"start": start, "end": end, "old": text[start:end], "new": new, "kind": kind})
        pos = end
    out.append(text[pos:])
    return OpResult("".join(out), changes)


def line_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every line including its newline, so removing a span removes the line."""
    spans, pos = [], 0
    for line in text.splitlines(keepends=True):
        spans.append((pos, pos + len(line)))
        pos += len(line)
    return spans
