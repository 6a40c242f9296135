"""`domainlm rebase NEW`: the line rebuilt on a new base with the same data, feedback, suites and seeds, the old
line kept, old vs new compared per suite and category with intervals; and a failed rebase leaves the workspace
as it was.

The line is the smallest that still has every part: the sample domain's documents, its train tasks, three of
its eval tasks (two categories) with an 8-token answer budget, random tiny models as bases A and B, 3 sft
steps. The numbers are noise, and the test only checks that they are computed, paired and labelled honestly."""

import shutil

import pytest
import yaml

from domainlm.cli import main
from domainlm.io import read_json, read_jsonl, write_json, write_jsonl
from domainlm.manifest import read_manifest
from domainlm.models.testing import make_tiny_model
from domainlm.pipeline import build, rebase
from domainlm.pipeline.rebase import accepted_feedback, built_base, updated_config_text
from domainlm.sample import generate_sample
from domainlm.workspace import load_workspace, load_workspace_config

EVAL_TASKS = ("mcq", "knowledge_qa", "unanswerable")


def _tree(folder):
    """Every file under ``folder`` with its bytes: what 'untouched' means."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _registry(folder, rows):
    """A flywheel registry in the format serve/flywheel.py writes: v0002 promoted from an sft turn, v0003 from a
    dpo turn, and a refused turn whose rows never served."""
    history = [{"version": "v0001", "run": None}, {"version": "v0002", "run": "run-0001"},
               {"version": "v0003", "run": "run-0002"}]
    write_json(folder / "registry.json", {"current": "v0003", "history": history})
    write_json(folder / "runs" / "run-0001" / "decision.json", {"stage": "sft", "decision": "promoted"})
    write_jsonl(folder / "runs" / "run-0001" / "feedback.jsonl", rows)
    write_json(folder / "runs" / "run-0002" / "decision.json", {"stage": "dpo", "decision": "promoted"})
    write_jsonl(folder / "runs" / "run-0002" / "feedback.jsonl", [{"prompt": "年费多少？", "chosen": "100元", "rejected": "不知道"}])
    write_json(folder / "runs" / "run-0003" / "decision.json", {"stage": "sft", "decision": "refused"})
    write_jsonl(folder / "runs" / "run-0003" / "feedback.jsonl", rows[:1])
    return folder


FEEDBACK = [{"messages": [{"role": "user", "content": "海港银行客服电话是多少？"},
                          {"role": "assistant", "content": "客服电话是400-818-5566。"}]},
            {"messages": [{"role": "user", "content": "定期存款可以提前支取吗？"},
                          {"role": "assistant", "content": "可以，提前支取部分按活期利率计息。"}]}]


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebase")
    generate_sample(root / "sample", seed=0, size="tiny")
    suite = root / "suite"
    suite.mkdir()
    for task in EVAL_TASKS:
        shutil.copy(root / "sample" / "tasks" / "eval" / f"{task}.jsonl", suite)
    (suite / "suite.yaml").write_text("name: bank\nmax_new_tokens: 8\n", encoding="utf-8")
    base_a, base_b = make_tiny_model(root / "base-a", seed=0), make_tiny_model(root / "base-b", seed=1)
    config = root / "domainlm.yaml"
    config.write_text(
        "# the bank's line\nname: t\nsources: [sample/docs]\n"
        "tasks:\n  train: [sample/tasks/train]\n  eval: [suite]\n"
        "kb: {embedder: none}\nsynth: {enabled: false}\nretrieval: {train: false}\n"
        f"train:\n  # the general model we start from\n  base: {base_a}\n  stages: [sft]\n"
        "  max_steps: 3\n  min_steps: 0\n  seq_len: 128\n  batch_size: 4\n"
        "compress: {targets: []}\neval: {limit: 4}\n", encoding="utf-8")
    build(config)
    return root, config, base_a, base_b


def test_a_bad_new_base_is_one_line_and_touches_nothing(line, capsys):
    root, config, base_a, _ = line
    before = _tree(root / "artifacts"), config.read_bytes()
    assert main(["rebase", str(root / "no-such-model"), "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: rebase: model spec") and "no-such-model" in err[0]
    assert main(["rebase", str(base_a), "-c", str(config)]) == 2  # the line is on A already
    assert "already built on" in capsys.readouterr().err
    assert (_tree(root / "artifacts"), config.read_bytes()) == before


def test_a_build_that_fails_on_the_new_base_puts_the_old_line_back(line, capsys):
    root, config, base_a, _ = line
    broken = root / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")  # a model folder by its spec, not loadable
    models_before = _tree(root / "artifacts" / "models")
    eval_before = _tree(root / "artifacts" / "eval")
    yaml_before = config.read_bytes()
    assert main(["rebase", str(broken), "-c", str(config)]) != 0
    err = capsys.readouterr().err
    assert "error: build stopped at stage 'train'" in err
    assert _tree(root / "artifacts" / "models") == models_before and _tree(root / "artifacts" / "eval") == eval_before
    assert config.read_bytes() == yaml_before
    snapshot = next((root / "artifacts" / "rebase").glob("*-base-a"))
    assert read_json(snapshot / "snapshot.json")["state"] == "failed"
    assert (snapshot / "failed").is_dir()  # the partial new line is kept for a look, out of the way
    shutil.rmtree(snapshot)
    assert built_base(load_workspace(config)) == str(base_a)


def test_rebase_compares_old_and_new_per_category_and_moves_the_workspace(line, tmp_path):
    root, config, base_a, base_b = line
    old_sft = read_manifest(root / "artifacts" / "models" / "sft")
    registry = _registry(tmp_path / "registry", FEEDBACK)
    result = rebase(config, str(base_b), registry=registry)

    # the old model is kept whole, untouched, in the snapshot
    snapshot = result.snapshot
    old_model = snapshot / "old" / "models" / "sft"
    assert (old_model / "config.json").is_file() and read_manifest(old_model).config["base"] == str(base_a)
    assert read_manifest(old_model).started == old_sft.started
    assert (snapshot / "old" / "eval" / "tuned" / "predictions.jsonl").is_file()
    assert (snapshot / "old" / "report" / "summary.json").is_file()

    # the workspace is on B: its config (comments kept) and the models in place
    assert result.config_written and result.comments_kept
    text = config.read_text(encoding="utf-8")
    assert "# the general model we start from" in text
    cfg = load_workspace_config(config)
    assert cfg.train.base == str(base_b)
    assert built_base(load_workspace(config)) == str(base_b)

    # the accepted sft feedback is trained into the new line, and a later build keeps training on it
    feedback = cfg.tasks.train[-1]
    assert feedback.startswith("artifacts/rebase/feedback-")
    assert len(read_jsonl(root / feedback / "flywheel-sft.jsonl")) == len(FEEDBACK)
    sft_inputs = read_manifest(root / "artifacts" / "models" / "sft").inputs
    assert any(path.endswith("flywheel-sft.jsonl") for path in sft_inputs)

    # old vs new per variant, suite and category, with the paired interval and a verdict that follows it
    comparison = read_json(result.comparison)
    items = [item for task in EVAL_TASKS for item in read_jsonl(root / "suite" / f"{task}.jsonl")]
    categories = {item["category"] for item in items}
    assert len(categories) >= 2
    tuned = [r for r in comparison["rows"] if r["variant"] == "tuned"]
    assert {r["category"] for r in tuned} == categories | {"(all)"}
    for row in comparison["rows"]:
        lo, hi = row["difference_ci"]
        assert lo <= row["difference"] <= hi
        assert row["new"] - row["old"] == pytest.approx(row["difference"], abs=1e-5)
        assert row["verdict"] == ("better" if lo > 0 else "worse" if hi < 0 else "no clear difference")
        assert not row["trusted"]  # 4 items per task: the report must not present these as solid
    assert any("fewer than 30 items" in w for w in comparison["warnings"])
    assert any("dpo rows" in w and "run-0002" in w for w in comparison["warnings"])  # not retrained, and said so
    assert comparison["feedback"]["runs"] == ["run-0001"]  # the refused turn's rows never served
    examples = comparison["examples"]
    assert examples and all(e["question"] and "old" in e and "new" in e for e in examples)
    markdown = (snapshot / "rebase.md").read_text(encoding="utf-8")
    assert f"{base_a} → {base_b}" in markdown and "| tuned | bank |" in markdown

    # the line report shows the same comparison, and a rebuild changes nothing
    summary = read_json(root / "artifacts" / "report" / "summary.json")
    assert summary["rebase"]["rows"] == comparison["rows"]
    assert "Old base vs new base" in (root / "artifacts" / "report" / "report.html").read_text(encoding="utf-8")
    again = build(config)
    assert {o.status for o in again.outcomes} <= {"cached", "off"} and again.rebase is None


def test_keep_old_compares_but_leaves_the_workspace_on_the_old_base(line):
    root, config, base_a, base_b = line  # the workspace is on B now (the test above)
    models_before, yaml_before = _tree(root / "artifacts" / "models"), config.read_bytes()
    result = rebase(config, str(base_a), keep_old=True)
    assert not result.config_written and config.read_bytes() == yaml_before
    assert _tree(root / "artifacts" / "models") == models_before
    assert read_manifest(result.snapshot / "new" / "models" / "sft").config["base"] == str(base_a)
    assert read_json(result.snapshot / "snapshot.json")["state"] == "kept-old"
    comparison = read_json(result.comparison)
    assert (comparison["old_base"], comparison["new_base"]) == (str(base_b), str(base_a)) and comparison["rows"]


def test_build_with_a_new_base_takes_the_same_path(line):
    """`domainlm build train.base=NEW` keeps the old line and reports old vs new, as rebase does; it only does
    not write domainlm.yaml (an override is for this run)."""
    root, config, base_a, base_b = line
    yaml_before = config.read_bytes()
    result = build(config, [f"train.base={base_a}"])
    assert result.rebase is not None and config.read_bytes() == yaml_before
    assert read_manifest(result.rebase / "old" / "models" / "sft").config["base"] == str(base_b)
    summary = read_json(root / "artifacts" / "report" / "summary.json")
    assert (summary["rebase"]["old_base"], summary["rebase"]["new_base"]) == (str(base_b), str(base_a))
    assert summary["rebase"]["rows"] == read_json(result.rebase / "rebase.json")["rows"]
    assert any(w.startswith("rebase: ") for w in summary["warnings"])


def test_accepted_feedback_is_what_the_serving_model_trained_on(tmp_path):
    registry = _registry(tmp_path / "registry", FEEDBACK + FEEDBACK[:1])  # one row trained twice: kept once
    info = accepted_feedback(registry, tmp_path / "out")
    assert info["runs"] == ["run-0001"] and info["rows"] == 2
    assert info["not_retrained"] == [{"run": "run-0002", "stage": "dpo", "rows": 1}]
    assert read_jsonl(tmp_path / "out" / "flywheel-sft.jsonl") == FEEDBACK


def test_config_update_keeps_comments_and_falls_back_when_a_key_is_missing():
    text = "# top\ntrain:\n  # base\n  base: tiny  # was tiny\n  stages: [sft]\ntasks:\n  train:\n    - a\n"
    new, kept = updated_config_text(text, {("train", "base"): "openai:http://h/v1#m", ("tasks", "train"): ["a", "b"]})
    assert kept and "# base" in new and "# was tiny" in new
    data = yaml.safe_load(new)
    assert data["train"]["base"] == "openai:http://h/v1#m" and data["tasks"]["train"] == ["a", "b"]
    new, kept = updated_config_text("name: x\n", {("train", "base"): "2025"})
    assert not kept and yaml.safe_load(new) == {"name": "x", "train": {"base": "2025"}}
