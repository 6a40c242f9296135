"""A simulated tool environment for agent items: tools declared in data, acting on a JSON state.

An agent item carries ``env: {"state": {...}, "tools": {name: spec}}``. Each tool's spec says, in data,
what a call checks, what it changes and what it answers, so a suite of agent tasks is a JSONL file and not
code (like tau-bench's domains, but declarative: no Python per tool)::

    "transfer": {
      "require": [
        {"exists": "accounts.{from_last4}", "error": "没有尾号{from_last4}的账户"},
        {"check": "=accounts.{from_last4}.balance", "gte": "{amount}", "error": "余额不足"}],
      "effects": [
        {"sub": "accounts.{from_last4}.balance", "value": "{amount}"},
        {"append": "transfers", "value": {"to": "{payee_card}", "amount": "{amount}"}}],
      "returns": {"status": "ok", "balance": "=accounts.{from_last4}.balance"}}

Values (in ``check``, comparison operands, ``value`` and ``returns``, nested in objects and lists):
``"{arg}"`` alone is the argument as the model gave it (its JSON type kept); ``"=a.b.{arg}"`` reads the
state at that path; any other string has its ``{arg}`` parts replaced by the arguments' text. A path is
dot-separated keys (list indexes as numbers), each key after ``{arg}`` substitution.

A call runs in order: unknown tool → error; arguments against the tool's JSON schema (from the item's
``tools``, as the server checks them) → error; each ``require`` in order → its ``error`` text; then every
effect on a copy of the state, which replaces the state only when all of them applied. An error changes
nothing and goes back to the model as ``{"error": ...}``, the way ``domainlm serve``'s agent loop answers a
failing tool. A tool with ``effects`` is a *write*; without, a *read*.

A *simulated user* (optional ``user`` in the item, :func:`parse_user`, :func:`user_reply`) answers the
model's text replies deterministically, so the model must ask for what the opening left out and get a
confirmation before it acts::

    "user": {
      "slots": {"amount": {"value": 300, "ask": ["金额", "多少钱", ["转", "多少"]], "say": "转300元"},
                "bill_type": {"value": "electricity", "ask": ["哪种账单"], "say": "电费", "forms": ["电费"]}},
      "confirm": {"cues": ["确认", "确定"], "values": ["amount"], "accept": true, "reply": "对，办吧"},
      "unclear": "我没听懂。", "max_turns": 5}

A reply is read in this order: no question in it (no ``ask_cues``: "?", "吗", "请问", ...) → it is the
model's final answer and the conversation ends; a question with a ``confirm`` cue that states the value of
every slot in ``confirm.values`` (all slots by default) → the user confirms (``reply``), or declines when
``accept`` is false; a question with a slot's ``ask`` cue → the user says that slot's ``say`` (every slot
asked for, in the profile's order); any other question → ``unclear``. A cue is a word, or a list of words
that must all appear. The cues are the suite author's, per item and per language: nothing here knows
about banks. After ``max_turns`` replies (default: the slots + 3) the user hangs up and the loop ends.

Hand-written: the tool-use benchmarks with simulated environments (tau-bench, BFCL's multi-turn, AppWorld)
define each tool in Python, which a suite written as data cannot carry; tau-bench's user is an LLM, which a
scorer that must give the same verdict on every run cannot use.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domainlm.evals.normalize import normalize_text, to_halfwidth, to_simplified
from domainlm.parsing import decode_arguments

_ARG = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_COMPARISONS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "one_of")


class EnvSpecError(ValueError):
    """The environment's data is wrong (a path that is not there, a sum of texts): the suite's bug, not the model's."""


