"""The flywheel: corrections train a candidate that is promoted when it beats the serving model on the
gate, and refused when it is worse; every step is logged and the previous version stays for rollback."""

from __future__ import annotations

import json

import pytest

from domainlm.errors import DomainlmError

GATE = [("金卡年费是多少？", "200元"), ("活期存款利率是多少？", "0.35%"), ("转账手续费是多少？", "免费")]


@pytest.fixture()
def gate(tmp_path):
    folder = tmp_path / "gate"
    folder.mkdir()
    with (folder / "qa.jsonl").open("w", encoding="utf-8") as f:
        for i, (q, a) in enumerate(GATE):
            f.write(json.dumps({"id": f"g{i}", "task": "qa", "category": "bank", "subcategory": "fees", "type": "qa",
                                "question": q, "answer": a}, ensure_ascii=False) + "\n")
    # The gate asks exactly what users asked in chat (no extra instruction), 16 tokens at most.
    (folder / "suite.yaml").write_text('templates:\n  qa: "{question}"\nmax_new_tokens: 16\n', encoding="utf-8")
    return folder


def add_corrections(store, answers):
    for (question, _), answer in zip(GATE, answers, strict=True):
        rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": question}]},
                                 response="您好，我是海港银行的智能助手。")
        store.add_feedback(rid, rating="down", correction=answer)


def test_promote_a_better_model_refuse_a_worse_one_and_roll_back(tiny_dir, gate, tmp_path):
    pytest.importorskip("trl", reason="a flywheel turn trains with TRL: the train extra is not installed")
    from domainlm.serve.flywheel import (
        FlywheelConfig,
        flywheel_log,
        init_registry,
        read_registry,
        rollback,
        run_flywheel,
        serving_dir,
    )
    from domainlm.serve.store import FeedbackStore

    registry, db = tmp_path / "registry", f"sqlite:///{tmp_path / 'fb.db'}"
    init_registry(registry, str(tiny_dir))
    store = FeedbackStore(db)
    cfg = FlywheelConfig(registry=str(registry), db=db, gate=[str(gate)], max_steps=30, lr=1e-2, batch_size=3, seq_len=64)

    # Nothing new yet: the run is skipped and nothing changes.
    assert run_flywheel(cfg)["decision"] == "skipped"

    # Users corrected three answers with the right facts: the candidate learns them and is promoted.
    add_corrections(store, [a for _, a in GATE])
    better = run_flywheel(cfg)
    assert better["decision"] == "promoted" and better["version"] == "v0002"
    assert better["candidate_score"] > better["current_score"]
    assert serving_dir(registry) == (registry / "versions" / "v0002").resolve()

    # Wrong "corrections" make a worse model: it is refused and v0002 keeps serving.
    add_corrections(store, ["不知道", "不知道", "不知道"])
    worse = run_flywheel(cfg)
    assert worse["decision"] == "refused" and worse["candidate_score"] < worse["current_score"]
    assert read_registry(registry)["current"] == "v0002"
    assert serving_dir(registry).name == "v0002"
    assert (registry / "runs" / "run-0003" / "decision.json").is_file()

    # Each run used only new feedback, and every step is in the log.
    steps = [(r.get("run"), r["step"]) for r in flywheel_log(registry)]
    assert ("run-0002", "train") in steps and ("run-0003", "gate") in steps and steps[0] == (None, "init")
    exports = [r for r in flywheel_log(registry) if r["step"] == "export"]
    assert [e["feedback"] for e in exports] == [0, 3, 3]

    # Rollback: the previous version serves again; there is nothing before v0001.
    assert rollback(registry)["current"] == "v0001"
    assert serving_dir(registry).name == "v0001"
    with pytest.raises(DomainlmError, match="nothing to roll back to"):
        rollback(registry)


