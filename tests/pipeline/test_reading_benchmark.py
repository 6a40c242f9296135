"""benchmarks/reading.py --quick: the reading benchmark's whole path on the tiny sample."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reading.py"


def test_quick_path_splits_taught_and_held_out_facts_and_runs_both_probes(tmp_path):
    spec = importlib.util.spec_from_file_location("reading_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "reading.json"
    result = module.main(["--quick", "--out", str(out), "--work", str(tmp_path / "work")])
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(result))
    systems = [(row["system"], row["sft_steps"]) for row in result["results"]]
    assert systems == [("KB extractive reader (no model)", 0), ("tuned (closed-book)", 2), ("tuned + KB", 2)]
    questions = [json.loads(line) for line in (tmp_path / "work" / "artifacts" / "synth" / "eval"
                                               / "synth_knowledge_qa.jsonl").read_text(encoding="utf-8").splitlines()]
    held_out = sum(not q["meta"]["seen_in_train"] for q in questions)
    for row in result["results"]:
        assert row["held-out"]["n"] == held_out > 0 and row["taught"]["n"] == len(questions) - held_out
    # The extractive reader finds the value in its passages: the reference the model rows are read against.
    assert result["results"][0]["held-out"]["contains"] > 0.5
    assert [p["probe"] for p in result["probes"]] == ["copy", "lookup"]
    assert all(0.0 <= p["exact_match"] <= 1.0 and p["n"] == 64 for p in result["probes"])
