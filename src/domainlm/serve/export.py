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

Tool use survives the export: a request's ``tools`` go with every row made from it, earlier tool calls
and tool results stay in the conversation, and an answer or correction that is a tool call (the stored
JSON list, a ``<tool_call>`` block or an OpenAI-style object, read by :mod:`domainlm.parsing` as ``serve``
and ``eval`` read them) becomes an assistant turn with ``tool_calls`` — so a corrected call is trained
with the schema it must follow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import write_jsonl
from domainlm.parsing import decode_arguments, extract_tool_call, parse_tool_calls
from domainlm.serve.store import FeedbackRecord, FeedbackStore

FORMATS = ("kto", "dpo", "sft", "raw")


def default_redactor() -> Callable[[str], str]:
    from domainlm.data.pii import redact_pii

    return lambda text: redact_pii(text).text


def _prompt(record: FeedbackRecord, redact: Callable[[str], str]) -> list[dict]:
    messages = record.request.get("messages") or []
    out = []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if role in ("system", "user", "assistant", "tool") and isinstance(content, str):
            turn = {"role": role, "content": redact(content)}
        elif role == "assistant" and m.get("tool_calls"):
            turn = {"role": role, "content": ""}
        else:
            continue
        if role == "assistant" and m.get("tool_calls"):
            turn["tool_calls"] = [_redact_call(c, redact) for c in m["tool_calls"] if isinstance(c, dict)]
        if role == "tool" and m.get("tool_call_id"):
            turn["tool_call_id"] = m["tool_call_id"]
        out.append(turn)
    return out


def _redact_call(call: dict, redact: Callable[[str], str]) -> dict:
    """A tool call in OpenAI's shape with PII redacted inside its arguments (placeholders are JSON-safe)."""
    fn = call.get("function", call)
    args = decode_arguments(fn.get("arguments", {}))
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    redacted = redact(text)
    return {"type": "function", "function": {"name": fn.get("name"), "arguments": decode_arguments(redacted)}}


def _calls_in(text: str, tools: list[dict] | None = None) -> tuple[str, list[dict]] | None:
    """``(text before, calls)`` when ``text`` ends in tool calls: ``<tool_call>`` blocks, or a JSON call
    object / list of them (the shape the feedback store keeps a served call in); else None."""
    parsed = parse_tool_calls(text, tools)  # each family's own call format, as serve reads it
    if parsed.tool_calls:
        return parsed.content or "", parsed.tool_calls
    stripped = text.rstrip()
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(stripped) if ch in "[{"):
        try:
            value, end = decoder.raw_decode(stripped, start)
        except json.JSONDecodeError:
            continue
        if end != len(stripped):
            continue
        values = value if isinstance(value, list) else [value]
        if values and all(extract_tool_call(json.dumps(v, ensure_ascii=False)) for v in values):
            return stripped[:start].strip(), [{"type": "function", "function": extract_tool_call(json.dumps(v))}
                                              for v in values]
        return None
    return None


def _assistant(text: str, redact: Callable[[str], str], record: FeedbackRecord | None = None) -> list[dict]:
    """The assistant turn for an answer: a tool call when the request offered tools and the text is one."""
    tools = record.request.get("tools") if record is not None else None
    calls = _calls_in(text, tools) if tools else None
    if calls is None:
        return [{"role": "assistant", "content": redact(text)}]
    content, found = calls
    return [{"role": "assistant", "content": redact(content), "tool_calls": [_redact_call(c, redact) for c in found]}]


def _with_tools(row: dict, record: FeedbackRecord) -> dict:
    tools = record.request.get("tools")
    return {**row, "tools": tools} if tools else row


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
                rows.append(_with_tools({"prompt": prompt, "completion": _assistant(r.response, redact, r),
                                         "label": r.rating == "up"}, r))
        return rows
    for r in records:
        prompt = _prompt(r, redact)
        if not prompt:
            continue
        if fmt == "dpo":
            if r.correction and r.correction.strip() != r.response.strip():
                rows.append(_with_tools({"prompt": prompt, "chosen": _assistant(r.correction, redact, r),
                                         "rejected": _assistant(r.response, redact, r)}, r))
            if r.rejected_response is not None and r.rejected_response.strip() != r.response.strip():
                rows.append(_with_tools({"prompt": prompt, "chosen": _assistant(r.response, redact, r),
                                         "rejected": _assistant(r.rejected_response, redact, r)}, r))
        elif fmt == "sft" and r.correction:
            rows.append(_with_tools({"messages": prompt + _assistant(r.correction, redact, r)}, r))
    return rows


def _flatten(row: dict) -> dict:
    """A conversational kto/dpo row as strings: the last user turn is the prompt; an answer that is a tool
    call is written as the JSON list of its calls (as the feedback store keeps it)."""
    out = {"prompt": [m["content"] for m in row["prompt"] if m["role"] == "user"][-1]}
    for key, value in row.items():
        if key == "prompt" or key == "tools":
            out.setdefault(key, value)
        elif isinstance(value, list):
            turn = value[0]
            calls = [c["function"] for c in turn.get("tool_calls", [])]
            out[key] = turn["content"] + (json.dumps(calls, ensure_ascii=False) if calls else "")
        else:
            out[key] = value
    return out


def export_feedback(store: FeedbackStore, fmt: str, out: str | Path, *, since_id: int = 0,
                    redact: Callable[[str], str] | None = None, conversational: bool = False) -> dict:
    """Write feedback with id > ``since_id`` as ``fmt`` rows to ``out`` (atomically); returns counts."""
    records = list(store.iter_feedback(since_id=since_id))
    rows = feedback_rows(records, fmt, redact, conversational=conversational)
    written = write_jsonl(out, rows)
    last_id = records[-1].id if records else since_id
    return {"format": fmt, "feedback": len(records), "rows": written, "last_id": last_id, "out": str(out)}
