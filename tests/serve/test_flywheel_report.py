"""The flywheel's report: every run folder gets report.md and report.json with what users flagged (failures
grouped by task / intent / tool, with PII-redacted examples), what changed (rows trained from feedback and
replay, held-back questions, training steps and loss), which categories moved (current -> candidate, with
the interval and up / down / flat), the verdict and its reasons, and which numbers cannot be trusted.

Feedback goes through a real SQLite store; training and generation are replaced by fixed outputs on the
sample domain's items (as in test_flywheel_gate.py), so the verdict and every move are known in advance."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
from test_flywheel_gate import TASKS, scores, write_suite  # unique module names, as serve_support

RATE_TOOL = {"type": "function", "function": {"name": "get_rate", "description": "Look up a product's interest rate",
                                              "parameters": {"type": "object",
                                                             "properties": {"product": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def items():
    from domainlm.evals.aggregate import all_items
    from domainlm.evals.tasks import load_suite
    from domainlm.sample.defaults import sample_root

    return [i for i in all_items([load_suite(sample_root() / "tasks" / "train")]) if i["task"] in TASKS]


def flag(store, items):
    """What users said about eight answers: five corrected, one thumbs down, one thumbs up, one missed call."""
    intents = [i for i in items if i["type"] == "intent"]
    for item in intents[:5]:
        rid = store.add_response(model="m", request={"messages": [{"role": "user", "content": item["question"]}]},
                                 response="您好，我是海港银行的智能助手。")
        store.add_feedback(rid, rating="down", correction=f"好的，已为您办理：{item['answer']}。")
    rid = store.add_response(model="m", request={"messages": [{"role": "user", "content": intents[5]["question"]
                                                                + "，我的手机号是13812345678"}]},
                             response="请稍候。")
    store.add_feedback(rid, rating="down")
    rid = store.add_response(model="m", request={"messages": [{"role": "user", "content": intents[6]["question"]}]},
                             response="已为您查询。")
    store.add_feedback(rid, rating="up")
    rid = store.add_response(model="m", request={"messages": [{"role": "user", "content": "定期存款利率是多少？"}],
                                                 "tools": [RATE_TOOL]}, response="利率请咨询网点。")
    store.add_feedback(rid, rating="down", correction='{"name": "get_rate", "arguments": {"product": "定期存款"}}')
    return intents


def test_every_run_folder_has_a_report_of_flags_changes_moves_and_doubts(items, tmp_path, monkeypatch):
    from domainlm.models.testing import make_tiny_model
    from domainlm.serve import flywheel
    from domainlm.serve.store import FeedbackStore

    registry, db = tmp_path / "registry", f"sqlite:///{tmp_path / 'fb.db'}"
    flywheel.init_registry(registry, str(make_tiny_model(tmp_path / "tiny")))
    suite = write_suite(tmp_path / "suite", items)
    cfg = flywheel.FlywheelConfig(registry=str(registry), db=db, gate=[str(suite)], gate_min_items=10)

    # Nothing new: the run is skipped, and its folder still says so in a report.
    skipped = flywheel.run_flywheel(cfg)
    report = (registry / "runs" / "run-0001" / "report.md").read_text(encoding="utf-8")
    assert skipped["decision"] == "skipped" and report.startswith("# Flywheel run-0001: skipped")
    assert "no candidate was trained" in report and "0 new rows to train on < min_rows 1" in report

    store = FeedbackStore(db)
    intents = flag(store, items)
    store.close()

    def fake_train(base, data, out, cfg, console=None):
        shutil.copytree(base, out)
        return SimpleNamespace(metrics={"steps": 30, "train_loss": 0.4125, "records": 5, "outputs": ["model"]})

    def current(i, item):  # half the knowledge items, every understanding item, wrong on hallucination
        return item["category"] == "feedback-heldout" or item["category"] == "understanding" or \
            (item["category"] == "knowledge" and i % 2 == 0)

    def candidate(i, item):  # all knowledge, no understanding, silent where the current model is wrong
        if item["category"] == "hallucination":
            return ""
        return item["category"] != "understanding"

    def fake_gate(model_dir, suites, out):
        from domainlm.evals import load_suite
        from domainlm.evals.aggregate import all_items

        scored = all_items([load_suite(s) for s in suites])
        return scores(scored, candidate if out.name == "eval-candidate" else current)

    monkeypatch.setattr(flywheel, "train", fake_train)
    monkeypatch.setattr(flywheel, "_gate_score", fake_gate)
    decision = flywheel.run_flywheel(cfg)
    run = registry / "runs" / "run-0002"
    data = json.loads((run / "report.json").read_text(encoding="utf-8"))
    md = (run / "report.md").read_text(encoding="utf-8")
    assert decision["report"] == {"markdown": str(run / "report.md"), "data": str(run / "report.json"),
                                  "warnings": data["warnings"]}

    # the verdict and its reasons
    assert decision["decision"] == data["decision"] == "refused"
    assert md.startswith("# Flywheel run-0002: refused") and "## Verdict: refused" in md
    assert data["reasons"] == decision["gate"]["refusals"]
    assert any(r.startswith("category 'understanding'") for r in data["reasons"])

    # what users flagged: 7 of 8 failed; intents grouped by the nearest gate item, the call by its tool
    flagged = data["flagged"]
    assert (flagged["failures"], flagged["exchanges"]) == (7, 8)
    tool = next(g for g in flagged["groups"] if g["group"] == "tool_call/get_rate")
    assert tool["how"] == {"missed call": 1} and "| tool_call/get_rate | 1 | 1 | 100% | missed call 1 |" in md
    intent_groups = [g for g in flagged["groups"] if g["group"].startswith("intent/")]
    assert sum(g["failures"] for g in intent_groups) == 6
    first = intents[0]
    assert f"- Q: {first['question']}" in md and f"→ corrected: 好的，已为您办理：{first['answer']}。" in md
    assert "13812345678" not in md and "13812345678" not in json.dumps(data, ensure_ascii=False)  # redacted

    # what changed
    changed = data["changed"]
    assert changed["new_rows"] == 6 and changed["feedback_rows"] == 5 and changed["heldout_questions"] == 1
    assert changed["training"] == {"steps": 30, "records": 5, "train_loss": 0.4125}
    assert "| trained: feedback rows | 5 |" in md and "| training steps | 30 |" in md
    assert "| held back from training, scored by the gate | 1 of 6 questions with a target (1 row) |" in md

    # which categories moved, with the interval deciding the direction
    moves = {m["name"]: m for m in data["moves"]}
    assert {name: m["move"] for name, m in moves.items()} == {
        "knowledge": "up", "understanding": "down", "hallucination": "flat", "feedback-heldout": "flat"}
    knowledge = moves["knowledge"]
    assert knowledge["current"] < knowledge["candidate"] and knowledge["difference_ci"][0] > 0
    assert moves["understanding"]["worse"] and moves["understanding"]["difference_ci"][1] < 0
    row = next(line for line in md.splitlines() if line.startswith("| category knowledge |"))
    assert f"| {knowledge['current']:.3f} | {knowledge['candidate']:.3f} |" in row and row.endswith("| up | ok |")
    assert next(line for line in md.splitlines()
                if line.startswith("| category understanding |")).endswith("| down | worse: refused |")

    # and what cannot be trusted, in plain words
    n_halluc = moves["hallucination"]["n"]
    warnings = data["warnings"]
    assert f"{n_halluc} of {decision['gate']['silent']['n']} candidate outputs were empty or degenerate " \
           "(scored as wrong)" in warnings
    assert any(w.startswith("only 1 held-back question (< 10)") for w in warnings)
    assert any(w.startswith("only 8 rated or corrected answers") for w in warnings)
    assert "## Numbers that cannot be trusted" in md and all(f"- {w}" in md for w in warnings)


def test_moves_are_flat_unless_the_interval_excludes_zero():
    from domainlm.serve.flywheel_report import category_moves

    group = {"level": "category", "name": "x", "n": 50, "reference": 0.5, "candidate": 0.55, "difference": 0.05,
             "retention": 1.1, "trusted": True, "worse": False}
    assert [m["move"] for m in category_moves([{**group, "difference_ci": ci}
                                               for ci in ([-0.02, 0.12], [0.01, 0.09], [-0.2, -0.01], [0.0, 0.0])])] \
        == ["flat", "up", "down", "flat"]
