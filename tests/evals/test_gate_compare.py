"""The per-category comparison both gates make (compression, flywheel promotion): a candidate worse on one
category beyond its paired-bootstrap interval is refused however much better it is overall; empty outputs are
wrong (an all-empty candidate is always refused, and "" scored as a correct refusal by an older scorer is voided);
retention is undefined where the reference scores 0; a category with too few items is decided by the configured
rule and said to be untrustworthy.

Verdicts are built from fixed outputs on real public items (Fin-Eva dev, 1419 Chinese financial questions in 5
categories) and on the sample domain's items: no model runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainlm.errors import DomainlmError
from domainlm.evals import compare_per_category
from domainlm.evals.aggregate import all_items, score_predictions
from domainlm.evals.tasks import load_suite
from domainlm.prompts import render_answer

FINEVA = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "fineva"
needs_fineva = pytest.mark.skipif(not FINEVA.is_dir(), reason="shared/benchmarks/fineva not present")


def wrong_answer(item: dict) -> str:
    """A real answer (not silent, not a refusal) that the item's scorer scores 0."""
    if item["type"] == "mcq":
        return "答案是" + ("A" if str(item["answer"]).strip().upper() != "A" else "B")
    if item["type"] == "yesno":
        return "否" if str(item["answer"]).strip() == "是" else "是"
    if item["type"] == "refusal":
        return "该产品的年费为100元。"
    return "这个问题的答案是三个工作日。"


def verdicts(items: list[dict], answer) -> list[dict]:
    """Verdicts of outputs ``answer(index, item)``: True = the gold answer, False = a wrong real answer, a string
    = that output."""
    outputs = {}
    for index, item in enumerate(items):
        got = answer(index, item)
        outputs[item["id"]] = render_answer(item) if got is True else wrong_answer(item) if got is False else got
    return score_predictions(items, {k: {"id": k, "output": v} for k, v in outputs.items()})


@pytest.fixture(scope="module")
def fineva() -> list[dict]:
    if not FINEVA.is_dir():
        pytest.skip("shared/benchmarks/fineva not present")
    return all_items([load_suite(FINEVA)])


@pytest.fixture(scope="module")
def sample_items() -> list[dict]:
    from domainlm.sample.defaults import sample_root

    return all_items([load_suite(sample_root() / "tasks" / "train")])


def group(result: dict, name: str, level: str = "category") -> dict:
    return next(g for g in result["groups"] if g["level"] == level and g["name"] == name)


@needs_fineva
def test_worse_on_one_category_is_refused_though_better_overall(fineva):
    reference = verdicts(fineva, lambda i, item: i % 2 == 0)  # half right everywhere
    # The candidate is right on every item, except in 安全合规 (compliance), where it is right on a quarter.
    candidate = verdicts(fineva, lambda i, item: i % 4 == 0 if item["category"] == "安全合规" else True)
    result = compare_per_category(fineva, reference, candidate)
    assert result["overall"]["candidate"] > result["overall"]["reference"] + 0.3  # much better overall ...
    assert result["overall"]["difference_ci"][0] > 0
    compliance = group(result, "安全合规")
    assert compliance["n"] == 172 and compliance["trusted"] and compliance["decided_by"] == "interval"
    assert compliance["worse"] and compliance["retention"] < 1 and compliance["retention_ci"][1] < 1
    assert compliance["difference_ci"][1] < 0
    # ... and refused on that one category, by how much, with its intervals
    assert not result["passed"] and len(result["refusals"]) == 1
    refusal = result["refusals"][0]
    assert refusal.startswith("category '安全合规' (172 items):")
    assert f"difference {compliance['difference']:+.3f}" in refusal and "95% CI" in refusal
    assert f"retention {compliance['retention']:.3f}" in refusal and "worse beyond the interval" in refusal
    assert all(not g["worse"] and g["retention"] > 1 for g in result["groups"] if g["name"] != "安全合规")
    # per task too: every compliance task is worse, no other
    by_task = compare_per_category(fineva, reference, candidate, levels=["task"])
    worse_tasks = {g["name"] for g in by_task["groups"] if g["worse"]}
    assert worse_tasks == {item["task"] for item in fineva if item["category"] == "安全合规"}


@needs_fineva
def test_within_the_interval_on_every_category_passes(fineva):
    reference = verdicts(fineva, lambda i, item: i % 2 == 0)
    # One item per category flips from right to wrong: every category is a little lower, within noise.
    first_right = {}
    for index, item in enumerate(fineva):
        if index % 2 == 0:
            first_right.setdefault(item["category"], index)
    lost = set(first_right.values())
    candidate = verdicts(fineva, lambda i, item: i % 2 == 0 and i not in lost)
    result = compare_per_category(fineva, reference, candidate)
    assert result["passed"] and result["refusals"] == [] and result["warnings"] == []
    for g in result["groups"]:
        assert g["retention"] < 1 and g["retention_ci"][0] < 1 <= g["retention_ci"][1] and not g["worse"]
        assert g["difference_ci"][0] < 0 <= g["difference_ci"][1]
    # seeded: the same intervals again
    assert compare_per_category(fineva, reference, candidate)["groups"] == result["groups"]


@needs_fineva
def test_an_all_empty_candidate_is_refused_whatever_the_silence_threshold(fineva):
    reference = verdicts(fineva, lambda i, item: i % 2 == 0)
    empty = verdicts(fineva, lambda i, item: "")
    for share in (0.5, 1.0):
        result = compare_per_category(fineva, reference, empty, max_silent_share=share)
        assert not result["passed"]
        assert result["refusals"][0] == f"{len(fineva)} of {len(fineva)} candidate outputs are empty or degenerate " \
                                        f"(reference: 0 of {len(fineva)})"
        assert all(g["worse"] and g["candidate"] == 0 for g in result["groups"])
    # even against a reference that said nothing either (both score 0: nothing to lose, still refused)
    result = compare_per_category(fineva, empty, empty, max_silent_share=1.0)
    assert not result["passed"] and "empty or degenerate" in result["refusals"][0]
    assert all(g["retention"] is None for g in result["groups"])


