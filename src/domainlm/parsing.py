"""Structure in a model's text: JSON values and tool calls, read one way for the server and the eval.

The server answers with this reading of a model's output and the eval scores the same reading, so an eval
score measures what a client of ``domainlm serve`` gets. The module sits beside the stages rather than in
``evals`` or ``serve`` because it is about the model's output format (the ``<tool_call>`` blocks of ChatML
templates, which ``models.openai_http.format_tool_calls`` also writes), and neither stage should have to
import the other for it.

Where server and eval need different answers, the difference is a thin function over the same parts:

* JSON. :func:`extract_json` finds the first JSON object or array (```json fences first) and returns its
  value; the eval scores that. :func:`json_text` is what the server returns under ``response_format``:
  the model's own characters when its whole answer is one JSON value (a bare ``42`` included), else the
  value :func:`extract_json` finds, written out.
* Tool calls. :func:`parse_tool_calls` (server) reads only ``<tool_call>`` blocks, because when tools are
  offered an untagged JSON object may be the answer itself. :func:`extract_tool_call` (eval) also reads
  untagged JSON, because the eval prompts ask for ``{"name", "arguments"}`` as plain JSON. Both read the
  call object itself with :func:`_read_call`.

Every function returns ``None`` (or no calls) when the output holds nothing it can read.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
# The fence around an answer that is nothing but a fenced block.
_OUTER_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
# A block may be cut short by max_tokens: an unclosed tag runs to the end of the text.
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------
def extract_json(output: str) -> Any:
    """The first JSON object or array in the output (fenced ```json blocks first), or None."""
    if not output:
        return None
    decoder = json.JSONDecoder()
    candidates = [m.group(1) for m in _FENCE.finditer(output)] + [output]
    for text in candidates:
        text = text.strip()
        for i, ch in enumerate(text):
            if ch not in "{[":
                continue
            try:
                value, _ = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            return value
    return None


def json_text(output: str) -> str | None:
    """The JSON an answer gives, as text, or None.

    The answer itself when all of it (inside an optional ``` fence) is one JSON value: the client gets the
    model's own characters. Otherwise the object or array :func:`extract_json` finds, written out.
    """
    whole = output.strip()
    if whole.startswith("```"):
        whole = _OUTER_FENCE.sub("", whole)
    try:
        json.loads(whole)
        return whole
    except json.JSONDecodeError:
        pass
    value = extract_json(output)
    return None if value is None else json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------
# Tool calls
# ----------------------------------------------------------------------------------------------
@dataclass
class ParsedOutput:
    content: str | None
    tool_calls: list[dict] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


def _read_call(value: Any) -> tuple[str, Any] | None:
    """``(name, arguments as written)`` of one call object, or None when it names no function.

    Reads ``{"name", "arguments"}``, OpenAI's ``{"function": {...}}`` wrapper, and ``parameters`` in place
    of ``arguments`` (some models copy the key from the tool's schema).
    """
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str):
        return None
    return name, value.get("arguments", value.get("parameters", {}))


def decode_arguments(arguments: Any) -> Any:
    """A call's arguments as a value: OpenAI clients send them as a JSON string; a string that is not
    JSON is kept as it is (the model's mistake stays visible instead of being dropped)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def parse_tool_calls(text: str) -> ParsedOutput:
    """Split a ChatML model's output into text and ``<tool_call>{"name", "arguments"}</tool_call>`` calls.

    The calls come in OpenAI's shape (an id, arguments as a JSON string). A block that is not a JSON call
    object stays in the text: the client sees exactly what the model wrote rather than a call the model
    never made.
    """
    calls: list[dict] = []
    kept: list[str] = []
    last = 0
    decoder = json.JSONDecoder()
    for m in _TOOL_CALL.finditer(text):
        try:
            # raw_decode: the object may be followed by a closing tag cut short by max_tokens ("</tool_").
            obj, _ = decoder.raw_decode(m.group(1))
        except json.JSONDecodeError:
            continue
        call = _read_call(obj)
        if call is None:
            continue
        name, args = call
        kept.append(text[last : m.start()])
        last = m.end()
        calls.append({
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)},
        })
    kept.append(text[last:])
    content = "".join(kept).strip()
    return ParsedOutput(content=content or (None if calls else ""), tool_calls=calls)


def extract_tool_call(output: str) -> dict | None:
    """The first call, ``{"name", "arguments"}``, in OpenAI-style, Qwen ``<tool_call>`` or plain JSON output.

    ``arguments`` is None when they are not a JSON object: the function was right, its arguments unreadable.
    """
    value = extract_json(output)
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list) and value["tool_calls"]:
        value = value["tool_calls"][0]
    call = _read_call(value)
    if call is None:
        return None
    name, arguments = call
    if isinstance(arguments, str):
        arguments = decode_arguments(arguments) if arguments.strip() else {}
    return {"name": name, "arguments": arguments if isinstance(arguments, dict) else None}
