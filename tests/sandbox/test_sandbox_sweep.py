"""Sweeps: muTransfer of the best LR across 4x width, parallel workers, resumption, errors, CLI."""

import json
import os

import pytest

pytest.importorskip("torch")

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.sandbox.fit import optimum_1d
from domainlm.sandbox.sweep import SweepConfig, random_points, run_sweep


def test_best_lr_transfers_to_4x_wider_model(tmp_path, cmrc_path):
    """The best LR found at width 32 is within a factor of 2 of the best at width 128 (muP)."""
    lrs = [0.01, 0.02, 0.04, 0.08]
    cfg = SweepConfig.model_validate({
        "data": {"sources": {"general": {"path": str(cmrc_path)}}, "max_chars": 150_000},
        "base": {"depth": 2, "base_width": 32, "tokens": 25_000, "seq_len": 32, "batch_size": 16, "eval_windows": 16},
        "search": {"method": "grid", "space": {"lr": lrs, "width": [32, 128]}},
        "workers": 2,  # two spawn-ed worker processes, as a real sweep runs
        "threads": 1,
    })
    records = run_sweep(cfg, tmp_path / "sweep", progress=False)
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    best = {}
    for width in (32, 128):
        line = {r["config"]["lr"]: r["val_loss"] for r in records if r["config"]["width"] == width}
        best[width] = optimum_1d(list(line), list(line.values()))
    ratio = max(best[32], best[128]) / min(best[32], best[128])
    assert ratio <= 2.0, best
    # wider is better at the transferred LR: the sweep measures something real
    at = {r["config"]["width"]: r["val_loss"] for r in records if r["config"]["lr"] == 0.04}
    assert at[128] < at[32]


def _tiny_cfg(tmp_path, source, **search) -> SweepConfig:
    return SweepConfig.model_validate({
        "data": {"sources": {"industry": {"path": str(source)}}},
        "base": {"width": 16, "base_width": 16, "depth": 1, "tokens": 1_000, "seq_len": 16, "batch_size": 4,
                 "eval_windows": 2},
        "search": {"method": "grid", "space": {"lr": [0.01, 0.03]}, **search},
        "workers": 1,
        "threads": 1,
    })


def test_sweep_resumes_and_retries_failed_runs(tmp_path, sample_dir):
    cfg = _tiny_cfg(tmp_path, sample_dir, space={"lr": [0.01, 0.03], "width": [16, 20]})  # 20: 4 heads of 5, fails
    out = tmp_path / "sweep"
    records = run_sweep(cfg, out, progress=False)
    status = sorted((r["config"]["width"], r["status"]) for r in records)
    assert status == [(16, "ok"), (16, "ok"), (20, "failed"), (20, "failed")]
    assert "even size" in next(r for r in records if r["status"] == "failed")["error"]
    files = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert len(files) == 4
    # re-run: finished runs are skipped (files untouched), failed ones are tried again
    again = run_sweep(cfg, out, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    ok_files = [f"{r['id']}.json" for r in again if r["status"] == "ok"]
    assert all(after[name] == files[name] for name in ok_files)
    assert [r["val_loss"] for r in again if r["status"] == "ok"] == [r["val_loss"] for r in records if r["status"] == "ok"]
    os.remove(out / "runs" / ok_files[0])
    third = run_sweep(cfg, out, progress=False)
    assert (out / "runs" / ok_files[0]).exists() and len(third) == 4


def test_random_and_bayes_search(tmp_path, sample_dir):
    space = {"lr": {"low": 0.001, "high": 0.1}, "batch_size": [2, 4]}
    assert random_points(SweepConfig.model_validate({"data": {"sources": {"a": {"path": "x"}}},
                                                     "search": {"method": "random", "space": space}}).search.space, 3, 0) \
        == random_points(SweepConfig.model_validate({"data": {"sources": {"a": {"path": "x"}}},
                                                     "search": {"method": "random", "space": space}}).search.space, 3, 0)
    pytest.importorskip("optuna")
    cfg = _tiny_cfg(tmp_path, sample_dir, method="bayes", trials=3, space=space)
    records = run_sweep(cfg, tmp_path / "bayes", progress=False)
    assert len(records) == 3 and all(0.001 <= r["config"]["lr"] <= 0.1 for r in records)
    # seeded sampler + same history: a re-run asks the same points and trains nothing new
    mtimes = sorted(p.stat().st_mtime_ns for p in (tmp_path / "bayes" / "runs").glob("*.json"))
    run_sweep(cfg, tmp_path / "bayes", progress=False)
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "bayes" / "runs").glob("*.json")) == mtimes


def test_config_errors_name_the_key(tmp_path, capsys):
    bad = tmp_path / "sweep.yaml"
    bad.write_text("data:\n  sources:\n    a: {path: x.txt}\nbase:\n  widht: 64\n", encoding="utf-8")
    assert main(["sandbox", "sweep", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "sweep.yaml" in err and "widht" in err
    with pytest.raises(ValueError, match="no data source named 'web'"):
        SweepConfig.model_validate({"data": {"sources": {"a": {"path": "x"}}}, "search": {"space": {"mix.web": [0.5]}}})
    missing = tmp_path / "m.yaml"
    missing.write_text("data:\n  sources:\n    a: {path: nowhere.txt}\n", encoding="utf-8")
    assert main(["sandbox", "sweep", "--config", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere.txt" in capsys.readouterr().err


def test_cli_sweep_fit_predict_on_sample_domain(tmp_path, sample_dir, cmrc_path, capsys):
    sweep_yaml = tmp_path / "sweep.yaml"
    sweep_yaml.write_text(
        f"name: mix\ndata:\n  sources:\n    industry: {{path: {sample_dir}, weight: 0.7}}\n"
        f"    general: {{path: {cmrc_path}, weight: 0.3}}\n  max_chars: 30000\n"
        "base: {width: 16, base_width: 16, depth: 1, tokens: 2000, seq_len: 16, batch_size: 4, eval_windows: 2}\n"
        "search:\n  space:\n    lr: [0.01, 0.03]\n    width: [16, 32]\n    mix.industry: [0.7]\nworkers: 1\nthreads: 1\n",
        encoding="utf-8")
    out = tmp_path / "runs"
    assert main(["sandbox", "sweep", "--config", str(sweep_yaml), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and set(rows[0]["val_losses"]) == {"industry", "general"}
    assert rows[0]["config"]["mix"] == {"industry": 0.7, "general": 0.3}
    assert (out / "results.csv").read_text().startswith("id,status,val_loss")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["runs"] == 4
    capsys.readouterr()
    assert main(["sandbox", "sweep", "--config", str(sweep_yaml), "--out", str(out)]) == 0
    assert "up to date" in capsys.readouterr().err
    assert main(["sandbox", "fit", str(out), "--out", str(tmp_path / "fit"), "--boot", "10"]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert "lr" in fit["fits"] and (tmp_path / "fit" / "report.html").read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()
    assert main(["sandbox", "predict", "--fit", str(tmp_path / "fit"), "--params", "1e6", "--tokens", "1e8",
                 "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert predicted["lr"]["value"] > 0 and predicted["compute"] == 6e14


def test_load_results_rejects_foreign_json(tmp_path):
    from domainlm.sandbox.sweep import load_results

    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(DomainlmError, match="not a sandbox run result"):
        load_results([tmp_path])
