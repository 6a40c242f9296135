"""Mobile-banking flows: valid agent items whose expected calls, run in the environment, give the expected
state; a simulated customer who understands the assistant's asks and confirmations; sft rows the training
loader accepts; eval phrasings training never saw."""

import json
import random

import pytest

from domainlm.evals.agent import AgentScorer, check_agent_item, run_agent_items, state_diff
from domainlm.evals.agent_env import has_cue, parse_user, replay, user_reply
from domainlm.models.base import LanguageModel
from domainlm.sample import flows
from domainlm.sample.world import build_world
from domainlm.train.data import check_chat


@pytest.fixture(scope="module")
def world():
    return build_world(random.Random("3/world"), 40, 7)


@pytest.fixture(scope="module")
def built(world):
    return flows.build_flows(world, random.Random("3/flows"), 60, 40)


@pytest.fixture(scope="module")
def dialogues(world):
    """The eval items' whole conversations: build_flows draws the eval flows first from the same stream."""
    return flows._draw(world, random.Random("3/flows"), "eval", 40)


def _items(built):
    return built[f"{flows.SUITE_DIR}/{flows.TASK}.jsonl"]


def test_every_item_is_valid_and_self_consistent(built):
    items = _items(built)
    assert len(items) == 40 and {i["subcategory"] for i in items} == set(flows.FLOWS)
    assert {i["subcategory"] for i in items if i["cancel"]} == set(flows.WRITE_FLOWS)
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        check_agent_item(item)
        assert [m["role"] for m in item["messages"]] == ["system", "user"]  # the rest is the simulated user's
        sim, outcomes = replay(item["env"], item["tools"], item["expected_calls"])
        assert all(o["ok"] for o in outcomes), (item["id"], outcomes)
        assert state_diff(item["expected_state"], sim.state) == [], item["id"]
        # Doing nothing never passes: a write flow leaves the state wrong, a read flow lacks the value, a
        # cancelled flow never asked for the confirmation the customer declines.
        idle, _ = replay(item["env"], item["tools"], [])
        wrote = state_diff(item["expected_state"], idle.state) != []
        assert wrote or item["expected_answer"] or item["cancel"], item["id"]
        assert AgentScorer().score(item, "好的。", trajectory=[{"output": "好的。", "calls": []}])["score"] == 0.0
        assert (item["user"].get("confirm") is not None) == (item["subcategory"] in flows.WRITE_FLOWS)


def _turn_text(message: dict) -> str:
    """An assistant message as the model's raw output (Qwen's <tool_call> format, which parse_tool_calls reads)."""
    if not message.get("tool_calls"):
        return message["content"]
    return "".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
                                                ensure_ascii=False) + "\n</tool_call>" for c in message["tool_calls"])


class Replay(LanguageModel):
    """Says the i-th of ``turns`` at its i-th turn in the conversation."""

    def __init__(self, turns: list[str]):
        self.turns = turns
        self.info = {"spec": "replay"}

    def chat(self, conversations, **kw):
        return [self.turns[min(sum(1 for m in c if m["role"] == "assistant"), len(self.turns) - 1)] for c in conversations]


def _confirmation(messages: list[dict], replies: list[str]) -> int:
    """Index of the assistant's confirmation question: the turn the customer answers with one of ``replies``."""
    return next(i for i, m in enumerate(messages[:-1]) if m["role"] == "assistant" and messages[i + 1]["role"] == "user"
                and messages[i + 1]["content"] in replies)


def _play(item: dict, turns: list[str]) -> dict:
    record = run_agent_items(Replay(turns), [item])[item["id"]]
    return AgentScorer().score(item, record["output"], trajectory=record["trajectory"])


