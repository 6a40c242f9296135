"""Constrained decoding: ``response_format`` and ``tool_choice`` kept while the model decodes.

A small domain model cannot be trusted to write JSON that parses, let alone JSON that follows a schema,
so the transformers backend masks, at every decode step, the tokens that would leave the grammar: the
answer parses and validates even from an untrained model. The grammar engine is llguidance (Microsoft's
Rust engine behind Guidance, also a backend of vLLM, SGLang and llama.cpp): it compiles a JSON schema or
a Lark grammar lazily (no per-schema warm-up), computes a token mask in well under a millisecond, and its
wheel is 3 MB with no dependencies, where xgrammar (a little faster per token here, equally maintained)
pulls triton (~1 GB) into a CPU-only install. Nothing is compiled or downloaded at run time.

What a request is constrained to (:func:`constraint_for`):

* ``response_format`` ``json_object``: any JSON object; ``json_schema``: that schema.
* ``tool_choice`` ``"required"``: one ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` block
  (the ChatML form ``domainlm.parsing.parse_tool_calls`` reads, so serve and eval read calls one way)
  calling one of the offered tools, with arguments valid for its ``parameters`` schema; a named function
  (``{"type": "function", "function": {"name": X}}``): a call to X.

Two things a grammar alone does not give, handled here:

* Finite numbers. JSON allows ``1e999``, which ``json.loads`` reads as ``inf``; random weights write such
  numbers readily. Every number and integer without bounds gets ``|x| <= 1e15`` (:data:`NUMBER_LIMIT`),
  and ``json_object``'s values are a recursive schema with bounded numbers.
* Ending within ``max_tokens``. An untrained model inside a string picks the closing quote about once per
  vocabulary size of tokens, so a free JSON answer is cut before it closes. When the tokens left fall to
  the reserve (the token length of the shortest valid answer, twice, plus 8), the processor keeps, of the
  tokens the grammar allows, only those that close the answer fastest: inside a string the ones that
  start with its closing quote; elsewhere the highest closing weight (``}`` ``]`` ``"`` count up; ``{``
  ``[`` ``,`` ``:`` digits and whitespace count down, so a number ends and no space is added; the
  end-of-turn token first of all). A ``max_tokens`` smaller than the shortest valid answer is cut
  (``finish_reason`` ``length``), as OpenAI's API does.

Only transformers models are constrained here (``ServedModel.constrains``); the route refuses a
constraint by name for backends that cannot take it.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from domainlm.errors import DomainlmError

NUMBER_LIMIT = 1e15  # well inside float precision and far from inf; wide enough for any domain quantity
TOOL_OPEN, TOOL_CLOSE = "<tool_call>\n", "\n</tool_call>"
# Characters that close a JSON value, and those that open one or announce more. Digits and number
# signs count below "," so a number ends at once; whitespace counts lowest (see GrammarVocab).
_CLOSE_WEIGHT = {"}": 2, "]": 2, '"': 1, "{": -2, "[": -2, ",": -1, ":": -1, ".": -3, "-": -3, "+": -3,
                 "e": -3, "E": -3, **{d: -2 for d in "0123456789"}}
# How tokenizers spell whitespace in a token's piece: byte-level BPE (space, newline, tab), sentencepiece.
_SPACE_MARKS = "\u0120\u010a\u0109\u2581"
# JSON written the way ``json.dumps`` and the chat template write it: no free whitespace, which an
# untrained model would otherwise fill a reply with, and which a trained one never learned to write.
_LAYOUT = {"x-guidance": {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}}


class ConstraintError(DomainlmError):
    """A request whose constraint cannot be built; ``param`` names the request field at fault."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Constraint:
    """What one answer is held to: an llguidance grammar and the shortest text it accepts."""

    kind: str  # "json" (response_format) or "tool_call" (tool_choice)
    grammar: str  # llguidance's serialized grammar
    shortest: str  # a shortest valid answer, to size the closing reserve