def test_registry_errors(tmp_path, tiny_dir):
    from domainlm.serve.flywheel import FlywheelConfig, init_registry, run_flywheel

    with pytest.raises(DomainlmError, match="not a model registry"):
        run_flywheel(FlywheelConfig(registry=str(tmp_path / "none"), db=f"sqlite:///{tmp_path / 'f.db'}", gate=["x"]))
    init_registry(tmp_path / "r", str(tiny_dir))
    with pytest.raises(DomainlmError, match="already a model registry"):
        init_registry(tmp_path / "r", str(tiny_dir))
    with pytest.raises(DomainlmError, match="no such gate suite"):
        run_flywheel(FlywheelConfig(registry=str(tmp_path / "r"), db=f"sqlite:///{tmp_path / 'f.db'}", gate=[str(tmp_path / "nope")]))


def test_replay_samples_the_original_training_data(tmp_path):
    """Each sft turn mixes replay_per_row rows of the original data per feedback row (deterministic, rendered as
    the train stage renders task items); dpo/kto turns and ratio 0 replay nothing; unusable data is an error."""
    from domainlm.serve.flywheel import FlywheelConfig, replay_rows

    original = tmp_path / "tasks"
    original.mkdir()
    with (original / "qa.jsonl").open("w", encoding="utf-8") as f:
        for i in range(10):
            f.write(json.dumps({"id": f"t{i}", "type": "qa", "question": f"第{i}号产品的年费是多少？",
                                "answer": f"{i}00元"}, ensure_ascii=False) + "\n")
    with (original / "chat.jsonl").open("w", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"}],
                            "tools": [{"type": "function", "function": {"name": "f"}}]}, ensure_ascii=False) + "\n")
    cfg = FlywheelConfig(registry="r", gate=["g"], replay_data=[str(original)], replay_per_row=2.0, seed=7)
    rows = replay_rows(cfg, 3)
    assert len(rows) == 6 and rows == replay_rows(cfg, 3)
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][0]["role"] == "user" for r in rows)
    assert len(replay_rows(cfg, 100)) == 11  # never more than there is
    assert replay_rows(cfg.model_copy(update={"stage": "dpo"}), 3) == []
    assert replay_rows(cfg.model_copy(update={"replay_per_row": 0.0}), 3) == []
    assert cfg.train_config().replay == [] and cfg.train_config().replay_ratio == 0.0  # not cpt's general-text replay
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DomainlmError, match="no usable sft"):
        replay_rows(cfg.model_copy(update={"replay_data": [str(tmp_path / "empty.jsonl")]}), 3)


def sft_row(question, answer, tools=None):
    row = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    return {**row, "tools": tools} if tools else row


def test_holdback_split_is_seeded_whole_questions_and_says_when_it_holds_nothing():
    """A seeded share of the questions with a target is held back (at least one from 5 such questions, none
    below); a question asked twice leaves training whole and is tested on its latest correction; rows the
    eval cannot ask as they were asked (multi-turn, several calls, empty or degenerate targets, thumbs down)
    are never held back; a corrected tool call becomes a tool_call item with its tools."""
    from domainlm.serve.flywheel import holdback_split

    qa = [sft_row(f"第{i}号网点几点开门？", f"第{i}号网点早上{i}点开门。") for i in range(10)]
    train, items, info = holdback_split(qa, "sft", 0.2, seed=1)
    assert len(items) == 2 and len(train) == 8 and info["usable"] == 10 and info["note"] is None
    assert (train, items) == holdback_split(qa, "sft", 0.2, seed=1)[:2]
    assert {i["question"] for i in items}.isdisjoint(r["messages"][0]["content"] for r in train)
    assert all(i["type"] == "qa" and i["category"] == "feedback-heldout" and i["task"] == "feedback-heldout-qa"
               for i in items)
    # fewer than five usable questions: none held back, and why
    train, items, info = holdback_split(qa[:4], "sft", 0.5, seed=1)
    assert items == [] and len(train) == 4 and "only 4 new sft questions with a target" in info["note"]
    assert "holdback 0" in holdback_split(qa, "sft", 0.0, seed=1)[2]["note"]
    # at least one from five, never all of them
    assert len(holdback_split(qa[:5], "sft", 0.01, seed=1)[1]) == 1
    assert len(holdback_split(qa[:5], "sft", 0.99, seed=1)[1]) == 4

    # a question corrected twice: both rows leave training, the item is the latest correction
    twice = qa[:5] + [sft_row(q["messages"][0]["content"], "更正：" + q["messages"][1]["content"]) for q in qa[:5]]
    train, items, info = holdback_split(twice, "sft", 0.2, seed=3)
    assert info["questions"] == 1 and info["rows"] == 2 and len(train) == 8
    assert items[0]["answer"].startswith("更正：")

    tool = {"type": "function", "function": {"name": "get_rate", "parameters": {"type": "object"}}}
    call = {"messages": [{"role": "user", "content": "定期利率多少"},
                         {"role": "assistant", "content": "", "tool_calls": [
                             {"type": "function", "function": {"name": "get_rate", "arguments": {"product": "定期"}}}]}],
            "tools": [tool]}
    multi = {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"},
                          {"role": "user", "content": "年费多少"}, {"role": "assistant", "content": "200元"}]}
    empty = sft_row("转账限额多少", "。。。")
    train, items, info = holdback_split(qa[:4] + [call, multi, empty], "sft", 0.99, seed=0)
    assert info["usable"] == 5  # 4 answers and the call; not the multi-turn row, not the empty correction
    from domainlm.serve.flywheel import heldout_item

    assert heldout_item(call, "sft") == {"type": "tool_call", "question": "定期利率多少",
                                         "answer": {"name": "get_rate", "arguments": {"product": "定期"}},
                                         "tools": [tool]}
    assert heldout_item(multi, "sft") is None and heldout_item(empty, "sft") is None
    # kto: only an upvoted answer is a target; dpo: the preferred answer
    assert heldout_item({"prompt": "年费多少", "completion": "200元", "label": False}, "kto") is None
    assert heldout_item({"prompt": "年费多少", "completion": "200元", "label": True}, "kto")["answer"] == "200元"
    assert heldout_item({"prompt": "年费多少", "chosen": "200元", "rejected": "不知道"}, "dpo")["answer"] == "200元"


