"""Agent items: multi-step tool use against a simulated environment, scored on the end state and the calls.

An item (type ``agent``)::

    {"id", "type": "agent", "question": "..." | "messages": [...], "tools": [OpenAI tool objects],
     "env": {"state": {...}, "tools": {name: effect spec}},      # domainlm.evals.agent_env
     "expected_state": {...},                                    # a subset of the final state
     "expected_calls": [{"name", "arguments"}, ...],
     "expected_answer"?: [values the final answer must state],   # e.g. the balance a read tool returned
     "max_steps"?: 5}

The loop is the server's (:mod:`domainlm.serve.agent`): the model answers, the calls
:func:`domainlm.parsing.parse_tool_calls` reads in its answer run, each result (or error) goes back as a
``tool`` message, until an answer with no call or ``max_steps`` rounds of tools; after the last round the
model is asked once more and calls it still makes are recorded as not run (``exhausted``). Here the tools
are the item's simulated environment instead of plugins, and every item's loop advances one step at a
time in batches (one ``chat`` call per step for all items still running), so a served model sees the
same concurrency as the other task types.

The prediction keeps the whole ``trajectory`` (each turn's raw output and its calls with their results),
and the scorer replays the calls that ran from the item's initial state: a stored prediction is re-scored
from what the model did, never from a final state written beside it.

Score (``success``, the task's main score) is 1 when the end state matches ``expected_state`` (a subset:
keys not named are not compared), no write call was made that ``expected_calls`` does not hold, every
expected write was made, the loop ended with an answer (not ``max_steps``), and that answer states each
``expected_answer`` value. Beside it: ``end_state``, ``calls_precision`` / ``calls_recall`` / ``calls_f1``
(calls as multisets of name + normalised arguments, reads included) and ``exact_sequence``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from domainlm.evals.agent_env import AgentEnv, parse_env, replay, tool_schemas
from domainlm.evals.density import request_flops
from domainlm.evals.normalize import normalize_text
from domainlm.evals.scorers import Scorer, normalize_value
from domainlm.parsing import decode_arguments, parse_tool_calls

DEFAULT_MAX_STEPS = 5
# What the model is given back from one call at most (as the server's loop): a state dump must not fill the context.
MAX_RESULT_CHARS = 4_000


# ------------------------------------------------------------------------------------------------
# Items
# ------------------------------------------------------------------------------------------------
def check_agent_item(item: dict) -> None:
    """Raise ValueError("key: why") for the first thing wrong with an agent item."""
    if "messages" in item:
        messages = item["messages"]
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("messages: expected a non-empty list of {\"role\", \"content\"}")
        if messages[-1]["role"] not in ("user", "tool"):
            raise ValueError("messages: the last message must be the user's (or a tool result) for the model to answer")
    elif not isinstance(item.get("question"), str) or not item["question"].strip():
        raise ValueError("question: missing (an agent item needs 'question' or 'messages')")
    if not isinstance(item.get("tools"), list) or not item["tools"]:
        raise ValueError("tools: expected a non-empty list of OpenAI tool objects")
    offered = tool_schemas(item["tools"])
    if len(offered) != len(item["tools"]):
        raise ValueError("tools: every tool needs function.name")
    if not isinstance(item.get("env"), dict):
        raise ValueError("env: missing (expected {\"state\", \"tools\"})")
    env = parse_env(item["env"])
    for name in offered:
        if name not in env.tools:
            raise ValueError(f"env.tools: the offered tool '{name}' has no effect spec")
    if not isinstance(item.get("expected_state"), dict):
        raise ValueError("expected_state: expected an object (a subset of the final state)")
    calls = item.get("expected_calls")
    if not isinstance(calls, list):
        raise ValueError("expected_calls: expected a list of {\"name\", \"arguments\"}")
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or call.get("name") not in offered:
            raise ValueError(f"expected_calls[{i}].name: not one of the offered tools")
        if not isinstance(call.get("arguments", {}), dict):
            raise ValueError(f"expected_calls[{i}].arguments: expected an object")
    answer = item.get("expected_answer", [])
    if not isinstance(answer, list):
        raise ValueError("expected_answer: expected a list of values")
    steps = item.get("max_steps", DEFAULT_MAX_STEPS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError("max_steps: expected an integer >= 1")


def conversation_of(item: dict) -> list[dict]:
    """The item's opening conversation: its ``messages``, or its ``question`` as one user turn."""
    if "messages" in item:
        return [dict(m) for m in item["messages"]]
    return [{"role": "user", "content": item["question"]}]


