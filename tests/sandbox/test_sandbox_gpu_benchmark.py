"""benchmarks/sandbox_gpu.py --quick: the GPU benchmark's whole path on tiny CPU shapes."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sandbox_gpu.py"


def test_quick_path_writes_every_measurement(tmp_path, cmrc_path):
    spec = importlib.util.spec_from_file_location("sandbox_gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "result.json"
    report = module.main(["--quick", "--device", "cpu", "--out", str(out), "--work", str(tmp_path / "work")])
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(json.dumps(report))
    assert report["mode"] == "quick" and report["device"] == "cpu"
    metrics = {row["metric"]: row["value"] for row in report["results"]}
    assert metrics["proxy runs per device-hour"] > 0
    assert 0.01 <= metrics["best lr of the 4x wider model"] <= 0.27
    assert set(report["details"]["lr_optimum_at_grid_edge"]) == {"wide", "proxies"}
    assert metrics["loss at 10x compute"] > 0 and metrics["loss predicted at 10x compute"] > 0
    assert metrics["bits per parameter (highest exposures)"] >= 0
    for key, value in report["ratios"].items():
        assert value is not None and math.isfinite(value), key