def test_empty_outputs_scored_as_refusals_are_voided(sample_items):
    """An older scorer gave "" the refusal credit of "资料中没有相关信息" on unanswerable items: the gate voids those
    verdicts again, so a candidate silent on every unanswerable item is refused on that category."""
    reference = verdicts(sample_items, lambda i, item: True)
    candidate = verdicts(sample_items, lambda i, item: "" if item["type"] == "refusal" else True)
    old_style = [{**r, "score": 1.0, "extracted": "refused", "degenerate": None} if r["type"] == "refusal" else r
                 for r in candidate]
    silent = sum(1 for item in sample_items if item["type"] == "refusal")
    assert 0 < silent / len(sample_items) < 0.5  # too few to trip the silence rule: the category rule must catch it
    for records in (candidate, old_style):
        result = compare_per_category(sample_items, reference, records)
        assert not result["passed"]
        hallucination = group(result, "hallucination")
        assert hallucination["worse"] and hallucination["candidate"] == 0 and hallucination["retention"] == 0
        assert result["silent"]["candidate"] == silent
        assert [g["name"] for g in result["groups"] if g["worse"]] == ["hallucination"]


def test_retention_is_undefined_where_the_reference_scores_zero(sample_items):
    # The reference never answers an intent right; the candidate does on half. Elsewhere both are right.
    reference = verdicts(sample_items, lambda i, item: item["task"] != "intent")
    candidate = verdicts(sample_items, lambda i, item: item["task"] != "intent" or i % 2 == 0)
    result = compare_per_category(sample_items, reference, candidate, levels=["task"], min_items=10)
    intent = group(result, "intent", "task")
    assert intent["reference"] == 0 and intent["candidate"] > 0
    assert intent["retention"] is None and intent["retention_ci"] is None and not intent["worse"]
    assert "retention undefined (the reference scores 0 here" in intent["summary"]
    assert intent["summary"] in result["warnings"] and result["passed"]
    # nowhere is it called 1.0 or 0
    assert "retention 1.000" not in intent["summary"] and "retention 0.000" not in intent["summary"]


def test_too_few_items_is_said_and_decided_by_the_configured_rule(sample_items):
    items = [i for i in sample_items if i["task"] in ("mcq", "intent")]  # 20 items in each category
    reference = verdicts(items, lambda i, item: True)
    lost = next(index for index, item in enumerate(items) if item["task"] == "mcq")
    candidate = verdicts(items, lambda i, item: i != lost)  # one mcq item lost
    point = compare_per_category(items, reference, candidate, min_items=30, few_items="point")
    knowledge = group(point, "knowledge")
    assert not knowledge["trusted"] and knowledge["decided_by"] == "point" and knowledge["worse"]
    assert "only 20 items (< min_items 30): the comparison cannot be trusted, decided by few_items=point" in \
        knowledge["summary"]
    assert not point["passed"] and "retention 0.950 < min_retention 1.0" in point["refusals"][0]
    # the same loss, decided by its (wide) interval: not beyond noise, passes, and the warning says why
    lenient = compare_per_category(items, reference, candidate, min_items=30, few_items="interval")
    assert lenient["passed"] and group(lenient, "knowledge")["decided_by"] == "interval"
    assert any("cannot be trusted" in w for w in lenient["warnings"])
    # refuse: a category too small to compare refuses even an identical candidate
    strict = compare_per_category(items, reference, reference, min_items=30, few_items="refuse")
    assert not strict["passed"] and all("too few items to compare" in r for r in strict["refusals"])
    # enough items: the interval decides, the comparison is trusted
    trusted = compare_per_category(items, reference, candidate, min_items=20)
    assert trusted["passed"] and group(trusted, "knowledge")["trusted"] and trusted["warnings"] == []


def test_bad_settings_and_mismatched_runs_are_one_clear_line(sample_items):
    reference = verdicts(sample_items, lambda i, item: True)
    with pytest.raises(DomainlmError, match="levels must be among task, category, subcategory .got topic"):
        compare_per_category(sample_items, reference, reference, levels=["topic"])
    with pytest.raises(DomainlmError, match="few_items must be one of point, interval, refuse"):
        compare_per_category(sample_items, reference, reference, few_items="skip")
    with pytest.raises(DomainlmError, match="not scored on the same items"):
        compare_per_category(sample_items, reference, reference[::-1])


def test_paired_ratios_decide_as_the_excess_would_with_no_resample_left_out():
    import numpy as np

    from domainlm.evals.stats import paired_ratios, percentile_bounds

    rng = np.random.default_rng(0)
    a = rng.choice([0.0, 0.1, 0.2, 0.5], size=1000)  # the reference scores 0 in a quarter of the resamples
    b = np.clip(a + rng.normal(0, 0.1, size=1000), 0, 1) * rng.integers(0, 2, size=1000)
    ratios = paired_ratios(a, b)
    assert ratios[(a == 0) & (b == 0)].tolist() == [1.0] * int(((a == 0) & (b == 0)).sum())
    assert np.isinf(ratios[(a == 0) & (b > 0)]).all()
    for t in (0.5, 0.9, 1.0):
        for level in (0.8, 0.95):
            below = percentile_bounds(ratios, level)[1] < t
            assert below == (percentile_bounds(b - t * a, level)[1] < 0)
