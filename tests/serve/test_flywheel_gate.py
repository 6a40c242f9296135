"""The flywheel's promotion gate: a candidate better overall but worse on one category beyond its interval is
refused, with the category, the numbers and the intervals in the decision; an all-empty candidate is refused;
a category the serving model scores 0 on has "retention undefined"; a candidate within the interval on every
category (and better overall) is promoted. The gate settings are FlywheelConfig fields.

The verdicts are built from fixed outputs on the sample domain's items: no model is trained or run, except in
the last test, which drives run_flywheel with training and scoring replaced, to see the decision flow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from domainlm.errors import DomainlmError

TASKS = ("mcq", "knowledge_qa", "intent", "unanswerable")  # categories knowledge (40 items), understanding, hallucination


@pytest.fixture(scope="module")
def items():
    from domainlm.evals.aggregate import all_items
    from domainlm.evals.tasks import load_suite
    from domainlm.sample.defaults import sample_root

    return [i for i in all_items([load_suite(sample_root() / "tasks" / "train")]) if i["task"] in TASKS]


def scores(items, right):
    """:class:`Scores` of outputs ``right(index, item)``: True = gold, False = a wrong real answer, a string = it."""
    from domainlm.evals import Scores
    from domainlm.evals.aggregate import score_predictions, summarize
    from domainlm.prompts import render_answer

    outputs = {}
    for index, item in enumerate(items):
        got = right(index, item)
        if got is True:
            outputs[item["id"]] = render_answer(item)
        elif got is False:
            outputs[item["id"]] = ("答案是B" if str(item["answer"]).strip() == "A" else "答案是A") if item["type"] == "mcq" \
                else "该产品的年费为100元。" if item["type"] == "refusal" else "不知道"
        else:
            outputs[item["id"]] = got
    records = score_predictions(items, {k: {"id": k, "output": v} for k, v in outputs.items()})
    return Scores(results=summarize(items, records), records=records, items=items)


def write_suite(folder, items):
    """The items as a gate suite folder (one task file each), as load_suite reads them back."""
    from domainlm.io import write_jsonl

    for task in dict.fromkeys(item["task"] for item in items):
        write_jsonl(folder / f"{task}.jsonl", [{k: v for k, v in item.items() if not k.startswith("_")}
                                              for item in items if item["task"] == task])
    return folder


def config(**settings):
    from domainlm.serve.flywheel import FlywheelConfig

    return FlywheelConfig(registry="registry", gate=["suite"], **settings)


def test_better_overall_but_worse_on_one_category_is_refused(items):
    from domainlm.serve.flywheel import promotion_verdict

    current = scores(items, lambda i, item: i % 2 == 0)
    # right on everything except the unanswerable items, which it now answers instead of refusing
    candidate = scores(items, lambda i, item: item["type"] != "refusal")
    verdict = promotion_verdict(current, candidate, config(gate_min_items=10))
    assert verdict["candidate_score"] > verdict["current_score"] and verdict["difference_ci"][0] > 0
    assert not verdict["passed"] and len(verdict["refusals"]) == 1
    assert verdict["reason"].startswith("category 'hallucination' (20 items): 0.500 -> 0.000, difference -0.500 (95% CI")
    assert "worse beyond the interval (upper end 0.000 < min_retention 1.0)" in verdict["reason"]
    assert verdict["rule"]["levels"] == ["category"] and verdict["rule"]["min_retention"] == 1.0


def test_an_all_empty_candidate_is_refused(items):
    from domainlm.serve.flywheel import promotion_verdict

    current = scores(items, lambda i, item: i % 2 == 0)
    empty = scores(items, lambda i, item: "")
    n = len(items)
    for share in (0.5, 1.0):
        verdict = promotion_verdict(current, empty, config(max_degenerate_share=share))
        assert not verdict["passed"]
        assert f"{n} of {n} candidate outputs are empty or degenerate (current: 0 of {n})" in verdict["reason"]
    # a silent serving model is no excuse: a silent candidate is still refused
    assert not promotion_verdict(empty, empty, config(max_degenerate_share=1.0))["passed"]


def test_a_category_the_serving_model_scores_zero_on_has_no_retention(items):
    from domainlm.serve.flywheel import promotion_verdict

    current = scores(items, lambda i, item: item["category"] != "understanding")
    candidate = scores(items, lambda i, item: True)
    verdict = promotion_verdict(current, candidate, config(gate_min_items=10))
    understanding = next(g for g in verdict["groups"] if g["name"] == "understanding")
    assert understanding["reference"] == 0 and understanding["retention"] is None and not understanding["worse"]
    assert any("retention undefined" in w and "'understanding'" in w for w in verdict["warnings"])
    assert verdict["passed"]


def test_within_the_interval_everywhere_and_better_overall_is_promoted(items):
    from domainlm.serve.flywheel import promotion_verdict

    current = scores(items, lambda i, item: i % 3 != 0)
    knowledge = [i for i, item in enumerate(items) if item["category"] == "knowledge"]
    # one knowledge item lost: knowledge is a little lower, within noise; the other categories are better
    lost = next(i for i in knowledge if i % 3 != 0)  # one the serving model gets right
    candidate = scores(items, lambda i, item: i != lost and (i % 3 != 0 or item["category"] != "knowledge"))
    verdict = promotion_verdict(current, candidate, config())
    assert verdict["passed"], verdict["reason"]
    assert verdict["candidate_score"] > verdict["current_score"]
    group = next(g for g in verdict["groups"] if g["name"] == "knowledge")
    assert group["trusted"] and group["retention"] < 1 <= group["retention_ci"][1] and not group["worse"]
    # the sample's categories are small (20-40 items < 30 for two of them): said, and decided by their point estimate
    assert any("cannot be trusted, decided by few_items=point" in w for w in verdict["warnings"])
    # not better overall: refused with the difference and its interval
    same = promotion_verdict(current, current, config())
    assert not same["passed"] and "candidate is not better than the serving model on the gate" in same["reason"]
    assert "0.6625 vs 0.6625 + min_gain 0.0 (difference +0.0000, 95% CI +0.0000 to +0.0000)" in same["reason"]


def test_gate_settings_are_validated_config_fields():
    from domainlm.config import validate
    from domainlm.serve.flywheel import FlywheelConfig

    for name in ("gate_by", "gate_min_retention", "gate_confidence", "gate_min_items", "gate_few_items",
                 "max_degenerate_share"):
        assert FlywheelConfig.model_fields[name].description
    with pytest.raises(DomainlmError, match="gate_by"):
        validate(FlywheelConfig, {"registry": "r", "gate": ["g"], "gate_by": ["intent"]}, "flywheel")
    with pytest.raises(DomainlmError, match="gate_few_items"):
        validate(FlywheelConfig, {"registry": "r", "gate": ["g"], "gate_few_items": "maybe"}, "flywheel")


def test_run_flywheel_refuses_with_the_per_category_reason(items, tmp_path, monkeypatch):
    """The decision flow: the gate's refusal reaches decision.json and the log, and the serving model stays."""
    from domainlm.models.testing import make_tiny_model
    from domainlm.serve import flywheel
    from domainlm.serve.store import FeedbackStore

    registry, db = tmp_path / "registry", f"sqlite:///{tmp_path / 'fb.db'}"
    flywheel.init_registry(registry, str(make_tiny_model(tmp_path / "tiny")))
    store = FeedbackStore(db)
    rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "金卡年费是多少？"}]},
                             response="不知道")
    store.add_feedback(rid, rating="down", correction="200元")
    store.close()
    suite = write_suite(tmp_path / "suite", items)
    current = scores(items, lambda i, item: i % 2 == 0)
    candidate = scores(items, lambda i, item: item["type"] != "refusal")

    def fake_train(base, data, out, cfg, console=None):
        shutil.copytree(base, out)
        return SimpleNamespace(metrics={})

    monkeypatch.setattr(flywheel, "train", fake_train)
    monkeypatch.setattr(flywheel, "_gate_score", lambda model_dir, gate, out: candidate if out.name == "eval-candidate"
                        else current)
    decision = flywheel.run_flywheel(config(gate_min_items=10).model_copy(update={"registry": str(registry), "db": db,
                                                                                     "gate": [str(suite)]}))
    assert decision["decision"] == "refused" and decision["candidate_score"] > decision["current_score"]
    assert decision["reason"].startswith("category 'hallucination'") and decision["gate"]["refusals"]
    assert flywheel.read_json(registry / "runs" / "run-0001" / "decision.json")["reason"] == decision["reason"]
    gate_log = next(r for r in flywheel.flywheel_log(registry) if r["step"] == "gate")
    assert gate_log["passed"] is False and gate_log["refusals"] == decision["gate"]["refusals"]
    assert flywheel.read_registry(registry)["current"] == "v0001"
    # one correction: nothing held back, and the decision says why
    assert decision["heldout"]["questions"] == 0 and "none held back" in decision["heldout"]["note"]