class Condition(BaseModel):
    """One precondition: ``exists`` / ``missing`` (a state path), or ``check`` (a value) with one comparison."""

    model_config = ConfigDict(extra="forbid")
    exists: str | None = None
    missing: str | None = None
    check: Any = None
    equals: Any = None
    not_equals: Any = None
    gt: Any = None
    gte: Any = None
    lt: Any = None
    lte: Any = None
    one_of: list | None = None
    error: str = Field(description="What the model is told when the condition fails; {arg} parts are filled in.")

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        kinds = [k for k in ("exists", "missing", "check") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a condition needs exactly one of 'exists', 'missing', 'check'")
        ops = [k for k in _COMPARISONS if getattr(self, k) is not None]
        if kinds == ["check"] and len(ops) != 1:
            raise ValueError(f"a 'check' needs exactly one of {', '.join(_COMPARISONS)}")
        if kinds != ["check"] and ops:
            raise ValueError(f"'{ops[0]}' goes with 'check' only")
        return self


class Effect(BaseModel):
    """One change: ``set`` a path to ``value``, ``add``/``sub`` a number, or ``append`` to a list."""

    model_config = ConfigDict(extra="forbid")
    set: str | None = None
    add: str | None = None
    sub: str | None = None
    append: str | None = None
    value: Any = None

    @model_validator(mode="after")
    def _one_change(self) -> Effect:
        if sum(getattr(self, k) is not None for k in ("set", "add", "sub", "append")) != 1:
            raise ValueError("an effect needs exactly one of 'set', 'add', 'sub', 'append'")
        return self


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    require: list[Condition] = Field(default_factory=list)
    effects: list[Effect] = Field(default_factory=list)
    returns: Any = Field(None, description="The answer on success (values as above); None answers {\"status\": \"ok\"}.")


class EnvSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: dict = Field(default_factory=dict)
    tools: dict[str, ToolSpec]


def parse_env(data: Any) -> EnvSpec:
    """The item's ``env`` as a spec; a ValueError names the first key that is wrong (``tools.transfer.require.0``)."""
    try:
        return EnvSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "env"
        raise ValueError(f"env.{where}: {first['msg']}") from None


def tool_schemas(tools: list[dict] | None) -> dict[str, dict]:
    """``{name: parameters schema}`` of OpenAI tool objects (or bare function objects)."""
    out: dict[str, dict] = {}
    for tool in tools or []:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {"type": "object"}
    return out


# ------------------------------------------------------------------------------------------------
# Values and paths
# ------------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # "{amount}" in a message reads 500, not 500.0
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _fill(template: str, args: dict) -> str:
    return _ARG.sub(lambda m: _text(args.get(m.group(1), "")), template)


def _keys(path: str, args: dict) -> list[str]:
    # Split first, then fill: an argument holding a dot ("a.b") stays one key.
    return [_fill(part, args) for part in path.split(".") if part]


def _step(node: Any, key: str) -> tuple[bool, Any]:
    if isinstance(node, dict):
        return (key in node), node.get(key)
    if isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
        return True, node[int(key)]
    return False, None


def lookup(state: Any, path: str, args: dict) -> tuple[bool, Any]:
    """(found, value) at ``path`` in ``state``."""
    node = state
    for key in _keys(path, args):
        found, node = _step(node, key)
        if not found:
            return False, None
    return True, node


def evaluate(value: Any, state: Any, args: dict) -> Any:
    """A declared value, resolved against the arguments and the state (see the module docstring)."""
    if isinstance(value, dict):
        return {k: evaluate(v, state, args) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, state, args) for v in value]
    if not isinstance(value, str):
        return value
    if value.startswith("="):
        found, got = lookup(state, value[1:], args)
        if not found:
            raise EnvSpecError(f"no value at '{_fill(value[1:], args)}'")
        return copy.deepcopy(got)
    whole = _ARG.fullmatch(value)
    if whole:
        return args.get(whole.group(1))
    return _fill(value, args)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "equals":
        return left == right
    if op == "not_equals":
        return left != right
    if op == "one_of":
        return left in right
    a, b = _number(left), _number(right)
    if a is None or b is None:  # "500" >= 100 is no comparison a bank makes: the check fails
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _money(x: float) -> float | int:
    # Sums of money stay at cents: 0.1 + 0.2 must read 0.3 in the state the model and the scorer see.
    out = round(x, 2)
    return int(out) if out.is_integer() else out


def _apply(state: dict, effect: Effect, args: dict) -> None:
    path = next(p for p in (effect.set, effect.add, effect.sub, effect.append) if p is not None)
    keys = _keys(path, args)
    parent: Any = state
    for key in keys[:-1]:
        found, parent = _step(parent, key)
        if not found:
            raise EnvSpecError(f"no value at '{'.'.join(keys)}'")
    last = keys[-1]
    value = evaluate(effect.value, state, args)
    if effect.set is not None:
        if isinstance(parent, dict):
            parent[last] = value
            return
        found, _ = _step(parent, last)
        if not found:
            raise EnvSpecError(f"cannot set '{'.'.join(keys)}'")
        parent[int(last)] = value
        return
    found, current = _step(parent, last)
    if effect.append is not None:
        if not found:  # the first entry of a log creates it
            if not isinstance(parent, dict):
                raise EnvSpecError(f"cannot create '{'.'.join(keys)}'")
            parent[last] = current = []
        if not isinstance(current, list):
            raise EnvSpecError(f"'{'.'.join(keys)}' is not a list")
        current.append(value)
        return
    a, b = _number(current), _number(value)
    if a is None or b is None:
        raise EnvSpecError(f"'{'.'.join(keys)}' {'+' if effect.add is not None else '-'} {value!r} is not a sum of numbers")
    total = _money(a + b if effect.add is not None else a - b)
    if isinstance(parent, dict):
        parent[last] = total
    else:
        parent[int(last)] = total


