"""Mobile-banking flows: valid agent items whose expected calls, run in the environment, give the expected
state; sft rows the training loader accepts; eval phrasings training never saw."""

import json
import random

import pytest

from domainlm.evals.agent import AgentScorer, check_agent_item, state_diff
from domainlm.evals.agent_env import replay
from domainlm.sample import flows
from domainlm.sample.world import build_world
from domainlm.train.data import check_chat


@pytest.fixture(scope="module")
def built():
    world = build_world(random.Random("3/world"), 40, 7)
    return flows.build_flows(world, random.Random("3/flows"), 60, 40)


def _items(built):
    return built[f"{flows.SUITE_DIR}/{flows.TASK}.jsonl"]


def test_every_item_is_valid_and_self_consistent(built):
    items = _items(built)
    assert len(items) == 40 and {i["subcategory"] for i in items} == set(flows.FLOWS)
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        check_agent_item(item)
        sim, outcomes = replay(item["env"], item["tools"], item["expected_calls"])
        assert all(o["ok"] for o in outcomes), (item["id"], outcomes)
        assert state_diff(item["expected_state"], sim.state) == [], item["id"]
        # Doing nothing never passes: a write flow leaves the state wrong, a read flow lacks the value.
        idle, _ = replay(item["env"], item["tools"], [])
        wrote = state_diff(item["expected_state"], idle.state) != []
        assert wrote or item["expected_answer"], item["id"]
        assert AgentScorer().score(item, "好的。", trajectory=[{"output": "好的。", "calls": []}])["score"] == 0.0


def test_the_right_trajectory_scores_and_the_item_is_answerable_from_its_conversation(built):
    for item in _items(built):
        args = item["expected_calls"][0]["arguments"]
        said = " ".join(m["content"] or "" for m in item["messages"] if m["role"] in ("user", "tool")).replace(",", "")
        # Every argument value was given by the customer or a tool result (bill types by their name).
        for key, value in args.items():
            if key != "bill_type":
                assert str(value) in said, (item["id"], key)
        calls = [{"name": c["name"], "arguments": c["arguments"], "run": True} for c in item["expected_calls"]]
        answer = "完成。" + " ".join(str(v) for v in item["expected_answer"])
        trajectory = [{"output": "", "calls": calls}, {"output": answer, "calls": []}]
        assert AgentScorer().score(item, answer, trajectory=trajectory)["score"] == 1.0, item["id"]


def test_sft_rows_load_and_hold_asks_confirmations_and_tool_results(built):
    rows = built[flows.SFT_FILE]
    assert len(rows) == 60
    for row in rows:
        record = check_chat(json.loads(json.dumps(row, ensure_ascii=False)))
        roles = [m["role"] for m in record["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant" and "tool" in roles
    # some ask for a missing slot before acting, and some transfers are refused by the tool
    assert any(m["content"] in flows.ASK[r["lang"]].values() for r in rows for m in r["messages"] if m["role"] == "assistant")
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
