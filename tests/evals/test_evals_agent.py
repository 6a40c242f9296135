"""Agent items: the simulated environment and user, the bounded loop, and scores that tell right from wrong."""

import json
import re
from pathlib import Path

import pytest

from domainlm.evals.agent import AgentScorer, check_agent_item, run_agent_items, state_diff
from domainlm.evals.agent_env import AgentEnv, mentions, parse_env, parse_user, user_reply
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
    item = {**ITEM, "id": "read", "question": "B账户还有多少钱？", "expected_state": {"log": []},
            "expected_calls": [{"name": "get_balance", "arguments": {"account": "B"}}], "expected_answer": [50]}
    _, good = run([call("get_balance", account="B"), "B账户余额为50.00元"], item)
    _, idle = run(["您的余额充足。"], item)
    assert good["score"] == 1.0 and idle["score"] == 0.0 and idle["end_state"] == 1.0


def test_tiny_model_runs_through_the_loop(tmp_path):
    from domainlm.models import load_model
    from domainlm.models.testing import make_tiny_model

    model = load_model(make_tiny_model(tmp_path / "m"))
    try:
        items = [ITEM, {**ITEM, "id": "t2", "question": "查一下B账户余额"}, DIALOGUE]
        records = run_agent_items(model, items, max_new_tokens=12)
    finally:
        model.close()
    for item in items:
        record = records[item["id"]]
        # bounded: max_steps rounds of tools, the user's replies, and the last answer
        bound = item["max_steps"] + (parse_user(item["user"]).turn_limit if "user" in item else 0) + 1
        assert isinstance(record["output"], str) and 1 <= len(record["trajectory"]) <= bound
        verdict = AgentScorer().score(item, record["output"], trajectory=record["trajectory"])
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


# --------------------------------------------------------------------------------------- simulated user
USER = {"slots": {"to": {"value": "张三", "ask": ["收款人", "转给谁"]},
                  "amount": {"value": 300, "ask": ["金额", "多少钱"], "say": "转300元"},
                  "source": {"value": "A", "ask": ["哪个账户", "付款账户"], "say": "用A账户"}},
        "confirm": {"cues": ["确认"], "reply": "对，转吧"}}
DIALOGUE = {**ITEM, "id": "u1", "question": "我要给张三转账", "user": USER, "expected_answer": [700]}
CANCEL = {**DIALOGUE, "id": "u2", "user": {**USER, "confirm": {"cues": ["确认"], "accept": False, "reply": "算了，先不转了"}},
          "expected_state": {"accounts": {"A": {"balance": 1000}}, "log": []}, "expected_calls": [], "expected_answer": []}
ASK_BOTH = "请问转账金额是多少？从哪个账户付款？"
CONFIRM = "请确认：从A账户向张三转账300元，确认吗？"
TRANSFER = call("transfer", source="A", to="张三", amount=300)


class Dialogue(ScriptedModel):
    """Answers the i-th model turn of the whole conversation with ``script[i]`` (turns counted from every
    assistant message after the item's opening, so the simulated user's replies do not restart the count)."""

    def __init__(self, script: list[str], opening: int = 0):
        super().__init__(script)
        self.opening = opening

    def chat(self, conversations, **kw):
        out = []
        for conv in conversations:
            self.seen.append(conv)
            turn = sum(1 for m in conv if m["role"] == "assistant") - self.opening
            out.append(self.script[min(turn, len(self.script) - 1)])
        return out


def talk(script: list[str], item: dict = DIALOGUE) -> tuple[dict, dict]:
    model = Dialogue(script, sum(1 for m in item.get("messages", []) if m["role"] == "assistant"))
    record = run_agent_items(model, [item])[item["id"]]
    return record, AgentScorer().score(item, record["output"], trajectory=record["trajectory"])


