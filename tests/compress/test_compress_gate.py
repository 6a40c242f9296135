"""The quality gate refuses a result that lost too much (non-zero exit, artifact kept aside, source untouched);
the parity check refuses a template that drifted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from domainlm.io import read_json, sha256_file


def _hashes(folder):
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_gate_refusal_exits_non_zero_and_leaves_the_source_untouched(teacher, gate_suite, train_files, tmp_path):
    before = _hashes(teacher)
    out = tmp_path / "student"
    cmd = [sys.executable, "-m", "domainlm", "compress", str(teacher), "--to", "distill", "--out", str(out),
           "--gate", str(gate_suite), "--min-retention", "1.0", "--student-layers", "1", "--steps", "0",
           "--data", next(f for f in train_files if f.endswith("knowledge_qa.jsonl"))]
    done = subprocess.run(cmd, capture_output=True, text=True)
    gate = read_json(out / "gate.json")
    assert gate["result"]["score"] < gate["source"]["score"]  # an untrained 1-layer student lost score
    assert done.returncode == 3
    assert "quality gate refused distill" in done.stderr
    assert not gate["passed"] and gate["retention"] < 1.0
    assert "retention" in gate["reason"] and gate["reason"] in done.stderr  # the why, in gate.json and on screen
    lo, hi = gate["retention_ci95"]
    assert lo <= gate["retention"] <= hi
    assert {"degenerate", "empty"} <= set(gate["source"]) and {"degenerate", "empty"} <= set(gate["result"])
    assert (out / "rejected" / "model" / "config.json").is_file()  # kept aside ...
    assert not (out / "model").exists()  # ... not promoted
    assert not (out / "manifest.json").exists()  # a refused run is not a finished stage
    assert _hashes(teacher) == before


def test_a_refusal_is_a_gate_refused_naming_its_report(teacher, gate_suite, train_files, tmp_path):
    from domainlm.compress import CompressConfig, GateRefused, compress

    out = tmp_path / "student"
    cfg = CompressConfig(target="distill", suites=[str(gate_suite)], min_retention=1.0, student_layers=1, steps=0,
                         data=[next(f for f in train_files if f.endswith("knowledge_qa.jsonl"))])
    with pytest.raises(GateRefused) as refused:
        compress(str(teacher), out, cfg)
    gate = read_json(out / "gate.json")
    assert refused.value.exit_code == 3 and refused.value.check == "gate"
    assert refused.value.gate == out / "gate.json" and refused.value.retention == gate["retention"] < 1.0
    assert refused.value.rejected == out / "rejected" / "model" and (refused.value.rejected / "config.json").is_file()


def test_cli_errors_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "domainlm", "compress", str(tmp_path / "nope"), "--to", "int8",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.strip().startswith("error:")
    assert "nope" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run([sys.executable, "-m", "domainlm", "compress", "tiny", "--to", "int3",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode != 0 and "int3" in done.stderr


def test_a_template_that_drifts_fails_parity_with_the_first_difference(teacher, tmp_path):
    import shutil

    from domainlm.compress.parity import check_parity

    drifted = tmp_path / "drifted"
    shutil.copytree(teacher, drifted)
    template = (drifted / "chat_template.jinja").read_text(encoding="utf-8")
    (drifted / "chat_template.jinja").write_text(template.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n\\n'"),
                                                 encoding="utf-8")
    report = check_parity(teacher, drifted, lossless=True)
    assert not report["passed"] and not report["template_identical"]
    assert "prompt 0" in report["failure"] and "character" in report["failure"]


# ---------------------------------------------------------------------------------------------
# Retention with its paired-bootstrap interval, and the refusals that no ratio can talk around.
# These score stored outputs on the sample's real gate items: no model runs.


def _gate_items(sample_root, per_task=20):
    from domainlm.evals.aggregate import all_items
    from domainlm.evals.tasks import load_suite

    items = all_items([load_suite(sample_root / "tasks" / "train")])
    kept = [i for i in items if i["task"] == "mcq"][:per_task] + [i for i in items if i["task"] == "knowledge_qa"][:per_task]
    assert len(kept) == 2 * per_task
    return kept


def _records(items, right):
    """Verdicts of a model answering ``right(index, item)`` items correctly; a wrong but real answer otherwise."""
    from domainlm.evals.aggregate import score_predictions
    from domainlm.prompts import render_answer

    outputs = {}
    for index, item in enumerate(items):
        answer = right(index, item)
        if answer is True:
            outputs[item["id"]] = render_answer(item)
        elif answer is False:
            outputs[item["id"]] = "D" if item["type"] == "mcq" and item["answer"] != "D" else "C" if item["type"] == "mcq" else "不清楚具体数值"
        else:
            outputs[item["id"]] = answer  # a given output ("" or a loop)
    return score_predictions(items, {k: {"id": k, "output": v} for k, v in outputs.items()})


def test_a_ratio_above_one_inside_its_interval_is_reported_as_noise(sample_root):
    from domainlm.compress.gate import gate_verdict

    items = _gate_items(sample_root)
    source = _records(items, lambda i, item: i % 2 == 0)  # half right
    result = _records(items, lambda i, item: i % 2 == 0 or i in (1, 21))  # two more right, one per task
    gate = gate_verdict(items, source, result, min_retention=0.9, seed=0)
    assert gate["retention"] == pytest.approx(1.1, abs=1e-3)
    lo, hi = gate["retention_ci95"]
    assert lo <= 1.0 <= hi and lo < gate["retention"] < hi
    assert gate["retention_note"] == "within noise" and gate["passed"] and gate["reason"] is None
    assert "within noise" in gate["message"] and "gain" not in gate["message"]
    # the same numbers again: the interval is seeded
    assert gate_verdict(items, source, result, min_retention=0.9, seed=0)["retention_ci95"] == [lo, hi]
    # identical outputs: retention exactly 1, no spread at all (the resamples are paired)
    same = gate_verdict(items, source, source, min_retention=0.9)
    assert same["retention"] == 1.0 and same["retention_ci95"] == [1.0, 1.0] and same["passed"]


def test_a_clear_loss_is_below_the_source_and_refused(sample_root):
    from domainlm.compress.gate import gate_verdict

    items = _gate_items(sample_root)
    source = _records(items, lambda i, item: i % 4 != 3)  # 3 in 4 right
    result = _records(items, lambda i, item: i % 4 == 0)  # 1 in 4 right
    gate = gate_verdict(items, source, result, min_retention=0.9)
    assert gate["retention"] == pytest.approx(1 / 3, abs=1e-3) and gate["retention_ci95"][1] < 1.0
    assert gate["retention_note"] == "below the source" and not gate["passed"]
    assert gate["reason"].startswith("retention 0.333 < 0.9")


def test_a_mostly_silent_result_is_refused_whatever_its_ratio(sample_root):
    from domainlm.compress.gate import gate_verdict

    items = _gate_items(sample_root)
    # The source answers a quarter right; the result answers those same items right and is silent
    # (empty or a loop) on 30 of 40: its ratio is 1.0, but it is broken.
    source = _records(items, lambda i, item: i % 4 == 0)
    silent = ["", "的" * 30, "。。。"]
    result = _records(items, lambda i, item: True if i % 4 == 0 else silent[i % 3])
    gate = gate_verdict(items, source, result, min_retention=0.0)
    assert gate["retention"] == pytest.approx(1.0)
    assert not gate["passed"] and "30 of 40 result outputs are empty or degenerate (source: 0 of 40)" in gate["reason"]
    assert gate["degenerate_share"] == {"source": 0.0, "result": 0.75}


def test_a_source_scoring_zero_cannot_be_retained(sample_root):
    from domainlm.compress.gate import gate_verdict

    items = _gate_items(sample_root)
    source = _records(items, lambda i, item: False)
    result = _records(items, lambda i, item: i % 2 == 0)
    gate = gate_verdict(items, source, result, min_retention=0.0)
    assert gate["retention"] is None and gate["retention_ci95"] is None and not gate["passed"]
    assert "source scores 0" in gate["reason"] and "cannot be measured" in gate["message"]