# ---------------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------------
def _any_value() -> dict:
    """JSON Schema for any JSON value with bounded numbers (a recursive ``$defs`` entry)."""
    ref = {"$ref": "#/$defs/value"}
    return {"anyOf": [
        {"type": "string"}, {"type": "number", "minimum": -NUMBER_LIMIT, "maximum": NUMBER_LIMIT},
        {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": ref}, {"type": "object", "additionalProperties": ref},
    ]}


def any_object_schema() -> dict:
    """``json_object``: an object whose values are any JSON, numbers bounded."""
    return {"$defs": {"value": _any_value()}, "type": "object", "additionalProperties": {"$ref": "#/$defs/value"}}


def bound_numbers(schema: Any) -> Any:
    """A copy of ``schema`` where every ``number``/``integer`` without a bound gets ``±NUMBER_LIMIT``."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if "number" in types or "integer" in types:
            integer_only = "number" not in types
            if "minimum" not in node and "exclusiveMinimum" not in node:
                node["minimum"] = -int(NUMBER_LIMIT) if integer_only else -NUMBER_LIMIT
            if "maximum" not in node and "exclusiveMaximum" not in node:
                node["maximum"] = int(NUMBER_LIMIT) if integer_only else NUMBER_LIMIT
        for value in node.values():
            walk(value)

    walk(schema)
    return schema


def shortest_instance(schema: Any, defs: dict | None = None, depth: int = 0) -> Any:
    """A small valid instance of ``schema`` (required properties only, empty strings and arrays, the
    lowest number): its length sizes the reserve of tokens kept for closing the answer."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    defs = defs if defs is not None else {**schema.get("definitions", {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        return shortest_instance(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return min(schema["enum"], key=lambda v: len(json.dumps(v, ensure_ascii=False)))
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [shortest_instance(s, defs, depth + 1) for s in schema[key]]
            return min(options, key=lambda v: len(json.dumps(v, ensure_ascii=False)))
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            merged.update(part if isinstance(part, dict) else {})
        return shortest_instance(merged, defs, depth + 1)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: shortest_instance(props.get(name, {}), defs, depth + 1) for name in schema.get("required") or []}
    if kind == "array":
        item = shortest_instance(schema.get("items", {}), defs, depth + 1)
        return [item] * int(schema.get("minItems") or 0)
    if kind == "string":
        return "x" * int(schema.get("minLength") or 0)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return 0 if low is None or low <= 0 else math.ceil(low) + 1
    if kind == "boolean":
        return False
    return None


# ---------------------------------------------------------------------------------------------------
# Requests -> constraints
# ---------------------------------------------------------------------------------------------------
def constraint_for(response_format: dict | None, tools: list[dict] | None, tool_choice: Any) -> Constraint | None:
    """The constraint a request asks for, or None (free text, or ``tool_choice`` ``"auto"``).

    Raises :class:`ConstraintError` naming ``response_format`` or ``tool_choice`` when the request cannot
    be honoured (no tools for ``"required"``, an unknown function, a schema llguidance cannot compile).
    """
    forced = _forced_tools(tools, tool_choice)
    if forced is not None:
        return _tool_constraint(forced)
    if response_format and response_format.get("type") in ("json_object", "json_schema"):
        return _json_constraint(response_format)
    return None


def _forced_tools(tools: list[dict] | None, tool_choice: Any) -> list[dict] | None:
    """The tools one of which must be called, or None when no call is forced."""
    if tool_choice in (None, "auto", "none"):
        return None
    if tool_choice == "required":
        if not tools:
            raise ConstraintError("tool_choice 'required' needs at least one tool in 'tools'", "tool_choice")
        return tools
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        chosen = [t for t in tools or [] if (t.get("function") or {}).get("name") == name]
        if not chosen:
            raise ConstraintError(f"tool_choice names function '{name}', which is not in 'tools'", "tool_choice")
        return chosen
    raise ConstraintError("tool_choice must be 'none', 'auto', 'required' or "
                          "{'type': 'function', 'function': {'name': ...}}", "tool_choice")


def _call_schema(tool: dict) -> dict:
    function = tool.get("function") or {}
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "object", "properties": {"name": {"const": function.get("name")},
                                             "arguments": bound_numbers(parameters)},
            "required": ["name", "arguments"], "additionalProperties": False}


def _tool_constraint(tools: list[dict]) -> Constraint:
    import llguidance

    schema = _call_schema(tools[0]) if len(tools) == 1 else {"anyOf": [_call_schema(t) for t in tools]}
    schema = {**schema, **_LAYOUT}
    # The call block as the ChatML chat template writes it and domainlm.parsing reads it.
    lark = f"start: {json.dumps(TOOL_OPEN)} call {json.dumps(TOOL_CLOSE)}\ncall: %json {json.dumps(schema)}\n"
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    _check(grammar, "tool_choice")
    shortest = TOOL_OPEN + json.dumps(shortest_instance(schema), ensure_ascii=False) + TOOL_CLOSE
    return Constraint("tool_call", grammar, shortest)


def _json_constraint(response_format: dict) -> Constraint:
    import llguidance

    if response_format["type"] == "json_object":
        schema = any_object_schema()
    else:
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ConstraintError("response_format json_schema needs a 'schema' object", "response_format")
        schema = bound_numbers(schema)
    schema = {**schema, **_LAYOUT}
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema)
    except (ValueError, TypeError) as exc:
        raise ConstraintError(f"response_format: the JSON schema cannot be compiled ({exc})", "response_format") from None
    _check(grammar, "response_format")
    return Constraint("json", grammar, json.dumps(shortest_instance(schema), ensure_ascii=False))


def _check(grammar: str, param: str) -> None:
    import llguidance

    problem = llguidance.LLMatcher.validate_grammar(grammar)
    if problem:
        raise ConstraintError(f"{param}: the constraint cannot be compiled ({problem.splitlines()[0]})", param)