def test_user_answers_the_slots_asked_confirms_and_ends_on_a_statement():
    user = parse_user(USER)
    assert user_reply(user, ASK_BOTH) == {"kind": "slots", "content": "转300元，用A账户", "slots": ["amount", "source"],
                                          "accept": None}
    assert user_reply(user, "轉帳金額是多少？")["slots"] == ["amount"]  # traditional characters fold
    assert user_reply(user, CONFIRM)["kind"] == "confirm"
    # A "confirmation" that does not state every value is not one (the amount is missing here); it asks
    # nothing the user can answer either.
    assert user_reply(user, "请确认：从A账户向张三转账，确认吗？")["kind"] == "unclear"
    assert user_reply(user, "请确认：从A账户向张三转账3000元，确认吗？")["kind"] == "unclear"  # 3000 is not 300
    assert user_reply(user, "今天天气怎么样？") == {"kind": "unclear", "content": "抱歉，我没听明白您的意思。", "slots": [],
                                                  "accept": None}
    assert user_reply(user, "已向张三转账300元。")["kind"] == "end"
    both = parse_user({"slots": {"card": {"value": "0042", "ask": [["卡", "后四位"]]}}})
    assert user_reply(both, "请告诉我卡号后四位")["slots"] == ["card"]
    assert user_reply(both, "请问是哪张卡？")["kind"] == "unclear"  # a list cue needs all its words


def test_mentions_reads_numbers_as_numbers_and_digit_strings_whole():
    assert mentions("转账８，０００.５０元", 8000.5) and mentions("CNY 1,000", 1000) and not mentions("3000元", 300)
    assert mentions("尾号0042的卡", "0042") and not mentions("尾号10042", "0042") and mentions("卡号 6222 0200", "62220200")
    assert mentions("Amy Chen", "amy chen") and not mentions("anything", True) and not mentions("x", "")


def test_bad_user_profiles_are_one_clear_error():
    with pytest.raises(ValueError, match=r"user: slots.amount.say: does not state the value 300"):
        check_agent_item({**DIALOGUE, "user": {**USER, "slots": {**USER["slots"], "amount": {
            "value": 300, "ask": ["金额"], "say": "三百"}}}})
    with pytest.raises(ValueError, match=r"user: confirm.values: 'fee' is not one of the slots"):
        check_agent_item({**DIALOGUE, "user": {**USER, "confirm": {"cues": ["确认"], "values": ["fee"], "reply": "好"}}})
    with pytest.raises(ValueError, match=r"user.slots.to.ask"):
        check_agent_item({**DIALOGUE, "user": {"slots": {"to": {"value": "张三", "ask": []}}}})
    with pytest.raises(ValueError, match="intent: not one of the offered tools"):
        check_agent_item({**DIALOGUE, "intent": "wire"})
    check_agent_item(DIALOGUE)
    check_agent_item(CANCEL)


def test_the_conversation_carries_the_users_replies():
    model = Dialogue([ASK_BOTH, CONFIRM, TRANSFER, "已转账，A账户余额700元。"])
    record = run_agent_items(model, [DIALOGUE])["u1"]
    last = model.seen[-1]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user", "assistant", "tool"]
    assert last[2] == {"role": "user", "content": "转300元，用A账户"} and last[4]["content"] == "对，转吧"
    assert [t.get("user", {}).get("kind") for t in record["trajectory"]] == ["slots", "confirm", None, "end"]
    assert record["user_turns"] == 2 and not record["hung_up"]


def test_right_unconfirmed_invented_and_given_up_trajectories_score_differently():
    _, right = talk([ASK_BOTH, CONFIRM, TRANSFER, "已转账，A账户余额700元。"])
    _, rushed = talk([ASK_BOTH, TRANSFER, "已转账，A账户余额700元。"])  # acts without asking to confirm
    loose = {**DIALOGUE, "id": "u3", "user": {**USER, "confirm": {"cues": ["确认"], "values": ["to", "source"], "reply": "对"}}}
    _, invented = talk(["请问从哪个账户付款？", "请确认：从A账户向张三转账，确认吗？",
                        call("transfer", source="A", to="张三", amount=500), "已转账，A账户余额500元。"], loose)
    _, gave_up = talk(["抱歉，我无法办理转账。"])
    assert right["score"] == 1.0 and right["asked_before_acting"] == 1.0 and right["intent_ok"] == 1.0
    assert (right["slot_precision"], right["slot_recall"], right["turns"], right["user_turns"]) == (1.0, 1.0, 4, 2)
    assert right["hallucinated_slots"] == [] and right["confirm_violations"] == []
    # the end state is right, but the transfer was made before the user said yes
    assert rushed["end_state"] == 1.0 and rushed["score"] == 0.0 and rushed["asked_before_acting"] == 0.0
    assert rushed["confirm_violations"] == ["turn 2: transfer called without the user's confirmation"]
    # confirmed, but with an amount the user never said
    assert invented["score"] == 0.0 and invented["asked_before_acting"] == 1.0
    assert invented["hallucinated_slots"] == ["turn 3: transfer.amount=500"]
    assert invented["slot_precision"] == pytest.approx(2 / 3) and invented["slot_recall"] == pytest.approx(2 / 3)
    assert gave_up["score"] == 0.0 and gave_up["intent_ok"] == 0.0 and gave_up["turns"] == 1
    assert (gave_up["slot_precision"], gave_up["slot_recall"], gave_up["asked_before_acting"]) == (0.0, 0.0, 0.0)
    keys = [(v["score"], v["end_state"], v["asked_before_acting"], bool(v["hallucinated_slots"]), v["slot_recall"])
            for v in (right, rushed, invented, gave_up)]
    assert len(set(keys)) == 4


