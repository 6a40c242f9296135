"""Structure in a model's text: JSON values and tool calls, read one way for the server and the eval.

The server answers with this reading of a model's output and the eval scores the same reading, so an eval
score measures what a client of ``domainlm serve`` gets. The module sits beside the stages rather than in
``evals`` or ``serve`` because it is about the model's output format (each family's tool-call format: the
``<tool_call>`` blocks of ChatML templates, which ``models.openai_http.format_tool_calls`` also writes, and
the formats of Qwen3.5, GLM-4.x, MiniCPM, DeepSeek and Llama 3.x), and neither stage should have to import
the other for it.

Where server and eval need different answers, the difference is a thin function over the same parts:

* JSON. :func:`extract_json` finds the first JSON object or array (```json fences first) and returns its
  value; the eval scores that. :func:`json_text` is what the server returns under ``response_format``:
  the model's own characters when its whole answer is one JSON value (a bare ``42`` included), else the
  value :func:`extract_json` finds, written out.
* Tool calls. :func:`parse_tool_calls` (server) reads the tagged formats the families' templates write, and
  untagged JSON (Llama 3.x's only format) only when the whole answer is a call to a tool the request offered,
  because otherwise an untagged JSON object may be the answer itself. :func:`extract_tool_call` (eval) reads
  what the server reads first, then any untagged JSON, because the eval prompts ask for
  ``{"name", "arguments"}`` as plain JSON. Both read a JSON call object with :func:`_read_call`.

Every function returns ``None`` (or no calls) when the output holds nothing it can read.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
# The fence around an answer that is nothing but a fenced block.
_OUTER_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


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


# One alternative per kind of block, scanned left to right, so blocks never overlap:
#  * <tool_call>…</tool_call> (ChatML families): JSON (Qwen2.5/Qwen3, Hermes), <function=NAME> (Qwen3.5,
#    Qwen3-Coder) or NAME<arg_key>… (GLM-4.5/4.6) inside; max_tokens may cut it, so an unclosed one runs to the
#    end of the text and its body decides whether it is whole (:func:`_complete`);
#  * <function name="NAME"><param name="K">V</param></function> (MiniCPM);
#  * DeepSeek's special-token markers: NAME<｜tool▁sep｜>{json} (V3.1) or function<｜tool▁sep｜>NAME + a
#    ```json fence (V3, R1). The outer calls▁begin/end markers go with the first and last call.
_DS_CALLS_BEGIN, _DS_CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
_DS_CALL_BEGIN, _DS_SEP, _DS_CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"
# The tokens this parser reads that a family may declare special tokens (DeepSeek's markers are; GLM and some
# ChatML tokenizers mark <tool_call>/<arg_key> special too). A decoder that drops every special token would hand
# the parser "NAME{json}" with its markers gone, so the serve and eval decoders
# (``domainlm.models.hf.visible_text``) drop only the other special tokens (bos/eos/pad, end of turn, role
# markers) and keep these. Llama's <|python_tag|> is not here: a bare JSON call reads the same without it, and
# kept it would show in the text of an answer that is not a call.
CONTENT_MARKERS = frozenset({
    "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>",
    _DS_CALLS_BEGIN, _DS_CALLS_END, _DS_CALL_BEGIN, _DS_SEP, _DS_CALL_END,
})
_CALL_BLOCK = re.compile(
    r"<tool_call>(?P<tagged>.*?)(?P<tagged_end></tool_call>|$)"
    # (a MiniCPM body never holds another opening tag: an unclosed one cannot make the scan quadratic)
    r"|<function name=\"(?P<xml_name>[^\"<>]+)\">(?P<xml_body>(?:(?!<function name=).)*?)</function>"
    rf"|(?:{re.escape(_DS_CALLS_BEGIN)}\s*)?{re.escape(_DS_CALL_BEGIN)}(?P<ds_head>[^<>]*?){re.escape(_DS_SEP)}"
    rf"(?P<ds_body>.*?)(?P<ds_end>{re.escape(_DS_CALL_END)}(?:\s*{re.escape(_DS_CALLS_END)})?|$)",
    re.S,
)
_QWEN_FUNCTION = re.compile(r"\s*<function=(?P<name>[^>\n]+)>(?P<params>.*?)</function>", re.S)
_QWEN_PARAM = re.compile(r"\s*<parameter=(?P<key>[^>\n]+)>(?P<value>.*?)</parameter>", re.S)
# A GLM call opens with the bare function name (OpenAI's name characters), so prose is never read as one.
_GLM_NAME = re.compile(r"\s*(?P<name>[A-Za-z0-9_.:\-]+)")
_GLM_PARAM = re.compile(r"\s*<arg_key>(?P<key>[^<]*)</arg_key>\s*<arg_value>(?P<value>.*?)</arg_value>", re.S)
_MINICPM_PARAM = re.compile(r"\s*<param name=\"(?P<key>[^\"<>]+)\">(?:<!\[CDATA\[(?P<cdata>.*?)\]\]>|(?P<value>.*?))</param>",
                            re.S)
_DS_FENCED = re.compile(r"\s*(?P<name>[^\s`]+)\s*```(?:json)?\s*(?P<json>.*?)\s*```\s*", re.S)


def _tool_parameters(tools: Iterable[dict | str] | None) -> dict[str, dict]:
    """``{name: its parameters' JSON-schema properties}`` of the tools a request offered.

    Takes OpenAI tool objects (``{"type": "function", "function": {...}}``), bare function objects, or names.
    """
    offered: dict[str, dict] = {}
    for tool in tools or ():
        if isinstance(tool, str):
            offered[tool] = {}
            continue
        if not isinstance(tool, dict):
            continue
        fn = tool["function"] if isinstance(tool.get("function"), dict) else tool
        if isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            props = params.get("properties") if isinstance(params, dict) else None
            offered[fn["name"]] = props if isinstance(props, dict) else {}
    return offered


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN/Infinity: json.dumps would write invalid JSON back


def _param_value(raw: str, schema: Any) -> Any:
    """One argument written as text by an XML-style format, as a value.

    The templates write a string as it is and anything else as JSON, so a value is JSON when it parses as
    JSON and a string otherwise; where the tool's schema says the parameter is a string it stays one (card
    tail "1234" is not the number 1234). ``True``/``False`` (Python's, as Jinja's ``|string`` writes them) are
    booleans only where the schema says boolean.
    """
    kinds = schema.get("type") if isinstance(schema, dict) else None
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if "string" in kinds:
        return raw
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        pass
    if "boolean" in kinds and raw.strip() in ("True", "False"):
        return raw.strip() == "True"
    return raw


def _params(pattern: re.Pattern, text: str) -> tuple[list[re.Match], str]:
    """The parameter blocks at the start of ``text`` (only whitespace between them) and the text after them
    (where the caller checks that nothing but a closing tag is left). The patterns' keys cannot hold ``<``, so
    a block left unclosed costs one scan, not one per later key."""
    found, last = [], 0
    while m := pattern.match(text, last):  # anchored (each pattern starts with \s*): linear in the text
        found.append(m)
        last = m.end()
    return found, text[last:]


def _complete(tail: str, closed: bool, *, ends_itself: bool) -> bool:
    """Whether a ``<tool_call>`` block whose body ended with ``tail`` left over is a whole call.

    Closed, nothing but whitespace may be left over. Cut short by max_tokens, the left-over must be the start
    of ``</tool_call>`` (the model was closing it), unless the body ends with its own closing tag
    (``</function>``): a call cut before either may have lost arguments, so it is not read as a call.
    """
    rest = tail.strip()
    if not rest:
        return closed or ends_itself
    return not closed and len(rest) >= 2 and "</tool_call>".startswith(rest)


def _one_newline_off(value: str) -> str:
    """A Qwen3.5 value without the newline the template writes on each side of it (its own are kept)."""
    value = value[1:] if value.startswith("\n") else value
    return value[:-1] if value.endswith("\n") else value


def _arguments(pairs: list[tuple[str, str]], schema: dict) -> dict:
    return {key: _param_value(raw, schema.get(key)) for key, raw in pairs}


def _read_tagged(body: str, closed: bool, offered: dict[str, dict]) -> tuple[str, Any] | None:
    """The call in one ``<tool_call>`` block's body: JSON, Qwen3.5's ``<function=…>`` or GLM's arg_key/value."""
    try:
        # raw_decode: the object may be followed by a closing tag cut short by max_tokens ("</tool_").
        obj, _ = json.JSONDecoder().raw_decode(body.strip())
        return _read_call(obj)
    except json.JSONDecodeError:
        pass
    qwen = _QWEN_FUNCTION.match(body)
    if qwen:
        params, rest = _params(_QWEN_PARAM, qwen["params"])
        if rest.strip() or not _complete(body[qwen.end():], closed, ends_itself=True):
            return None
        name = qwen["name"].strip()
        pairs = [(m["key"].strip(), _one_newline_off(m["value"])) for m in params]
        return name, _arguments(pairs, offered.get(name, {}))
    glm = _GLM_NAME.match(body)
    if glm:
        params, rest = _params(_GLM_PARAM, body[glm.end():])
        if not _complete(rest, closed, ends_itself=False):
            return None
        pairs = [(m["key"].strip(), m["value"]) for m in params]
        return glm["name"], _arguments(pairs, offered.get(glm["name"], {}))
    return None


