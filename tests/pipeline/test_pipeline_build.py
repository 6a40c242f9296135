"""The whole line on the sample domain at its smallest size, and build's stage selection and errors."""

import json

import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.io import read_json
from domainlm.pipeline import build, demo
from domainlm.sample import generate_sample


def _workspace(tmp_path, extra=""):
    generate_sample(tmp_path / "sample", seed=0, size="tiny")
    (tmp_path / "domainlm.yaml").write_text(
        "name: t\nsources: [sample/docs, sample/web]\n"
        "tasks: {train: [sample/tasks/train], eval: [sample/tasks/eval]}\n"
        "kb: {embedder: none}\n" + extra,
        encoding="utf-8",
    )
    return tmp_path / "domainlm.yaml"


def test_until_runs_a_prefix_and_a_rerun_is_cached(tmp_path):
    config = _workspace(tmp_path)
    first = build(config, until="synth")
    assert [(o.name, o.status) for o in first.outcomes] == [("clean", "ran"), ("kb", "ran"), ("synth", "ran")]
    again = build(config, until="synth")
    assert [o.status for o in again.outcomes] == ["cached", "cached", "cached"]
    changed = build(config, ["synth.eval_only_fraction=0.5"], until="synth")
    assert [o.status for o in changed.outcomes] == ["cached", "cached", "ran"]
    only_kb = build(config, from_="kb", until="kb", force=True)
    assert [(o.name, o.status) for o in only_kb.outcomes] == [("kb", "ran")]


def test_failure_names_the_stage_and_keeps_finished_artifacts(tmp_path):
    config = _workspace(tmp_path)
    build(config, until="kb")
    kb_manifest = (tmp_path / "artifacts" / "kb" / "manifest.json").read_bytes()
    (tmp_path / "domainlm.yaml").write_text(config.read_text() + "train: {stages: [cpt, rlhf]}\n", encoding="utf-8")
    with pytest.raises(DomainlmError, match=r"build stopped at stage 'train': .*'rlhf' is not cpt or sft"):
        build(config, from_="train")
    assert (tmp_path / "artifacts" / "kb" / "manifest.json").read_bytes() == kb_manifest


def test_bad_stage_names_and_missing_sources(tmp_path, capsys):
    config = _workspace(tmp_path)
    with pytest.raises(DomainlmError, match="--until 'train2': expected one of clean, kb"):
        build(config, until="train2")
    with pytest.raises(DomainlmError, match="--from eval comes after --until kb"):
        build(config, from_="eval", until="kb")
    # A missing source is named before any stage runs (nothing is half built).
    assert main(["build", "-c", str(config), "sources=[nowhere]", "--until", "clean"]) == 2
    assert "domainlm.yaml: sources: 'nowhere' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "artifacts" / "clean").exists()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = demo(out, size="tiny", overrides=["compress.targets=[]"])
    return out, result


def test_demo_builds_every_stage_and_reports_numbers_from_the_artifacts(demo_run):
    out, result = demo_run
    assert [o.name for o in result.outcomes if o.status == "ran"] == ["clean", "kb", "synth", "train", "eval", "report"]
    assert result.report == out / "artifacts" / "report" / "report.html"
    summary = read_json(out / "artifacts" / "report" / "summary.json")
    results = read_json(out / "artifacts" / "eval" / "results.json")["variants"]
    for name, variant in results.items():
        assert summary["variants"][name]["overall"] == variant["overall"]["score"]
        for task, info in variant["tasks"].items():
            assert summary["variants"][name]["tasks"][task] == info["score"]
    extractive = read_json(out / "artifacts" / "eval-kb-extractive" / "results.json")
    assert summary["variants"]["kb-extractive"]["overall"] == extractive["overall"]["score"]
    # the tuned model beats the same architecture without training
    assert summary["variants"]["tuned"]["overall"] > summary["variants"]["base"]["overall"]
    # the refusal rate on unanswerable questions is reported for every variant
    for name in ("base", "tuned", "tuned+kb", "kb-extractive"):
        refusal = summary["variants"][name]["refusal"]
        assert refusal["n"] > 0 and 0.0 <= refusal["refusal_recall"] <= 1.0
    html = result.report.read_text(encoding="utf-8")
    assert f"{summary['variants']['tuned']['overall']:.4g}" in html
    assert "Hallucination" in html and "data:image/png;base64," in html  # loss curves embedded


def test_second_build_reruns_nothing(demo_run):
    out, _ = demo_run
    again = build(out / "domainlm.yaml", ["compress.targets=[]"])
    assert {o.status for o in again.outcomes} <= {"cached", "off"}
    assert json.loads((out / "artifacts" / "report" / "summary.json").read_text())["name"] == "harbor-bank-demo"


def test_a_gate_refusal_is_recorded_and_the_line_goes_on(demo_run, monkeypatch):
    """A compression target the quality gate refuses: kept aside, gate.json and the report say so, no
    variant is evaluated for it, and the build itself succeeds. (The gate's own decision is tested in
    tests/compress; here it is forced, so the line's handling is what is under test.)"""
    out, _ = demo_run
    monkeypatch.setattr("domainlm.compress.gate.retention", lambda source, result: 0.0)
    result = build(out / "domainlm.yaml", ["compress.targets=[int8]"], from_="compress")
    outcome = {o.name: o for o in result.outcomes}
    assert "int8 refused by the quality gate" in outcome["compress"].detail
    target = out / "artifacts" / "compressed" / "int8"
    gate = read_json(target / "gate.json")
    assert not gate["passed"] and gate["retention"] == 0.0
    assert (target / "rejected" / "model" / "config.json").is_file() and not (target / "model").exists()
    assert not (target / "manifest.json").exists()  # the next build tries the target again
    summary = read_json(out / "artifacts" / "report" / "summary.json")
    assert "int8" not in summary["variants"]
    assert summary["compression"]["int8"]["passed"] is False
    assert "Compression retention" in result.report.read_text(encoding="utf-8")


def test_serve_and_the_eval_stage_find_the_line_models_by_name(demo_run):
    from domainlm.serve.commands import line_model_and_kb

    out, _ = demo_run
    config = out / "domainlm.yaml"
    assert line_model_and_kb(config, []) == (str(out / "artifacts" / "models" / "sft"), str(out / "artifacts" / "kb"))
    # the eval stage recorded the variants as named models, the base being what cpt built from `tiny`
    variants = {v["name"]: v for v in read_json(out / "artifacts" / "eval" / "manifest.json")["config"]["variants"]}
    assert list(variants) == ["base", "tuned", "tuned+kb"]
    assert variants["tuned+kb"] == {"name": "tuned+kb", "model": str(out / "artifacts" / "models" / "sft"),
                                    "kb": str(out / "artifacts" / "kb")}
    assert variants["base"]["model"] != "tiny" and (out / "artifacts" / "models" / "sft").is_dir()


def test_the_flywheel_starts_from_the_line_model_and_gates_on_its_suites(demo_run, tmp_path):
    out, _ = demo_run
    registry = tmp_path / "registry"
    code = main(["flywheel", "-c", str(out / "domainlm.yaml"), "--registry", str(registry),
                 "--db", f"sqlite:///{tmp_path / 'feedback.db'}"])
    assert code == 0
    state = read_json(registry / "registry.json")
    assert state["history"][0]["source"] == str(out / "artifacts" / "models" / "sft")
    decision = read_json(next((registry / "runs").glob("run-*")) / "decision.json")
    assert decision["decision"] == "skipped" and decision["rows"] == 0  # no feedback yet: nothing to train on
    assert decision["current"] == "v0001"