def test_a_right_value_before_the_user_said_it_is_still_invented():
    _, guessed = talk(["请问从哪个账户付款？", TRANSFER, "已转账，A账户余额700元。"])
    assert guessed["end_state"] == 1.0 and guessed["score"] == 0.0
    assert guessed["hallucinated_slots"] == ["turn 2: transfer.amount=300"]


def test_an_item_may_start_after_the_confirmation():
    opened = {k: v for k, v in DIALOGUE.items() if k != "question"} | {"id": "u4", "messages": [
        {"role": "user", "content": "用A账户给张三转300元"}, {"role": "assistant", "content": CONFIRM},
        {"role": "user", "content": "对，转吧"}]}
    check_agent_item(opened)
    _, verdict = talk([TRANSFER, "已转账，A账户余额700元。"], opened)
    assert verdict["score"] == 1.0 and verdict["asked_before_acting"] == 1.0 and verdict["user_turns"] == 0
    unconfirmed = {**opened, "messages": [*opened["messages"][:1], {"role": "assistant", "content": ASK_BOTH},
                                          {"role": "user", "content": "转300元，用A账户"}]}
    _, rushed = talk([TRANSFER, "已转账，A账户余额700元。"], unconfirmed)
    assert rushed["score"] == 0.0 and rushed["confirm_violations"]


def test_cancellation_needs_the_question_and_no_write():
    _, right = talk([ASK_BOTH, CONFIRM, "好的，已取消，没有转账。"], CANCEL)
    _, stubborn = talk([ASK_BOTH, CONFIRM, TRANSFER, "已转账。"], CANCEL)
    _, silent = talk(["好的。"], CANCEL)
    assert right["score"] == 1.0 and right["asked_confirmation"] and right["slot_recall"] is None
    assert right["intent_ok"] is None  # nothing expected to be called: no intent to read
    assert stubborn["score"] == 0.0 and stubborn["wrong_writes"] and stubborn["confirm_violations"]
    assert silent["end_state"] == 1.0 and silent["score"] == 0.0 and silent["asked_before_acting"] == 0.0


def test_the_user_hangs_up_on_questions_it_cannot_answer():
    record, verdict = talk(["您好，还有什么可以帮您？"])
    assert record["hung_up"] and record["user_turns"] == parse_user(USER).turn_limit
    assert all(t["user"]["content"] == "抱歉，我没听明白您的意思。" for t in record["trajectory"][:-1])
    assert record["trajectory"][-1]["user"]["kind"] == "hung_up"
    assert verdict["score"] == 0.0 and verdict["hung_up"] and verdict["answer_ok"] == 0.0


def test_stored_user_replies_are_not_trusted():
    record, verdict = talk([ASK_BOTH, TRANSFER, "已转账，A账户余额700元。"])
    forged = json.loads(json.dumps(record["trajectory"]))
    forged[0]["user"] = {"kind": "confirm", "content": "确认", "slots": [], "accept": True}
    again = AgentScorer().score(DIALOGUE, record["output"], trajectory=forged)
    assert again["score"] == verdict["score"] == 0.0 and again["confirm_violations"] == verdict["confirm_violations"]