def test_the_assistants_own_dialogue_succeeds_and_acting_unconfirmed_does_not(built, dialogues):
    items = _items(built)
    assert [c["messages"][:2] for c in dialogues] == [i["messages"] for i in items]
    for item, conv in zip(items, dialogues, strict=True):
        turns = [_turn_text(m) for m in conv["messages"][2:] if m["role"] == "assistant"]
        verdict = _play(item, turns)
        assert verdict["score"] == 1.0, (item["id"], verdict)
        assert verdict["hallucinated_slots"] == [] and verdict["confirm_violations"] == []
        if item["subcategory"] in flows.WRITE_FLOWS and not item["cancel"]:
            # The same dialogue without its confirmation question: the state ends right, the verdict is a fail.
            confirm = _confirmation(conv["messages"], [item["user"]["confirm"]["reply"]])
            rushed = [_turn_text(m) for i, m in enumerate(conv["messages"][2:], start=2)
                      if m["role"] == "assistant" and i != confirm]
            unconfirmed = _play(item, rushed)
            assert unconfirmed["end_state"] == 1.0 and unconfirmed["score"] == 0.0, item["id"]
            assert unconfirmed["asked_before_acting"] == 0.0 and unconfirmed["confirm_violations"], item["id"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_customer_understands_the_assistants_asks_and_confirmations(lang):
    everything = {"card_last4": "0042", "from_last4": "1234", "payee_card": "6222020012345678", "amount": 500,
                  "payee_name": "吴芳" if lang == "zh" else "Zhang Min", "bill_type": "water"}
    for flow, slots in [("check_balance", ["card_last4"]), ("transfer", ["payee_name", "amount", "payee_card", "from_last4"]),
                        ("freeze_card", ["card_last4"]), ("pay_bill", ["bill_type", "from_last4"])]:
        values = {s: everything[s] for s in slots}
        says = {s: (flows.BILLS[v][0 if lang == "zh" else 1] if s == "bill_type" else str(v)) for s, v in values.items()}
        confirm = {"cues": flows.CONFIRM_CUES[lang], "reply": "ok"} if flow in flows.WRITE_FLOWS else None
        user = parse_user(flows._user(lang, values, says, confirm))
        for slot in slots:
            if slot in flows.ASK[lang]:
                assert user_reply(user, flows.ASK[lang][slot])["slots"] == [slot], (lang, flow, slot)
        if confirm:
            text = {"card_last4": "0042", "from_last4": "1234", "payee_card": "6222020012345678",
                    "amount": "500元" if lang == "zh" else "CNY 500", "payee_name": values.get("payee_name", ""),
                    "bill": says.get("bill_type", ""), "bill_amount": "88.00元"}
            assert user_reply(user, flows.CONFIRM[lang][flow].format(**text))["kind"] == "confirm", (lang, flow)
            assert user_reply(user, flows.DONE[lang].get(flow, "").format(**text, balance="1.00"))["kind"] == "end"


def test_sft_rows_load_and_hold_asks_confirmations_cancellations_and_tool_results(built):
    rows = built[flows.SFT_FILE]
    assert len(rows) == 60
    for row in rows:
        record = check_chat(json.loads(json.dumps(row, ensure_ascii=False)))
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant"
        writes = [m for m in row["messages"] if m.get("tool_calls")
                  and m["tool_calls"][0]["function"]["name"] in flows.WRITE_FLOWS]
        if row["flow"] in flows.WRITE_FLOWS:
            confirm = _confirmation(row["messages"], (flows.NO if row["cancel"] else flows.YES)[row["lang"]]["train"])
            assert has_cue(row["messages"][confirm]["content"], flows.CONFIRM_CUES[row["lang"]]), row["id"]
            assert not writes if row["cancel"] else row["messages"].index(writes[0]) > confirm
        else:
            assert "tool" in roles and not writes
    # some ask for a missing slot before acting, some are cancelled, and some transfers are refused by the tool
    assert any(m["content"] in flows.ASK[r["lang"]].values() for r in rows for m in r["messages"] if m["role"] == "assistant")
    assert {r["flow"] for r in rows if r["cancel"]} == set(flows.WRITE_FLOWS)
    assert any("error" in m["content"] for r in rows for m in r["messages"] if m["role"] == "tool")


def test_eval_openings_are_never_training_openings(built):
    def openings(convs):
        return {next(m["content"] for m in c if m["role"] == "user") for c in convs}

    train = openings(r["messages"] for r in built[flows.SFT_FILE])
    evals = openings(i["messages"] for i in _items(built))
    assert not train & evals


def test_same_seed_same_flows():
    world = build_world(random.Random("0/world"), 6, 7)
    one = flows.build_flows(world, random.Random("0/flows"), 5, 4)
    two = flows.build_flows(world, random.Random("0/flows"), 5, 4)
    assert one == two
    assert b"max_new_tokens" in one[f"{flows.SUITE_DIR}/suite.yaml"]