QUESTIONS = [("白金卡的年费是多少？", "白金卡年费为2000元，消费满20万元可免次年年费。"),
             ("外币账户可以线上开通吗？", "可以，在手机银行的外汇服务里开通。"),
             ("信用卡逾期一天会上征信吗？", "逾期一天一般不会上报，但会收取违约金。"),
             ("大额存单起存金额是多少？", "大额存单20万元起存。"),
             ("跨行转账到账要多久？", "实时到账，节假日可能延迟。"),
             ("挂失后多久能补卡？", "挂失后七个工作日内可以到网点补卡。")]


@pytest.mark.parametrize("heldout_answer, expected", [
    ("right", "promoted"),  # better on the suites, as good on what users asked: promoted
    ("wrong", "refused"),   # better on the suites, worse on the held-back corrections: refused
    ("empty", "refused"),   # says nothing to the held-back questions: wrong, not a refusal
])
def test_held_back_feedback_is_not_trained_on_and_gates_the_candidate(items, tmp_path, monkeypatch, heldout_answer,
                                                                       expected):
    """A seeded share of the new corrections is held back: not in the training data, written as an eval suite,
    scored by both models as the 'feedback-heldout' category; a candidate worse there is refused whatever the
    gate suites say. Training and generation are replaced; the split, the suite files and the gate are real."""
    from domainlm.evals import load_suite
    from domainlm.evals.aggregate import all_items
    from domainlm.models.testing import make_tiny_model
    from domainlm.serve import flywheel
    from domainlm.serve.store import FeedbackStore

    registry, db = tmp_path / "registry", f"sqlite:///{tmp_path / 'fb.db'}"
    flywheel.init_registry(registry, str(make_tiny_model(tmp_path / "tiny")))
    store = FeedbackStore(db)
    for question, answer in QUESTIONS:
        rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": question}]},
                                 response="您好，我是海港银行的智能助手。")
        store.add_feedback(rid, rating="down", correction=answer)
    store.close()
    suite = write_suite(tmp_path / "suite", items)
    trained_on: list[str] = []

    def fake_train(base, data, out, cfg, console=None):
        trained_on.extend(Path(p).read_text(encoding="utf-8") for p in data)
        shutil.copytree(base, out)
        return SimpleNamespace(metrics={"steps": 30, "train_loss": 0.5})

    def fake_gate(model_dir, suites, out):
        scored = all_items([load_suite(s) for s in suites])
        if out.name == "eval-current":  # the serving model: half the suite, every held-back correction
            return scores(scored, lambda i, item: item["category"] == "feedback-heldout" or i % 2 == 0)
        held = {"right": True, "wrong": False, "empty": ""}[heldout_answer]
        return scores(scored, lambda i, item: held if item["category"] == "feedback-heldout" else True)

    monkeypatch.setattr(flywheel, "train", fake_train)
    monkeypatch.setattr(flywheel, "_gate_score", fake_gate)
    cfg = config(gate_min_items=10).model_copy(update={"registry": str(registry), "db": db, "gate": [str(suite)]})
    decision = flywheel.run_flywheel(cfg)

    run = registry / "runs" / "run-0001"
    held = [json.loads(line) for line in (run / "heldout" / "feedback-heldout.jsonl").read_text().splitlines()]
    assert decision["heldout"]["questions"] == len(held) == 1 and decision["heldout"]["usable"] == 6  # round(0.2 * 6)
    assert decision["rows"] == 6 and decision["feedback_rows"] == 5
    (item,) = held
    assert item["type"] == "qa" and (item["question"], item["answer"]) in QUESTIONS
    # the held-back question and its correction are in no training file; the others are
    assert trained_on and not any(item["question"] in text or item["answer"] in text for text in trained_on)
    assert sum(q in text for q, _ in QUESTIONS for text in trained_on) == 5
    # both models were scored on it, and it is a category of the gate's comparison
    group = next(g for g in decision["gate"]["groups"] if g["name"] == "feedback-heldout")
    assert decision["heldout"]["groups"] == [group] and group["n"] == 1 and group["reference"] == 1.0
    if heldout_answer == "right":
        assert decision["candidate_score"] > decision["current_score"] and not group["worse"]
    assert decision["decision"] == expected
    if expected == "refused":
        assert group["candidate"] == 0.0 and group["worse"]
        assert "category 'feedback-heldout' (1 items): 1.000 -> 0.000" in decision["reason"]
        # every other category is better: the held-back slice alone refused it
        assert [g["name"] for g in decision["gate"]["groups"] if g["worse"]] == ["feedback-heldout"]
    # an empty answer is wrong (degenerate, no credit), not a refusal
    assert decision["gate"]["silent"]["candidate"] == (1 if heldout_answer == "empty" else 0)
    on_disk = flywheel.read_json(run / "decision.json")
    assert on_disk["heldout"]["questions"] == 1 and on_disk["report"]["markdown"].endswith("report.md")