def test_metrics_and_explain_show_numbers_with_examples_and_flag_few_items():
    scorer = AgentScorer()
    pairs = [(DIALOGUE, [ASK_BOTH, CONFIRM, TRANSFER, "已转账，A账户余额700元。"]),
             (DIALOGUE, [ASK_BOTH, TRANSFER, "已转账，A账户余额700元。"]), (CANCEL, [ASK_BOTH, CONFIRM, "好的，已取消。"])]
    items, verdicts = [], []
    for n, (item, script) in enumerate(pairs):
        item = {**item, "id": f"x{n}"}
        _, verdict = talk(script, item)
        items.append(item)
        verdicts.append(verdict)
    metrics = scorer.metrics(items, verdicts)
    assert metrics["success"] == pytest.approx(2 / 3) and metrics["asked_before_acting"] == pytest.approx(2 / 3)
    assert metrics["slot_recall"] == 1.0 and metrics["intent"] == 1.0  # over the two items that call a tool
    assert metrics["hallucination_rate"] == 0.0 and metrics["turns"] == pytest.approx(10 / 3)
    rows = {r["metric"]: r for r in scorer.explain(items, verdicts)}
    assert rows["slot_recall"]["n"] == 2 and rows["success"]["n"] == 3
    assert not rows["success"]["trusted"] and "too few to trust" in rows["success"]["note"]
    assert rows["asked_before_acting"]["examples"] == ["✗ x1: turn 2: transfer called without the user's confirmation",
                                                      "✓ x0"]
    many = scorer.explain(items * 10, verdicts * 10)
    assert all(r["trusted"] and not r["note"] for r in many if r["n"] >= 30)


def test_default_question_cues_on_real_chinese_prose():
    """CMRC 2018's questions must read as questions and its passages' sentences as statements: the user
    must not answer a model's statement, nor take its question for a final answer."""
    path = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"
    if not path.is_file():
        pytest.skip(f"{path} is not beside this checkout")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    user = parse_user({"slots": {}})
    questions = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    sentences = [s for a in data for p in a["paragraphs"] for s in re.split(r"(?<=[。！])", p["context"]) if len(s) > 5]
    asked = sum(user_reply(user, q)["kind"] != "end" for q in questions) / len(questions)
    stated = sum(user_reply(user, s)["kind"] == "end" for s in sentences) / len(sentences)
    assert len(questions) > 3000 and asked >= 0.99 and stated >= 0.99


def test_results_and_report_show_the_new_metrics_with_examples_and_flag_few_items(tmp_path):
    # Needs AgentScorer.explain wired into aggregate.summarize (tasks[task]["explained"]) and report.py.
    from domainlm.evals import score
    from domainlm.evals.report import build_report

    scripts = {"r0": [ASK_BOTH, CONFIRM, TRANSFER, "已转账，A账户余额700元。"], "r1": [ASK_BOTH, TRANSFER, "已转账，余额700元。"],
               "r2": ["抱歉，我无法办理转账。"]}
    items = [{k: v for k, v in DIALOGUE.items() if k != "task"} | {"id": i} for i in scripts]
    folder = _suite(tmp_path, items)
    stored = []
    for item in items:
        record, _ = talk(scripts[item["id"]], item)
        stored.append({"id": item["id"], "output": record["output"], "trajectory": record["trajectory"]})
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stored), encoding="utf-8")
    scores = score(None, [folder], predictions=preds)
    task = scores.results["tasks"]["agent"]
    assert task["metrics"]["success"] == pytest.approx(1 / 3)
    assert task["metrics"]["asked_before_acting"] == pytest.approx(1 / 3) and task["metrics"]["intent"] == pytest.approx(2 / 3)
    rows = {r["metric"]: r for r in task["explained"]}
    assert rows["asked_before_acting"]["examples"][0] == "✗ r1: turn 2: transfer called without the user's confirmation"
    assert rows["intent"]["examples"][0] == "✗ r2: first call none, intent transfer"
    assert all(not r["trusted"] for r in rows.values())
    page = build_report(scores.results)
    assert "Metrics with examples: agent" in page and "Too few items to trust" in page and "r1: turn 2" in page