def _read_minicpm(name: str, body: str, offered: dict[str, dict]) -> tuple[str, Any] | None:
    params, rest = _params(_MINICPM_PARAM, body)
    if rest.strip():
        return None
    pairs = [(m["key"], m["cdata"] if m["cdata"] is not None else m["value"]) for m in params]
    return name, _arguments(pairs, offered.get(name, {}))


def _read_deepseek(head: str, body: str) -> tuple[str, Any] | None:
    """V3.1 writes ``NAME<｜tool▁sep｜>{json}``; V3 and R1 write ``function<｜tool▁sep｜>NAME`` and a json fence."""
    head = head.strip()
    fenced = _DS_FENCED.fullmatch(body) if head == "function" else None
    name, text = (fenced["name"], fenced["json"]) if fenced else (head, body.strip())
    if not name:
        return None
    try:
        args = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return None
    # The templates write arguments with |tojson: a client's JSON-string arguments come out as a JSON string.
    return (name, args) if isinstance(args, (dict, str)) else None


def _read_block(m: re.Match, offered: dict[str, dict]) -> tuple[str, Any] | None:
    if m["tagged"] is not None:
        return _read_tagged(m["tagged"], bool(m["tagged_end"]), offered)
    if m["xml_name"] is not None:
        return _read_minicpm(m["xml_name"], m["xml_body"], offered)
    if not m["ds_end"]:  # cut by max_tokens: the JSON may be whole, but the call was never finished
        return None
    return _read_deepseek(m["ds_head"], m["ds_body"])


