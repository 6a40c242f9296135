"""Agent items: multi-step tool use against a simulated environment, scored on the end state and the calls.

An item (type ``agent``)::

    {"id", "type": "agent", "question": "..." | "messages": [...], "tools": [OpenAI tool objects],
     "env": {"state": {...}, "tools": {name: effect spec}},      # domainlm.evals.agent_env
     "expected_state": {...},                                    # a subset of the final state
     "expected_calls": [{"name", "arguments"}, ...],
     "expected_answer"?: [values the final answer must state],   # e.g. the balance a read tool returned
     "user"?: {slots, confirm, ...},                             # a simulated user (domainlm.evals.agent_env)
     "intent"?: "transfer",                                      # default: the first expected call's tool
     "max_steps"?: 5}

The loop is the server's (:mod:`domainlm.serve.agent`): the model answers, the calls
:func:`domainlm.parsing.parse_tool_calls` reads in its answer run, each result (or error) goes back as a
``tool`` message, until an answer with no call or ``max_steps`` rounds of tools; after the last round the
model is asked once more and calls it still makes are recorded as not run (``exhausted``). With a ``user``,
an answer with no call goes to the simulated user instead of ending the loop: a question for a slot gets
the slot, a confirmation question gets a yes (or a no), any other question "I don't understand", and an
answer that asks nothing ends the conversation (or the user hangs up after ``max_turns``). Here the tools
are the item's simulated environment instead of plugins, and every item's loop advances one step at a
time in batches (one ``chat`` call per step for all items still running), so a served model sees the
same concurrency as the other task types.

The prediction keeps the whole ``trajectory`` (each turn's raw output and its calls with their results),
and the scorer replays the calls that ran from the item's initial state: a stored prediction is re-scored
from what the model did, never from a final state written beside it.

Score (``success``, the task's main score) is 1 when the end state matches ``expected_state`` (a subset:
keys not named are not compared), no write call was made that ``expected_calls`` does not hold, every
expected write was made, the loop ended with an answer (not ``max_steps``, not a question the user hung up
on), that answer states each ``expected_answer`` value, no write was made without the user's confirmation
(items with a ``user``; with ``user.confirm`` a confirmation must also have been asked), and no argument
holds a value nobody gave. Beside it: ``end_state``, ``calls_precision`` / ``calls_recall`` / ``calls_f1``
(calls as multisets of name + normalised arguments, reads included), ``exact_sequence``, ``intent`` (the
first tool called is the item's intent), ``slot_precision`` / ``slot_recall`` (the arguments of the last
call of the last expected tool vs its expected arguments), ``asked_before_acting``, ``hallucination_rate``
(items with an invented argument value) and ``turns``. The user's replies and the tools' results are
recomputed from the model's outputs when scoring, never read from the stored trajectory.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from domainlm.evals.agent_env import AgentEnv, UserSpec, mentions, parse_env, parse_user, said, tool_schemas, user_reply
from domainlm.evals.density import request_flops
from domainlm.evals.normalize import normalize_text
from domainlm.evals.scorers import Scorer, normalize_value
from domainlm.evals.stats import FEW_ITEMS
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
    if "user" in item:
        parse_user(item["user"])
    if "intent" in item and item["intent"] not in offered:
        raise ValueError("intent: not one of the offered tools")


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
def _user_turn(user: UserSpec, text: str, replies_so_far: int) -> dict:
    """The simulated user's reply, or ``hung_up`` once it has answered ``turn_limit`` times: one rule for
    the loop and for the scorer's replay."""
    reply = user_reply(user, text)
    if reply["kind"] != "end" and replies_so_far >= user.turn_limit:
        return {"kind": "hung_up", "content": None, "slots": [], "accept": None}
    return reply


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
        self.user: UserSpec | None = parse_user(item["user"]) if "user" in item else None
        self.user_turns = 0
        self.hung_up = False

    def take(self, text: str) -> None:
        """The model's answer for the current conversation: run its calls, hand its question to the
        simulated user, or finish."""
        parsed = parse_tool_calls(text or "", self.item["tools"])
        turn: dict[str, Any] = {"output": text, "calls": []}
        self.trajectory.append(turn)
        if not parsed.tool_calls:
            if self.user is None:
                self.done = True
                return
            reply = _user_turn(self.user, parsed.content or "", self.user_turns)
            turn["user"] = reply
            if reply["kind"] in ("end", "hung_up"):
                self.hung_up = reply["kind"] == "hung_up"
                self.done = True
                return
            self.user_turns += 1
            self.conversation.append({"role": "assistant", "content": parsed.content or ""})
            self.conversation.append({"role": "user", "content": reply["content"]})
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
                "user_turns": self.user_turns, "hung_up": self.hung_up,
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


