"""Agent items: the simulated environment, the bounded loop, and scores that tell right from wrong."""

import json

import pytest

from domainlm.evals.agent import AgentScorer, check_agent_item, run_agent_items, state_diff
from domainlm.evals.agent_env import AgentEnv, parse_env
from domainlm.models.base import LanguageModel

TOOLS = [
    {"type": "function", "function": {"name": "get_balance", "parameters": {
        "type": "object", "properties": {"account": {"type": "string"}}, "required": ["account"]}}},
    {"type": "function", "function": {"name": "transfer", "parameters": {
        "type": "object", "properties": {"source": {"type": "string"}, "to": {"type": "string"},
                                         "amount": {"type": "number"}},
        "required": ["source", "to", "amount"]}}},
]
ENV = {
    "state": {"accounts": {"A": {"balance": 1000}, "B": {"balance": 50}}, "log": []},
    "tools": {
        "get_balance": {"require": [{"exists": "accounts.{account}", "error": "no account {account}"}],
                        "returns": {"balance": "=accounts.{account}.balance"}},
        "transfer": {
            "require": [{"exists": "accounts.{source}", "error": "no account {source}"},
                        {"check": "=accounts.{source}.balance", "gte": "{amount}", "error": "余额不足"}],
            "effects": [{"sub": "accounts.{source}.balance", "value": "{amount}"},
                        {"append": "log", "value": {"to": "{to}", "amount": "{amount}"}}],
            "returns": {"status": "ok", "balance": "=accounts.{source}.balance"}},
    },
}
ITEM = {
    "id": "t1", "type": "agent", "task": "agent", "question": "从A账户给张三转300元，然后告诉我余额", "tools": TOOLS,
    "env": ENV, "expected_state": {"accounts": {"A": {"balance": 700}, "B": {"balance": 50}},
                                   "log": [{"to": "张三", "amount": 300}]},
    "expected_calls": [{"name": "transfer", "arguments": {"source": "A", "to": "张三", "amount": 300}}],
    "expected_answer": [700], "max_steps": 3,
}


def call(name, **args):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "\n</tool_call>"


class ScriptedModel(LanguageModel):
    """Answers the i-th model turn of an item with ``script[i]`` (the turn is counted from the assistant
    messages after the last user message); a step past the script answers the last entry again."""

    def __init__(self, script: list[str]):
        self.script = script
        self.info = {"spec": "scripted"}
        self.seen: list[list[dict]] = []

    def chat(self, conversations, *, max_new_tokens=128, temperature=0.0, tools=None, response_format=None, seed=0):
        out = []
        for conv in conversations:
            self.seen.append(conv)
            last_user = max(i for i, m in enumerate(conv) if m["role"] == "user")
            turn = sum(1 for m in conv[last_user:] if m["role"] == "assistant")
            out.append(self.script[min(turn, len(self.script) - 1)])
        return out


def run(script: list[str], item: dict = ITEM) -> tuple[dict, dict]:
    record = run_agent_items(ScriptedModel(script), [item])[item["id"]]
    return record, AgentScorer().score(item, record["output"], trajectory=record["trajectory"])


# --------------------------------------------------------------------------------------- environment
def test_env_runs_tools_and_reports_precondition_errors():
    env = AgentEnv(ENV, TOOLS)
    assert env.call("get_balance", {"account": "A"}) == {"ok": True, "result": {"balance": 1000}}
    short = env.call("transfer", {"source": "B", "to": "x", "amount": 60})
    assert short == {"ok": False, "error": "余额不足", "kind": "precondition"}
    assert env.call("transfer", '{"source": "C", "to": "x", "amount": 1}')["error"] == "no account C"
    assert env.state == ENV["state"]  # errors change nothing
    ok = env.call("transfer", {"source": "A", "to": "x", "amount": 0.1})
    assert ok == {"ok": True, "result": {"status": "ok", "balance": 999.9}}
    assert env.state["log"] == [{"to": "x", "amount": 0.1}] and ENV["state"]["log"] == []  # the item is not mutated
    assert env.call("transfer", {"source": "A", "to": "x", "amount": "5"})["kind"] == "invalid_arguments"
    assert env.call("delete_all", {})["kind"] == "unknown_tool"
    assert env.call("transfer", "not json")["kind"] == "invalid_arguments"
    assert env.is_write("transfer") and not env.is_write("get_balance")


