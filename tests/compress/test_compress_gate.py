"""The quality gate refuses a result that lost too much (non-zero exit, artifact kept aside, source untouched);
the parity check refuses a template that drifted."""

from __future__ import annotations

import subprocess
import sys

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
    assert (out / "rejected" / "model" / "config.json").is_file()  # kept aside ...
    assert not (out / "model").exists()  # ... not promoted
    assert not (out / "manifest.json").exists()  # a refused run is not a finished stage
    assert _hashes(teacher) == before


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
