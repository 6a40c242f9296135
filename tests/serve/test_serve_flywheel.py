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
    pytest.importorskip("trl")
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