def _bare_call(text: str, offered: dict[str, dict]) -> tuple[str, Any] | None:
    """Llama 3.x's call: the whole answer is ``{"name", "parameters"}`` and nothing else.

    Read only for a function the request offered, and only an object with no other keys, so a JSON answer
    (say to a ``json_object`` request that also offered tools) is never taken for a call.
    """
    whole = text.strip().removeprefix("<|python_tag|>").strip()
    if not offered or not whole.startswith("{"):
        return None
    try:
        value = json.loads(whole, parse_constant=_no_constant)
    except ValueError:
        return None
    if not isinstance(value, dict) or "name" not in value or not set(value) <= {"name", "parameters", "arguments"}:
        return None
    call = _read_call(value)
    if call is None or call[0] not in offered or not isinstance(call[1], dict):
        return None
    return call


def _openai_call(name: str, args: Any) -> dict:
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)},
    }


def parse_tool_calls(text: str, tools: Iterable[dict | str] | None = None) -> ParsedOutput:
    """Split a model's output into text and the tool calls it wrote in its family's format.

    Reads ``<tool_call>{"name", "arguments"}</tool_call>`` (Qwen2.5, Qwen3, Hermes), Qwen3.5's
    ``<tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>``, GLM-4.6's
    ``<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value></tool_call>``, MiniCPM's
    ``<function name="N"><param name="K">V</param></function>`` and DeepSeek's ``<｜tool▁call▁begin｜>`` markers
    (special tokens, which the serve and eval decoders keep: see :data:`CONTENT_MARKERS`).

    ``tools`` is what the request offered (OpenAI tool objects or names). With it, the schema's types decide
    XML-style values ("0012" stays a string for a string parameter), and an answer that is nothing but
    ``{"name", "parameters"}`` naming an offered function (Llama 3.x, which has no tag) is a call. Without it,
    untagged JSON is never a call.

    The calls come in OpenAI's shape (an id, arguments as a JSON string). A block that is not a whole call
    stays in the text: the client sees exactly what the model wrote rather than a call the model never made.
    """
    offered = _tool_parameters(tools)
    calls: list[dict] = []
    kept: list[str] = []
    last = 0
    for m in _CALL_BLOCK.finditer(text):
        call = _read_block(m, offered)
        if call is None:
            continue
        kept.append(text[last : m.start()])
        last = m.end()
        calls.append(_openai_call(*call))
    kept.append(text[last:])
    if not calls and offered:
        bare = _bare_call(text, offered)
        if bare is not None:
            return ParsedOutput(content=None, tool_calls=[_openai_call(*bare)])
    content = "".join(kept).strip()
    return ParsedOutput(content=content or (None if calls else ""), tool_calls=calls)


def extract_tool_call(output: str, tools: Iterable[dict | str] | None = None) -> dict | None:
    """The first call, ``{"name", "arguments"}``, in any format :func:`parse_tool_calls` reads, else in
    OpenAI-style or plain JSON output (the eval prompts ask for ``{"name", "arguments"}`` as plain JSON).

    ``arguments`` is None when they are not a JSON object: the function was right, its arguments unreadable.
    """
    parsed = parse_tool_calls(output, tools)
    if parsed.tool_calls:
        fn = parsed.tool_calls[0]["function"]
        call = fn["name"], fn["arguments"]
    else:
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