def _result_text(outcome: dict) -> str:
    value = outcome["result"] if outcome["ok"] else {"error": outcome["error"]}
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + f"\n…(cut: {len(text)} characters)"


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------
class _Run:
    """One item's loop in progress."""

    def __init__(self, item: dict):
        self.item = item
        self.env = AgentEnv(item["env"], item["tools"])
        self.conversation = conversation_of(item)
        self.max_steps = int(item.get("max_steps", DEFAULT_MAX_STEPS))
        self.trajectory: list[dict] = []
        self.steps = 0
        self.exhausted = False
        self.done = False
        self.prompt_tokens = 0
        self.output_tokens = 0

    def take(self, text: str) -> None:
        """The model's answer for the current conversation: run its calls, or finish."""
        parsed = parse_tool_calls(text or "", self.item["tools"])
        turn: dict[str, Any] = {"output": text, "calls": []}
        self.trajectory.append(turn)
        if not parsed.tool_calls:
            self.done = True
            return
        if self.steps >= self.max_steps:
            turn["calls"] = [{"name": c["function"]["name"], "arguments": decode_arguments(c["function"]["arguments"]),
                              "run": False, "error": f"not run: max_steps ({self.max_steps}) reached"}
                             for c in parsed.tool_calls]
            self.exhausted = self.done = True
            return
        self.steps += 1
        self.conversation.append({"role": "assistant", "content": parsed.content or "", "tool_calls": [
            {**c, "function": {**c["function"], "arguments": decode_arguments(c["function"]["arguments"])}}
            for c in parsed.tool_calls]})
        for call in parsed.tool_calls:
            name, arguments = call["function"]["name"], decode_arguments(call["function"]["arguments"])
            outcome = self.env.call(name, arguments)
            record = {"name": name, "arguments": arguments, "run": True}
            record.update({"result": outcome["result"]} if outcome["ok"] else {"error": outcome["error"]})
            turn["calls"].append(record)
            self.conversation.append({"role": "tool", "tool_call_id": call["id"], "name": name,
                                      "content": _result_text(outcome)})

    def record(self) -> dict:
        return {"id": self.item["id"], "output": self.trajectory[-1]["output"] if self.trajectory else "",
                "trajectory": self.trajectory, "steps": self.steps, "exhausted": self.exhausted,
                "final_state": self.env.state, "prompt_tokens": self.prompt_tokens,
                "output_tokens": self.output_tokens}


