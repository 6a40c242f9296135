"""Feedback → training rows in TRL's conversational formats, with PII redacted.

- ``kto``: every thumbs up/down → ``{"prompt", "completion", "label": bool}`` (the user's latest rating
  of a response wins; an "up" then "down" is one "down" row).
- ``dpo``: corrections → ``{"prompt", "chosen": correction, "rejected": served answer}``; pairwise choices
  (feedback with ``rejected_id``) → ``{"prompt", "chosen": preferred, "rejected": other}``.
- ``sft``: corrections → ``{"messages": [...conversation, {"role": "assistant", "content": correction}]}``.
- ``raw``: DESIGN.md's feedback record, one a line.

By default kto/dpo prompts and answers are strings (the prompt is the last user turn): the shape
``domainlm train --stage dpo|kto`` reads. ``conversational=True`` writes TRL's conversational shape instead
(``prompt`` = the whole conversation as messages, answers as ``[{"role": "assistant", ...}]``), which keeps
system prompts and earlier turns for training with TRL directly.

Every text field passes through the clean stage's PII redactor before it is written, so phone numbers,
ID numbers and cards users typed into a chat never reach a training set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import write_jsonl
from domainlm.serve.store import FeedbackRecord, FeedbackStore

FORMATS = ("kto", "dpo", "sft", "raw")


def default_redactor() -> Callable[[str], str]:
    from domainlm.data.pii import redact_pii

    return lambda text: redact_pii(text).text


def _prompt(record: FeedbackRecord, redact: Callable[[str], str]) -> list[dict]:
    messages = record.request.get("messages") or []
    out = []
    for m in messages:
        content = m.get("content")
        if m.get("role") in ("system", "user", "assistant") and isinstance(content, str):
            out.append({"role": m["role"], "content": redact(content)})
    return out


def _assistant(text: str, redact: Callable[[str], str]) -> list[dict]:
    return [{"role": "assistant", "content": redact(text)}]


def feedback_rows(records: Iterable[FeedbackRecord], fmt: str, redact: Callable[[str], str] | None = None,
                  *, conversational: bool = False) -> list[dict]:
    """Training rows in format ``fmt`` from feedback records (oldest first)."""
    if fmt not in FORMATS:
        raise DomainlmError(f"unknown export format '{fmt}'; expected one of {', '.join(FORMATS)}")
    redact = redact or default_redactor()
    records = list(records)
    if not conversational and fmt in ("kto", "dpo"):
        rows = feedback_rows(records, fmt, redact, conversational=True)
        return [_flatten(row) for row in rows if any(m["role"] == "user" for m in row["prompt"])]
    rows: list[dict] = []
    if fmt == "raw":
        for r in records:
            row = r.to_dict()
            row["request"] = {**r.request, "messages": _prompt(r, redact)}
            row["response"] = redact(r.response)
            for key in ("correction", "comment", "rejected_response"):
                if row[key]:
                    row[key] = redact(row[key])
            rows.append(row)
        return rows
    if fmt == "kto":
        latest: dict[tuple, FeedbackRecord] = {}
        for r in records:
            if r.rating is not None:
                latest[(r.response_id, r.user)] = r  # later rows overwrite: the latest rating wins
        for r in sorted(latest.values(), key=lambda r: r.id):
            prompt = _prompt(r, redact)
            if prompt:
                rows.append({"prompt": prompt, "completion": _assistant(r.response, redact), "label": r.rating == "up"})
        return rows
    for r in records:
        prompt = _prompt(r, redact)
        if not prompt:
            continue
        if fmt == "dpo":
            if r.correction and r.correction.strip() != r.response.strip():
                rows.append({"prompt": prompt, "chosen": _assistant(r.correction, redact),
                             "rejected": _assistant(r.response, redact)})
            if r.rejected_response is not None and r.rejected_response.strip() != r.response.strip():
                rows.append({"prompt": prompt, "chosen": _assistant(r.response, redact),
                             "rejected": _assistant(r.rejected_response, redact)})
        elif fmt == "sft" and r.correction:
            rows.append({"messages": prompt + _assistant(r.correction, redact)})
    return rows


def _flatten(row: dict) -> dict:
    """A conversational kto/dpo row as strings: the last user turn is the prompt."""
    out = {"prompt": [m["content"] for m in row["prompt"] if m["role"] == "user"][-1]}
    for key, value in row.items():
        if key != "prompt":
            out[key] = value[0]["content"] if isinstance(value, list) else value
    return out


def export_feedback(store: FeedbackStore, fmt: str, out: str | Path, *, since_id: int = 0,
                    redact: Callable[[str], str] | None = None, conversational: bool = False) -> dict:
    """Write feedback with id > ``since_id`` as ``fmt`` rows to ``out`` (atomically); returns counts."""
    records = list(store.iter_feedback(since_id=since_id))
    rows = feedback_rows(records, fmt, redact, conversational=conversational)
    written = write_jsonl(out, rows)
    last_id = records[-1].id if records else since_id
    return {"format": fmt, "feedback": len(records), "rows": written, "last_id": last_id, "out": str(out)}