# ------------------------------------------------------------------------------------------------
# The environment
# ------------------------------------------------------------------------------------------------
class AgentEnv:
    """One item's environment: ``call(name, arguments)`` runs a tool against ``state``.

    ``schemas`` are the item's offered tools (OpenAI tool objects): a call is checked against its tool's
    parameters first. A tool declared in ``env`` but not offered is unknown to the model; a tool offered
    but not declared answers an error (the suite forgot it, and the model should not gain from that).
    """

    def __init__(self, env: dict | EnvSpec, schemas: list[dict] | None = None):
        self.spec = env if isinstance(env, EnvSpec) else parse_env(env)
        self.schemas = tool_schemas(schemas) if schemas is not None else {n: {"type": "object"} for n in self.spec.tools}
        self.state = copy.deepcopy(self.spec.state)

    def is_write(self, name: str) -> bool:
        tool = self.spec.tools.get(name)
        return bool(tool and tool.effects)

    def call(self, name: str, arguments: Any) -> dict:
        """``{"ok": True, "result": value}`` or ``{"ok": False, "error": text, "kind": ...}``; never raises for
        the model's mistakes. ``kind``: unknown_tool, invalid_arguments, precondition, env_error."""
        import jsonschema

        tool = self.spec.tools.get(name)
        if name not in self.schemas or tool is None:
            return {"ok": False, "error": f"unknown tool '{name}'", "kind": "unknown_tool"}
        args = decode_arguments(arguments)
        if args is None or args == "":
            args = {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "the arguments are not a JSON object", "kind": "invalid_arguments"}
        try:
            jsonschema.validate(args, self.schemas[name])
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            return {"ok": False, "error": f"invalid arguments{' at ' + where if where else ''}: {exc.message}",
                    "kind": "invalid_arguments"}
        try:
            for cond in tool.require:
                if not self._holds(cond, args):
                    return {"ok": False, "error": _fill(cond.error, args), "kind": "precondition"}
            state = copy.deepcopy(self.state)  # all effects or none
            for effect in tool.effects:
                _apply(state, effect, args)
            result = {"status": "ok"} if tool.returns is None else evaluate(tool.returns, state, args)
        except EnvSpecError as exc:
            return {"ok": False, "error": f"tool '{name}' failed: {exc}", "kind": "env_error"}
        self.state = state
        return {"ok": True, "result": result}

    def _holds(self, cond: Condition, args: dict) -> bool:
        if cond.exists is not None:
            return lookup(self.state, cond.exists, args)[0]
        if cond.missing is not None:
            return not lookup(self.state, cond.missing, args)[0]
        left = evaluate(cond.check, self.state, args)
        op = next(k for k in _COMPARISONS if getattr(cond, k) is not None)
        return _compare(op, left, evaluate(getattr(cond, op), self.state, args))


def replay(env: dict | EnvSpec, schemas: list[dict] | None, calls: list[dict]) -> tuple[AgentEnv, list[dict]]:
    """The environment after ``calls`` (``{"name", "arguments"}``) ran in order from its initial state, and
    each call's outcome: how the scorer and the suite checks get an end state from a list of calls."""
    sim = AgentEnv(env, schemas)
    return sim, [sim.call(c.get("name", ""), c.get("arguments")) for c in calls]


# ------------------------------------------------------------------------------------------------
# The simulated user
# ------------------------------------------------------------------------------------------------
# What makes a reply a question, when the item does not say: question marks and the common Chinese
# question and request words. An item in another register lists its own ``ask_cues``.
DEFAULT_ASK_CUES: list[str | list[str]] = ["?", "吗", "请问", "请提供", "请告诉", "请输入", "请确认", "是否"]
DEFAULT_UNCLEAR = "抱歉，我没听明白您的意思。"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_DIGITS = re.compile(r"\d+")

Cue = str | list[str]


class SlotSpec(BaseModel):
    """One slot the user knows: its value, the words that show the model asks for it, what the user says."""

    model_config = ConfigDict(extra="forbid")
    value: Any = Field(description="The value as the tool's argument takes it (300, \"6222...\", \"electricity\").")
    ask: list[Cue] = Field(min_length=1, description="Cues that a question asks for this slot (金额, 多少钱, ...).")
    say: str | None = Field(None, description="The user's answer when asked; default: the value as text.")
    forms: list[str] = Field(default_factory=list, description="Other ways the value is written (电费 for electricity).")

    def answer(self) -> str:
        return self.say if self.say is not None else _text(self.value)


