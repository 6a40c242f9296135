"""The compression gate compares source and result category by category: a result that keeps its overall
retention but lost one category beyond the interval is refused, and gate.json says which category, by how
much, with the intervals; an all-empty result is refused; a source scoring 0 (overall, or on one category)
gives "retention undefined", never 1.0. The settings live in CompressConfig. Stored outputs on the sample's
items: no model runs."""

from __future__ import annotations

import pytest

from domainlm.errors import DomainlmError

TASKS = ("mcq", "knowledge_qa", "intent", "unanswerable")  # categories knowledge (40 items), understanding, hallucination


@pytest.fixture(scope="module")
def items(sample_root):
    from domainlm.evals.aggregate import all_items
    from domainlm.evals.tasks import load_suite

    every = all_items([load_suite(sample_root / "tasks" / "train")])
    return [i for i in every if i["task"] in TASKS]


def records(items, right):
    """Verdicts of outputs ``right(index, item)``: True = gold, False = a wrong real answer, a string = that output."""
    from domainlm.evals.aggregate import score_predictions
    from domainlm.prompts import render_answer

    outputs = {}
    for index, item in enumerate(items):
        got = right(index, item)
        if got is True:
            outputs[item["id"]] = render_answer(item)
        elif got is False:  # a real answer the scorer marks wrong (not silent, and no refusal except where one is wrong)
            if item["type"] == "mcq":
                outputs[item["id"]] = "答案是B" if str(item["answer"]).strip() == "A" else "答案是A"
            else:
                outputs[item["id"]] = "该产品的年费为100元。" if item["type"] == "refusal" else "不知道"
        else:
            outputs[item["id"]] = got
    return score_predictions(items, {k: {"id": k, "output": v} for k, v in outputs.items()})


def gate(items, source, result, **rule):
    from domainlm.compress import CompressConfig
    from domainlm.compress.gate import gate_verdict

    settings = CompressConfig(target="int8", **rule).gate_rule()
    return gate_verdict(items, source, result, seed=0, **settings)


def test_a_result_worse_on_one_category_is_refused_though_its_overall_retention_passes(items):
    # The source knows half of each category; the result everything, except refusals, which it lost.
    source = records(items, lambda i, item: i % 2 == 0)
    result = records(items, lambda i, item: False if item["type"] == "refusal" else True)
    verdict = gate(items, source, result, gate_min_items=10)
    assert verdict["retention"] > 1.2  # overall "better" ...
    assert not verdict["passed"]  # ... refused on one category
    assert len(verdict["refusals"]) == 1 and verdict["reason"] == verdict["refusals"][0]
    reason = verdict["reason"]
    assert reason.startswith("category 'hallucination' (20 items): 0.500 -> 0.000, difference -0.500 (95% CI ")
    assert "retention 0.000 (95% CI 0.000 to 0.000)" in reason and "worse beyond the interval" in reason
    hallucination = next(g for g in verdict["groups"] if g["name"] == "hallucination")
    assert hallucination["worse"] and hallucination["decided_by"] == "interval" and hallucination["difference_ci"][1] < 0
    assert verdict["rule"] == {"levels": ["category"], "min_retention": 0.9, "confidence": 0.95, "min_items": 10,
                               "few_items": "point", "max_silent_share": 0.5}
    assert "refused: category 'hallucination'" in verdict["message"]


def test_per_task_groups_and_a_looser_threshold(items):
    source = records(items, lambda i, item: True)
    # the result lost half of the knowledge_qa items and nothing else
    qa = [i for i, item in enumerate(items) if item["task"] == "knowledge_qa"][::2]
    result = records(items, lambda i, item: i not in qa)
    by_task = gate(items, source, result, gate_by=["task"], gate_min_items=10, min_retention=0.85)
    assert [g["name"] for g in by_task["groups"] if g["worse"]] == ["knowledge_qa"]
    assert not by_task["passed"] and by_task["retention"] > 0.85  # the overall ratio alone would have passed it
    # by category, mcq dilutes the loss (knowledge: 0.75 of the source), within a looser min_retention
    loose = gate(items, source, result, gate_min_items=10, min_retention=0.6)
    assert loose["passed"], loose["reason"]


def test_an_all_empty_result_is_refused(items):
    source = records(items, lambda i, item: i % 2 == 0)
    result = records(items, lambda i, item: "")
    verdict = gate(items, source, result, max_degenerate_share=1.0)
    n = len(items)
    assert not verdict["passed"] and verdict["retention"] == 0
    assert f"{n} of {n} result outputs are empty or degenerate (source: 0 of {n})" in verdict["reason"]
    assert verdict["degenerate_share"] == {"source": 0.0, "result": 1.0}


def test_a_source_scoring_zero_gives_retention_undefined(items):
    source = records(items, lambda i, item: False)
    result = records(items, lambda i, item: i % 2 == 0)
    verdict = gate(items, source, result, min_retention=0.0)
    assert verdict["retention"] is None and verdict["retention_ci95"] is None and not verdict["passed"]
    assert "retention is undefined" in verdict["reason"] and "retention undefined" in verdict["message"]
    # on one category only: the gate says so for that category, and the rest decides
    source = records(items, lambda i, item: item["category"] != "understanding")
    result = records(items, lambda i, item: True)
    verdict = gate(items, source, result, gate_min_items=10)
    understanding = next(g for g in verdict["groups"] if g["name"] == "understanding")
    assert understanding["retention"] is None and not understanding["worse"]
    assert any("category 'understanding'" in w and "retention undefined" in w for w in verdict["warnings"])
    assert verdict["passed"]


def test_a_result_within_the_interval_on_every_category_passes(items):
    source = records(items, lambda i, item: i % 3 != 0)
    # one item lost in each category, one gained elsewhere: within noise everywhere
    lost = {}
    for index, item in enumerate(items):
        if index % 3 != 0:
            lost.setdefault(item["category"], index)
    result = records(items, lambda i, item: i % 3 != 0 and i not in lost.values())
    verdict = gate(items, source, result, gate_min_items=10)
    assert verdict["passed"] and verdict["reason"] is None and verdict["warnings"] == []
    assert all(g["retention"] < 1 <= g["retention_ci"][1] for g in verdict["groups"])


def test_gate_settings_are_validated_config_fields():
    from domainlm.compress import CompressConfig
    from domainlm.config import validate

    fields = CompressConfig.model_fields
    for name in ("gate_by", "gate_confidence", "gate_min_items", "gate_few_items", "max_degenerate_share"):
        assert fields[name].description
    with pytest.raises(DomainlmError, match="gate_by"):
        validate(CompressConfig, {"target": "int8", "gate_by": ["topic"]}, "compress")
    with pytest.raises(DomainlmError, match="gate_few_items"):
        validate(CompressConfig, {"target": "int8", "gate_few_items": "skip"}, "compress")
    with pytest.raises(DomainlmError, match="gate_confidence"):
        validate(CompressConfig, {"target": "int8", "gate_confidence": 1.5}, "compress")
