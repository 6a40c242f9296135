"""The GPU benchmark script runs end to end on CPU with a tiny shape (its real numbers need a GPU)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_train.py"


def test_gpu_benchmark_tiny_cpu_smoke(tmp_path):
    out = tmp_path / "gpu_train.json"
    variants = ["tiny:lora:plain:2:1:0", "tiny:lora:domainlm:2:0:0"]  # the reference setting and ours
    run = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out), "--variants", *variants],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["impl"], r["method"], r["grad_checkpointing"]) for r in rows] == [("plain", "lora", True),
                                                                               ("domainlm", "lora", False)]
    assert all(r["tokens_per_s"] > 0 and r["final_loss"] > 0 for r in rows)
    # both implementations start from the same weights and data: their first losses agree
    losses = {(r["impl"], r["method"]): r["final_loss"] for r in rows}
    assert abs(losses[("plain", "lora")] - losses[("domainlm", "lora")]) < 0.05
    assert [s["method"] for s in result["summary"]] == ["lora"] and result["summary"][0]["speedup"] > 0