class ConfirmSpec(BaseModel):
    """What counts as a confirmation question, and the user's answer to it."""

    model_config = ConfigDict(extra="forbid")
    cues: list[Cue] = Field(min_length=1, description="Cues of a confirmation (确认, 确定, confirm, ...).")
    values: list[str] | None = Field(None, description="Slots whose values it must state; default: every slot.")
    accept: bool = Field(True, description="False: the user declines (an item that tests cancellation).")
    reply: str = Field(description="What the user says to it (对，办吧 / 算了，先不转了).")


class UserSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    confirm: ConfirmSpec | None = None
    ask_cues: list[Cue] = Field(default_factory=lambda: list(DEFAULT_ASK_CUES), min_length=1)
    unclear: str = DEFAULT_UNCLEAR
    max_turns: int | None = Field(None, ge=1, description="Replies before the user hangs up; default slots + 3.")

    @model_validator(mode="after")
    def _consistent(self) -> UserSpec:
        if self.confirm is not None:
            for name in self.confirm.values or []:
                if name not in self.slots:
                    raise ValueError(f"confirm.values: '{name}' is not one of the slots")
        for name, slot in self.slots.items():
            # A user who never says the value cannot give it: the suite would fail every model.
            if not said(slot, slot.answer()):
                raise ValueError(f"slots.{name}.say: does not state the value {slot.value!r} or one of its forms")
        return self

    @property
    def turn_limit(self) -> int:
        return self.max_turns if self.max_turns is not None else len(self.slots) + 3


def parse_user(data: Any) -> UserSpec:
    """The item's ``user`` as a spec; a ValueError names the first key that is wrong (``user.slots.amount.ask``)."""
    try:
        return UserSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        why = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"user{'.' + where if where else ''}: {why}") from None


def _fold(text: str) -> str:
    """Width, traditional characters, case and runs of spaces folded; punctuation kept (a "？" is a question)."""
    return re.sub(r"\s+", " ", to_simplified(to_halfwidth(str(text))).lower())


def has_cue(text: str, cues: list[Cue]) -> bool:
    """Whether ``text`` holds one of ``cues`` (a word, or a list of words that must all appear)."""
    folded = _fold(text)
    for cue in cues:
        words = [cue] if isinstance(cue, str) else cue
        if words and all(_fold(w) in folded for w in words):
            return True
    return False


def mentions(text: str, value: Any) -> bool:
    """Whether ``text`` states ``value``: a number as a number (8,000.50 = 8000.5), a string of digits as a
    whole number (0042 is not inside 10042), other text after normalisation (width, case, punctuation)."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        for m in _NUMBER.finditer(to_halfwidth(str(text)).replace("，", ",")):
            try:
                got = float(m.group(0).replace(",", ""))
            except ValueError:
                continue
            if math.isclose(got, float(value), rel_tol=0.0, abs_tol=1e-6):
                return True
        return False
    if not isinstance(value, str):
        return False
    want = normalize_text(value)
    if not want:
        return False
    have = normalize_text(text)
    if want.isdigit():  # compared as runs of digits, spaces and dashes between groups ignored
        return want in _DIGITS.findall(have.replace(" ", ""))
    return want in have


def said(slot: SlotSpec, text: str) -> bool:
    """Whether ``text`` states the slot's value (as itself or one of its forms)."""
    return mentions(text, slot.value) or any(mentions(text, form) for form in slot.forms)


def user_reply(user: UserSpec, text: str) -> dict:
    """The simulated user's answer to the model's text reply: ``{"kind", "content", "slots", "accept"}``.

    ``kind``: ``end`` (no question: the model's final answer; ``content`` None), ``confirm``, ``slots``
    or ``unclear``. Deterministic: the same text gets the same answer, so a scorer can replay it."""
    if not has_cue(text, user.ask_cues):
        return {"kind": "end", "content": None, "slots": [], "accept": None}
    confirm = user.confirm
    if confirm is not None and has_cue(text, confirm.cues):
        needed = confirm.values if confirm.values is not None else list(user.slots)
        if all(said(user.slots[name], text) for name in needed):
            return {"kind": "confirm", "content": confirm.reply, "slots": [], "accept": confirm.accept}
    asked = [name for name, slot in user.slots.items() if has_cue(text, slot.ask)]
    if asked:
        answers = [user.slots[n].answer() for n in asked]
        joint = "; " if all(a.isascii() for a in answers) else "，"
        return {"kind": "slots", "content": joint.join(answers), "slots": asked, "accept": None}
    return {"kind": "unclear", "content": user.unclear, "slots": [], "accept": None}
