"""Multi-process training: the same `domainlm train` command under torchrun and accelerate, 2 CPU processes (gloo)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("launcher", ["torchrun", pytest.param("accelerate", marks=pytest.mark.slow)])
def test_two_process_cpu_run(launcher, tmp_path, sample_model, sample_dir):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "domainlm", "train", "--launcher", launcher, "--nproc", "2",
           "--base", str(sample_model), "--data", str(sample_dir / "truth" / "documents.jsonl"), "--out", str(out),
           "--stage", "cpt", "--max-steps", "2", "--seq-len", "32", "--batch-size", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((out / "manifest.json").read_text())["metrics"]
    assert metrics["world_size"] == 2
    # tokens are summed over both processes with an all-reduce: 2 steps x 2 processes x 2 sequences x 32
    assert metrics["tokens"] == 2 * 2 * 2 * 32
    assert (out / "model.safetensors").is_file()