def test_env_effects_apply_all_or_none():
    spec = {"state": {"a": 1, "log": []}, "tools": {"bad": {"effects": [
        {"append": "log", "value": "x"}, {"add": "nowhere.deep", "value": 1}]}}}
    env = AgentEnv(spec)
    outcome = env.call("bad", {})
    assert outcome["kind"] == "env_error" and "nowhere" in outcome["error"]
    assert env.state == {"a": 1, "log": []}


def test_env_spec_errors_name_the_key():
    with pytest.raises(ValueError, match=r"env\.tools\.t\.require\.0"):
        parse_env({"state": {}, "tools": {"t": {"require": [{"check": "=a", "error": "e"}]}}})
    with pytest.raises(ValueError, match="expected_calls\\[0\\].name"):
        check_agent_item({**ITEM, "expected_calls": [{"name": "nope", "arguments": {}}]})
    with pytest.raises(ValueError, match="env.tools: the offered tool 'transfer'"):
        check_agent_item({**ITEM, "env": {"state": {}, "tools": {"get_balance": {}}}})
    check_agent_item(ITEM)


def test_state_diff_is_a_subset_match():
    assert state_diff({"a": {"b": 1}}, {"a": {"b": 1.0, "c": 2}, "d": 3}) == []
    assert state_diff({"log": []}, {"log": [1]}) == ["log: expected 0 entries, got 1"]
    assert state_diff({"a": "Ｘ"}, {"a": "x"}) == []  # width and case do not matter


# --------------------------------------------------------------------------------------- loop + score
def test_correct_trajectory_succeeds_and_is_recorded():
    record, verdict = run([call("transfer", source="A", to="张三", amount=300), "已转账300元，A账户余额为700.00元。"])
    assert verdict["score"] == 1.0 and verdict["end_state"] == 1.0 and verdict["calls_f1"] == 1.0
    assert verdict["exact_sequence"] == 1.0 and verdict["wrong_writes"] == [] and verdict["answer_ok"] == 1.0
    assert record["steps"] == 1 and not record["exhausted"]
    first = record["trajectory"][0]["calls"][0]
    assert first["run"] and first["result"] == {"status": "ok", "balance": 700}
    assert record["final_state"]["accounts"]["A"]["balance"] == 700


def test_tool_results_go_back_to_the_model():
    model = ScriptedModel([call("get_balance", account="Z"), "查不到"])
    run_agent_items(model, [ITEM])
    second = model.seen[1]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["arguments"] == {"account": "Z"}
    assert second[-1] == {"role": "tool", "tool_call_id": second[-2]["tool_calls"][0]["id"], "name": "get_balance",
                          "content": json.dumps({"error": "no account Z"}, ensure_ascii=False)}


@pytest.mark.parametrize("script, why", [
    ([call("transfer", source="B", to="张三", amount=30), "已转账，余额700元"], "wrong account"),
    ([call("transfer", source="A", to="张三", amount=300) + call("transfer", source="A", to="张三", amount=300),
      "已转账，余额400元"], "extra transfer"),
    (["好的，马上为您转账，余额700元。"], "stops early"),
])
def test_wrong_trajectories_score_differently(script, why):
    _, right = run([call("transfer", source="A", to="张三", amount=300), "余额700元"])
    _, wrong = run(script)
    assert right["score"] == 1.0
    assert wrong["score"] == 0.0, why
    assert wrong["end_state"] == 0.0, why
    assert wrong["calls_f1"] < 1.0 and wrong["exact_sequence"] == 0.0, why


def test_wrong_write_fails_even_when_it_was_refused():
    # An attempted transfer from B (refused: 余额不足) leaves the state right, but it is a wrong write.
    _, verdict = run([call("transfer", source="B", to="张三", amount=300), call("transfer", source="A", to="张三", amount=300),
                      "余额700元"])
    assert verdict["end_state"] == 1.0 and verdict["score"] == 0.0 and len(verdict["wrong_writes"]) == 1