def run_agent_items(model, items: list[dict], *, max_new_tokens: int = 256, batch_size: int = 8, seed: int = 0,
                    counter=None, usage: dict | None = None, info: dict | None = None,
                    progress: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Run every agent item's loop with ``model`` (any :class:`domainlm.models.LanguageModel`); returns the
    prediction records by id. ``counter`` (the runner's TokenCounter) counts tokens into ``usage``."""
    runs = [_Run(item) for item in items]
    while True:
        active = [r for r in runs if not r.done]
        if not active:
            break
        # One chat call per batch of items offering the same tools (the backend takes one tools list a call).
        groups: dict[str, list[_Run]] = {}
        for run in active:
            groups.setdefault(json.dumps(run.item["tools"], sort_keys=True, ensure_ascii=False), []).append(run)
        for group in groups.values():
            tools = group[0].item["tools"]
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                outputs = model.chat([r.conversation for r in chunk], max_new_tokens=max_new_tokens, temperature=0.0,
                                     tools=tools, seed=seed)
                for run, output in zip(chunk, outputs, strict=True):
                    if counter is not None:
                        prompt = counter.count(counter.chat_text(run.conversation, tools))
                        out = counter.count(output or "")
                        run.prompt_tokens += prompt
                        run.output_tokens += out
                        if usage is not None:
                            usage["tokens_in"] += prompt
                            usage["tokens_out"] += out
                            usage["flops"] += request_flops(info or {}, prompt, out) or 0.0
                    run.take(output or "")
                    if run.done and progress:
                        progress(1)
    return {run.item["id"]: run.record() for run in runs}


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
def _same(expected: Any, actual: Any) -> bool:
    e, a = normalize_value(expected), normalize_value(actual)
    if isinstance(e, float) and isinstance(a, float):
        return math.isclose(e, a, rel_tol=0.0, abs_tol=1e-6)
    return e == a


def state_diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected`` read as a subset: keys ``expected`` does not name are not
    compared; lists are compared whole (an extra transfer in a log is a difference)."""
    where = path or "(state)"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object"]
        out = []
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else str(key)
            out += state_diff(value, actual[key], sub) if key in actual else [f"{sub}: missing"]
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            got = len(actual) if isinstance(actual, list) else type(actual).__name__
            return [f"{where}: expected {len(expected)} entries, got {got}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in state_diff(e, a, f"{where}.{i}")]
    return [] if _same(expected, actual) else [f"{where}: expected {expected!r}, got {actual!r}"]


def call_key(name: str, arguments: Any) -> str:
    """A call as a comparable key: the name and its arguments after normalisation (key order, width, case,
    "500" = 500); arguments that are not an object stay as written, so they match nothing expected."""
    args = decode_arguments(arguments)
    if args is None or args == "":
        args = {}
    return name + " " + json.dumps(normalize_value(args), sort_keys=True, ensure_ascii=False)


_NUMBER = re.compile(r"-?\d[\d,，]*(?:\.\d+)?")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def states_value(text: str, value: Any) -> bool:
    """Whether an answer states ``value``: a number as a number written anywhere in it (8,000.50 = 8000.5),
    a text after normalisation (width, case, punctuation, traditional characters)."""
    number = _as_number(value)
    if number is not None:
        for m in _NUMBER.finditer(text):
            got = _as_number(re.sub("[,，]", "", m.group(0)))
            if got is not None and math.isclose(got, number, rel_tol=0.0, abs_tol=1e-6):
                return True
        return False
    want = normalize_text(str(value))
    return bool(want) and want in normalize_text(text)


def made_calls(trajectory: list[dict] | None) -> list[dict]:
    """The calls that ran, in order."""
    return [c for turn in trajectory or [] for c in turn.get("calls") or [] if c.get("run", True)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class AgentScorer(Scorer):
    type = "agent"
    credit_fields = ("end_state", "calls_precision", "calls_recall", "calls_f1", "exact_sequence", "answer_ok")

    def score(self, item: dict, output: str, trajectory: list[dict] | None = None) -> dict:
        calls = made_calls(trajectory)
        sim, _ = replay(item["env"], item["tools"], calls)
        diffs = state_diff(item["expected_state"], sim.state)
        expected = item.get("expected_calls") or []
        made_keys = [call_key(c.get("name", ""), c.get("arguments")) for c in calls]
        want_keys = [call_key(c["name"], c.get("arguments", {})) for c in expected]
        matched = sum((Counter(made_keys) & Counter(want_keys)).values())
        precision = matched / len(made_keys) if made_keys else float(not want_keys)
        recall = matched / len(want_keys) if want_keys else float(not made_keys)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        # Writes: every write made must be expected (a wrong account, a second transfer), every expected one made.
        made_writes = Counter(k for c, k in zip(calls, made_keys, strict=True) if sim.is_write(c.get("name", "")))
        want_writes = Counter(k for c, k in zip(expected, want_keys, strict=True) if sim.is_write(c["name"]))
        wrong = sorted((made_writes - want_writes).elements())
        missing = sorted((want_writes - made_writes).elements())
        last = (trajectory or [{}])[-1] if trajectory else {}
        exhausted = any(not c.get("run", True) for c in last.get("calls") or [])
        final = parse_tool_calls(output or "", item["tools"])
        answered = not exhausted and not final.tool_calls and bool((final.content or "").strip())
        needed = item.get("expected_answer") or []
        answer_ok = answered and all(states_value(final.content or "", v) for v in needed)
        success = not diffs and not wrong and not missing and answer_ok
        return {"extracted": {"calls": [{"name": c.get("name"), "arguments": c.get("arguments")} for c in calls],
                              "answer": final.content},
                "gold": {"calls": expected, "state": item["expected_state"], "answer": needed},
                "score": float(success), "end_state": float(not diffs), "calls_precision": precision,
                "calls_recall": recall, "calls_f1": f1, "exact_sequence": float(made_keys == want_keys),
                "answer_ok": float(answer_ok), "state_diff": diffs[:5], "wrong_writes": wrong, "missing_writes": missing,
                "exhausted": exhausted, "unparseable": not calls and not answered}

    def metrics(self, items, verdicts):
        names = ("end_state", "calls_precision", "calls_recall", "calls_f1", "exact_sequence", "answer_ok")
        out = {"success": _mean([v["score"] for v in verdicts])}
        out.update({name: _mean([v.get(name, 0.0) for v in verdicts]) for name in names})
        return out