def _leaves(value: Any, where: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{where}.{i}")]
    return [(where, value)]


def _invented(name: str, args: Any, heard: list[str], user: UserSpec | None, schemas: dict[str, dict]) -> list[str]:
    """Argument values nobody gave: not stated in what the model had heard before the call (the item's
    opening, the user's replies, the tools' results) and not the value of a slot the user had stated.
    An argument the schema closes with ``enum`` is a choice among the tool's own values, never invented."""
    if not isinstance(args, dict):
        return []
    props = (schemas.get(name) or {}).get("properties") or {}
    closed = {k for k, v in props.items() if isinstance(v, dict) and ("enum" in v or "const" in v)}
    granted = [slot.value for slot in (user.slots.values() if user else []) if any(said(slot, t) for t in heard)]
    out = []
    for key, value in args.items():
        if key in closed:
            continue
        for where, leaf in _leaves(value, key):
            if leaf is None or isinstance(leaf, bool) or leaf == "":
                continue
            if any(mentions(t, leaf) for t in heard) or any(_same(g, leaf) for g in granted):
                continue
            out.append(f"{name}.{where}={json.dumps(leaf, ensure_ascii=False)}")
    return out


def follow(item: dict, trajectory: list[dict] | None) -> dict:
    """Replay a trajectory against its item: the calls that ran, in order, in a fresh environment, and the
    simulated user's replies recomputed from the model's outputs; on the way, what the model had heard at
    each call (for invented values) and whether the user's last word was a yes (for writes).

    Returns ``{"env", "calls", "violations", "invented", "asked", "user_turns", "ending"}``; ``ending`` is
    the kind of the user's last reply (None without a user)."""
    user = parse_user(item["user"]) if item.get("user") else None
    sim = AgentEnv(item["env"], item["tools"])
    schemas = tool_schemas(item["tools"])
    opening = conversation_of(item)
    heard = [m.get("content") or "" for m in opening if m.get("role") in ("system", "user", "tool")]
    calls: list[dict] = []
    violations: list[str] = []
    invented: list[str] = []
    licensed = asked = False
    if user is not None and len(opening) >= 2 and [m.get("role") for m in opening[-2:]] == ["assistant", "user"]:
        # An item that starts mid-conversation, right after the confirmation question was answered.
        before = user_reply(user, opening[-2].get("content") or "")
        asked = before["kind"] == "confirm"
        licensed = asked and bool(before["accept"])
    user_turns = 0
    ending = None
    for index, turn in enumerate(trajectory or [], start=1):
        if turn.get("calls"):
            for call in turn["calls"]:
                if not call.get("run", True):
                    continue
                name, args = call.get("name", ""), decode_arguments(call.get("arguments"))
                invented += [f"turn {index}: {what}" for what in _invented(name, args, heard, user, schemas)]
                # A write needs the user's yes as their last word: a yes to an earlier question, then a
                # changed amount, confirms nothing.
                if user is not None and sim.is_write(name) and not licensed:
                    violations.append(f"turn {index}: {name} called without the user's confirmation")
                outcome = sim.call(name, args)
                heard.append(json.dumps(outcome["result"] if outcome["ok"] else {"error": outcome["error"]},
                                        ensure_ascii=False))
                calls.append(call)
            continue
        if user is None:
            continue
        reply = _user_turn(user, parse_tool_calls(turn.get("output") or "", item["tools"]).content or "", user_turns)
        ending = reply["kind"]
        if ending in ("end", "hung_up"):
            break
        user_turns += 1
        heard.append(reply["content"])
        asked = asked or ending == "confirm"
        licensed = ending == "confirm" and bool(reply["accept"])
    return {"env": sim, "calls": calls, "violations": violations, "invented": invented, "asked": asked,
            "user_turns": user_turns, "ending": ending}


def _slots(expected: list[dict], calls: list[dict]) -> tuple[float | None, float | None, list[str]]:
    """Slot precision and recall: the last call of the last expected tool vs that expected call's arguments
    (None, None when nothing is expected: a cancelled flow)."""
    if not expected:
        return None, None, []
    target = expected[-1]
    made = [c for c in calls if c.get("name") == target["name"]]
    if not made:
        return 0.0, 0.0, [f"{target['name']} never called"]
    want = target.get("arguments") or {}
    got = decode_arguments(made[-1].get("arguments"))
    got = got if isinstance(got, dict) else {}
    errors = [f"{k} missing (expected {want[k]!r})" for k in want if k not in got]
    errors += [f"{k}={got[k]!r} (expected {want[k]!r})" for k in want if k in got and not _same(want[k], got[k])]
    errors += [f"{k}={got[k]!r} not expected" for k in got if k not in want]
    matched = sum(1 for k in want if k in got and _same(want[k], got[k]))
    precision = matched / len(got) if got else float(not want)
    recall = matched / len(want) if want else float(not got)
    return precision, recall, errors


# The metrics beside success: (name in results, verdict field); None in a verdict means "not applicable".
_RATES = (("intent", "intent_ok"), ("slot_precision", "slot_precision"), ("slot_recall", "slot_recall"),
          ("asked_before_acting", "asked_before_acting"))


class AgentScorer(Scorer):
    type = "agent"
    credit_fields = ("end_state", "calls_precision", "calls_recall", "calls_f1", "exact_sequence", "answer_ok",
                     "intent_ok", "slot_precision", "slot_recall", "asked_before_acting")

    def score(self, item: dict, output: str, trajectory: list[dict] | None = None) -> dict:
        run = follow(item, trajectory)
        calls, sim = run["calls"], run["env"]
        user = parse_user(item["user"]) if item.get("user") else None
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
        # Shown as the call was written (the keys above are normalised: "card_last4" reads "cardlast4").
        shown = {k: f"{c.get('name')} {json.dumps(c.get('arguments'), ensure_ascii=False)}"
                 for c, k in [*zip(expected, want_keys, strict=True), *zip(calls, made_keys, strict=True)]}
        wrong = [shown[k] for k in sorted((made_writes - want_writes).elements())]
        missing = [shown[k] for k in sorted((want_writes - made_writes).elements())]
        last = (trajectory or [{}])[-1] if trajectory else {}
        exhausted = any(not c.get("run", True) for c in last.get("calls") or [])
        final = parse_tool_calls(output or "", item["tools"])
        # With a user, the last output must be one the user took as an answer, not a question they hung up on.
        answered = (not exhausted and not final.tool_calls and bool((final.content or "").strip())
                    and run["ending"] in (None, "end"))
        needed = item.get("expected_answer") or []
        answer_ok = answered and all(states_value(final.content or "", v) for v in needed)
        intent = item.get("intent") or (expected[0]["name"] if expected else None)
        first = calls[0].get("name") if calls else None
        slot_p, slot_r, slot_errors = _slots(expected, calls)
        must_ask = user is not None and user.confirm is not None
        wrote = any(sim.is_write(c.get("name", "")) for c in calls)
        asked_ok = not run["violations"] and (run["asked"] or not must_ask)
        asked_before = float(asked_ok) if user is not None and (must_ask or wrote) else None
        success = not diffs and not wrong and not missing and answer_ok and asked_ok and not run["invented"]
        return {"extracted": {"calls": [{"name": c.get("name"), "arguments": c.get("arguments")} for c in calls],
                              "answer": final.content},
                "gold": {"calls": expected, "state": item["expected_state"], "answer": needed},
                "score": float(success), "end_state": float(not diffs), "calls_precision": precision,
                "calls_recall": recall, "calls_f1": f1, "exact_sequence": float(made_keys == want_keys),
                "answer_ok": float(answer_ok), "state_diff": diffs[:5], "wrong_writes": wrong, "missing_writes": missing,
                "exhausted": exhausted, "unparseable": not calls and not answered,
                "intent_ok": None if intent is None else float(first == intent), "intent_expected": intent,
                "intent_called": first, "slot_precision": slot_p, "slot_recall": slot_r, "slot_errors": slot_errors,
                "asked_before_acting": asked_before, "asked_confirmation": run["asked"],
                "confirm_violations": run["violations"], "hallucinated_slots": run["invented"],
                "turns": len(trajectory or []), "user_turns": run["user_turns"], "hung_up": run["ending"] == "hung_up"}

    def void(self, verdict: dict, reason: str) -> dict:
        voided = super().void(verdict, reason)
        # "Not applicable" stays so: a cancelled flow has no slots to score, degenerate or not.
        return {**voided, **{k: None for k in self.credit_fields if k in verdict and verdict[k] is None}}

    def metrics(self, items, verdicts):
        names = ("end_state", "calls_precision", "calls_recall", "calls_f1", "exact_sequence", "answer_ok")
        out = {"success": _mean([v["score"] for v in verdicts])}
        out.update({name: _mean([v.get(name, 0.0) for v in verdicts]) for name in names})
        for name, field in _RATES:  # over the items each one applies to; absent when it applies to none
            values = [v[field] for v in verdicts if v.get(field) is not None]
            if values:
                out[name] = _mean(values)
        out["hallucination_rate"] = _mean([float(bool(v.get("hallucinated_slots"))) for v in verdicts])
        out["turns"] = _mean([float(v.get("turns", 0)) for v in verdicts])
        return out

    def explain(self, items: list[dict], verdicts: list[dict]) -> list[dict]:
        """The task's metrics for a report, each with how many items it stands on, whether that is enough
        (``FEW_ITEMS``), and real items beside the number: up to two that fail it and one that passes."""
        metrics = self.metrics(items, verdicts)
        rows = []
        for name in ("success", *(n for n, _ in _RATES), "hallucination_rate", "turns"):
            if name not in metrics:
                continue
            field = dict(_RATES).get(name)
            applies = [(i, v) for i, v in zip(items, verdicts, strict=True) if field is None or v.get(field) is not None]
            failing = [(i["id"], why) for i, v in applies if (why := _failure(name, v))]
            passing = [i["id"] for i, v in applies if not _failure(name, v)]
            if name == "turns":
                ranked = sorted(applies, key=lambda p: -p[1].get("turns", 0))
                examples = [f"{i['id']}: {v.get('turns', 0)} model turns, {v.get('user_turns', 0)} user replies"
                            + (" (the user hung up)" if v.get("hung_up") else "") for i, v in ranked[:1] + ranked[-1:]]
            else:
                examples = [f"✗ {item_id}: {why}" for item_id, why in failing[:2]] + [f"✓ {p}" for p in passing[:1]]
            n = len(applies)
            rows.append({"metric": name, "value": round(metrics[name], 6), "n": n, "trusted": n >= FEW_ITEMS,
                         "note": "" if n >= FEW_ITEMS else f"only {n} items (< {FEW_ITEMS}): too few to trust",
                         "examples": examples})
        return rows


def _failure(metric: str, v: dict) -> str:
    """Why a verdict fails ``metric`` in a few words, or "" when it passes."""
    if metric == "success":
        if v.get("score"):
            return ""
        reasons = [*(v.get("state_diff") or [])[:1], *(f"wrong write {w}" for w in (v.get("wrong_writes") or [])[:1]),
                   *(f"missing write {w}" for w in (v.get("missing_writes") or [])[:1]),
                   *(v.get("confirm_violations") or [])[:1], *(f"invented {h}" for h in (v.get("hallucinated_slots") or [])[:1])]
        if v.get("degenerate"):
            reasons.insert(0, f"degenerate output ({v['degenerate']})")
        if not v.get("answer_ok"):
            reasons.append("the user hung up" if v.get("hung_up") else "no final answer stating what was asked")
        return "; ".join(reasons)[:200] or "failed"
    if metric == "intent":
        return "" if v.get("intent_ok") else f"first call {v.get('intent_called') or 'none'}, intent {v.get('intent_expected')}"
    if metric in ("slot_precision", "slot_recall"):
        return "" if v.get(metric) == 1.0 else "; ".join(v.get("slot_errors") or [])[:200] or "wrong slots"
    if metric == "asked_before_acting":
        if v.get("asked_before_acting"):
            return ""
        return (v.get("confirm_violations") or ["never asked the user to confirm"])[0]
    if metric == "hallucination_rate":
        return "; ".join(v.get("hallucinated_slots") or [])[:200]
    return ""