def test_max_steps_ends_the_loop_and_never_succeeds():
    looping = call("transfer", source="A", to="张三", amount=300)
    item = {**ITEM, "id": "loop", "max_steps": 1}
    record, verdict = run([looping, looping, looping], item)
    assert record["exhausted"] and record["steps"] == 1
    assert record["trajectory"][-1]["calls"][0]["run"] is False
    assert verdict["end_state"] == 1.0 and verdict["score"] == 0.0  # the state is right, but no answer came


def test_read_item_needs_the_value_in_the_answer():
    item = {**ITEM, "id": "read", "expected_state": {"log": []},
            "expected_calls": [{"name": "get_balance", "arguments": {"account": "B"}}], "expected_answer": [50]}
    _, good = run([call("get_balance", account="B"), "B账户余额为50.00元"], item)
    _, idle = run(["您的余额充足。"], item)
    assert good["score"] == 1.0 and idle["score"] == 0.0 and idle["end_state"] == 1.0


def test_tiny_model_runs_through_the_loop(tmp_path):
    from domainlm.models import load_model
    from domainlm.models.testing import make_tiny_model

    model = load_model(make_tiny_model(tmp_path / "m"))
    try:
        records = run_agent_items(model, [ITEM, {**ITEM, "id": "t2", "question": "查一下B账户余额"}], max_new_tokens=12)
    finally:
        model.close()
    for record in records.values():
        assert isinstance(record["output"], str) and 1 <= len(record["trajectory"]) <= ITEM["max_steps"] + 1
        verdict = AgentScorer().score(ITEM, record["output"], trajectory=record["trajectory"])
        assert 0.0 <= verdict["score"] <= 1.0


# --------------------------------------------------------------------------------------- through `score`
# These need the agent type registered in scorers/tasks/runner/aggregate (see docs/evals.md, "Agent tasks").
def _suite(tmp_path, items):
    folder = tmp_path / "suite"
    folder.mkdir(parents=True)
    (folder / "agent.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    (folder / "suite.yaml").write_text("name: agent\nmax_new_tokens: 64\n", encoding="utf-8")
    return folder


def test_score_separates_right_wrong_and_empty_and_rescores_stored_predictions(tmp_path):
    from domainlm.evals import score

    items = [{k: v for k, v in ITEM.items() if k != "task"} | {"id": f"a{i}"} for i in range(3)]
    folder = _suite(tmp_path, items)

    class ByItem(ScriptedModel):  # a0 right, a1 transfers from the wrong account, a2 answers nothing
        def chat(self, conversations, **kw):
            return [self._one(c) for c in conversations]

        def _one(self, conv):
            return "余额700元" if any(m["role"] == "tool" for m in conv) else self.script[0]

    records = {}
    for item_id, first in [("a0", call("transfer", source="A", to="张三", amount=300)),
                           ("a1", call("transfer", source="B", to="张三", amount=30)), ("a2", "")]:
        scores = score(ByItem([first]), [_suite(tmp_path / item_id, [items[int(item_id[1])]])])
        records[item_id] = scores.records[0]
    assert records["a0"]["score"] == 1.0 and records["a0"]["trajectory"][0]["calls"][0]["name"] == "transfer"
    assert records["a1"]["score"] == 0.0 and records["a1"]["end_state"] == 0.0
    assert records["a2"]["score"] == 0.0 and records["a2"]["degenerate"] == "empty"
    # Stored predictions are re-scored from their trajectories (the calls are replayed, not trusted).
    preds = tmp_path / "p.jsonl"
    stored = [{**records["a0"], "id": "a0"}, {**records["a1"], "id": "a1"}, {**records["a2"], "id": "a2"}]
    preds.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stored), encoding="utf-8")
    again = score(None, [folder], predictions=preds)
    assert [r["score"] for r in again.records] == [1.0, 0.0, 0.0]
    assert again.results["tasks"]["agent"]["metrics"]["success"] == pytest.approx(1 / 3)


def test_a_bad_agent_item_is_one_clear_error(tmp_path):
    from domainlm.errors import DomainlmError
    from domainlm.evals import load_suite

    folder = _suite(tmp_path, [{**ITEM, "expected_calls": [{"name": "wire", "arguments": {}}]}])
    with pytest.raises(DomainlmError, match=r"agent\.jsonl:1: item 't1': expected_calls\[0\]\.name"):
        load_suite(folder)