def test_a_real_turn_holds_back_feedback_scores_it_and_writes_the_report(tiny_dir, gate, tmp_path):
    """A real turn (tiny model, real training and generation) on six corrections: one question is held back,
    is absent from the rows trained on, is scored by both models beside the gate suite, and the run folder
    has report.md / report.json naming it."""
    pytest.importorskip("trl", reason="a flywheel turn trains with TRL: the train extra is not installed")
    from domainlm.serve.flywheel import FlywheelConfig, init_registry, run_flywheel
    from domainlm.serve.store import FeedbackStore

    registry, db = tmp_path / "registry", f"sqlite:///{tmp_path / 'fb.db'}"
    init_registry(registry, str(tiny_dir))
    store = FeedbackStore(db)
    extra = [("信用卡额度怎么提升？", "按时还款六个月后可申请提额。"), ("网点周末营业吗？", "周六营业，周日休息。"),
             ("手机银行登录不上怎么办？", "请更新到最新版本后重试。")]
    for question, answer in GATE + extra:
        rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": question}]},
                                 response="您好，我是海港银行的智能助手。")
        store.add_feedback(rid, rating="down", correction=answer)
    store.close()
    cfg = FlywheelConfig(registry=str(registry), db=db, gate=[str(gate)], max_steps=10, lr=1e-2, batch_size=3,
                         seq_len=64)
    decision = run_flywheel(cfg)
    run = registry / "runs" / "run-0001"
    held = json.loads((run / "heldout" / "feedback-heldout.jsonl").read_text(encoding="utf-8"))
    trained = (run / "feedback.jsonl").read_text(encoding="utf-8")
    assert decision["heldout"]["questions"] == 1 and held["question"] not in trained
    assert len(trained.splitlines()) == 5 and decision["training"]["steps"] == 10
    for side in ("eval-current", "eval-candidate"):
        ids = [json.loads(line)["id"] for line in (run / side / "predictions.jsonl").read_text().splitlines()]
        assert ids[-1] == held["id"] and len(ids) == len(GATE) + 1
    assert [g["name"] for g in decision["heldout"]["groups"]] == ["feedback-heldout"]
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "| category feedback-heldout | 1 |" in report and "## What users flagged" in report
    assert "only 1 held-back question (< 30)" in report
    assert json.loads((run / "report.json").read_text(encoding="utf-8"))["changed"]["heldout_questions"] == 1