# ---------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------
class GrammarVocab:
    """llguidance's view of one tokenizer (built once per served model) and, per token, what the closing
    phase needs: whether it starts with a quote, and its closing weight."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: list[int]):
        import llguidance.hf
        import numpy as np
        import torch

        self.vocab_size = vocab_size
        self.stop_ids = list(stop_ids)
        try:
            self.llg = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=self.stop_ids)
        except ValueError as exc:  # a slow (Python) tokenizer: llguidance reads only fast tokenizers' JSON
            raise DomainlmError(f"constrained decoding needs a fast tokenizer ({exc})") from None
        # Byte-level and sentencepiece pieces keep ASCII punctuation as itself, so quotes, backslashes and
        # brackets are readable from the piece; other bytes map to characters that are none of these.
        self.pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer))))) + [""] * max(
            0, vocab_size - len(tokenizer))
        weights = np.zeros(vocab_size, dtype=np.float32)
        quote = np.zeros(vocab_size, dtype=bool)
        for i, piece in enumerate(self.pieces):
            piece = piece or ""
            weights[i] = sum(_CLOSE_WEIGHT.get(ch, -3 if ch.isspace() or ch in _SPACE_MARKS else 0) for ch in piece)
            quote[i] = piece.startswith('"')
        weights[self.stop_ids] = 1e6  # ending the turn, once the grammar allows it, closes everything
        self.close_weight, self.starts_quote = torch.from_numpy(weights), torch.from_numpy(quote)


class _StringState:
    """Whether the answer so far ends inside a JSON string (the grammars here quote only in JSON)."""

    def __init__(self) -> None:
        self.inside = self.escaped = False

    def feed(self, piece: str) -> None:
        for ch in piece:
            if self.escaped:
                self.escaped = False
            elif self.inside and ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.inside = not self.inside


def closing_choice(allowed, vocab: GrammarVocab, state: _StringState):
    """Of the ``allowed`` tokens (a bool tensor), those that close the answer fastest: inside a string the
    ones starting with its closing quote (when the string may end here), elsewhere the highest closing
    weight (whitespace counts down, so it never wins over a needed ``,`` or ``:``)."""
    import torch

    n = vocab.close_weight.shape[0]
    pool = allowed[:n]
    if state.inside:
        if state.escaped:
            return allowed
        quoted = pool & vocab.starts_quote
        if not bool(quoted.any()):
            return allowed  # minLength not reached, or an escape to finish: the model writes on
        pool = quoted
    weight = torch.where(pool, vocab.close_weight, -math.inf)
    best = torch.zeros_like(allowed)
    best[:n] = weight == weight.max()
    return allowed & best


def logits_processor(constraint: Constraint, vocab: GrammarVocab, reserve: int, prompt_len: int, max_new_tokens: int):
    """A transformers logits processor holding one generation (batch of one) to ``constraint``."""
    import llguidance
    import llguidance.numpy as llnp
    import numpy as np
    import torch
    from transformers import LogitsProcessor

    matcher = llguidance.LLMatcher(vocab.llg, constraint.grammar)
    if matcher.is_error():
        raise DomainlmError(f"constrained decoding: {matcher.get_error()}")
    bitmask = llnp.allocate_token_bitmask(1, vocab.vocab_size)
    strings = _StringState()

    class Grammar(LogitsProcessor):
        # Called once per decode step, before temperature and top_p (transformers applies a caller's
        # processors first), so sampling only ever sees tokens the grammar allows.
        def __call__(self, input_ids, scores):
            done = input_ids.shape[1] - prompt_len
            if done > 0:
                token = int(input_ids[0, -1])
                if not matcher.consume_token(token):
                    raise DomainlmError(f"constrained decoding: {matcher.get_error()}")
                strings.feed(vocab.pieces[token] if token < len(vocab.pieces) else "")
            llnp.fill_next_token_bitmask(matcher, bitmask, 0)
            bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: scores.shape[-1]]
            allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
            allowed[: bits.shape[0]] = torch.from_numpy(bits.astype(bool))
            if max_new_tokens - done <= reserve:
                allowed = closing_choice(allowed, vocab, strings)
            return scores.masked_fill(~allowed.to(scores.device), -math.inf)

    return Grammar()


def reserve_tokens(constraint: Constraint, count) -> int:
    """Tokens kept for closing the answer: twice the shortest answer's length, plus 8."""
    return 2 * count(constraint.shortest) + 8


def finite_json(text: str) -> bool:
    """Whether ``text`` is JSON whose numbers are all finite (``json.loads`` reads ``1e999`` as inf)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False

    def finite(v: Any) -> bool:
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, dict):
            return all(finite(x) for x in v.values())
        if isinstance(v, list):
            return all(finite(x) for x in v)
        return True

    return finite(value)
