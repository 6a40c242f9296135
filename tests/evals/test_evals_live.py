"""Live evaluation with real tiny models on the Harbor Bank sample domain: greedy predictions do not
depend on batch size, variants (base / base+KB / another model) land in one table, density is reported."""

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from domainlm.errors import DomainlmError
from domainlm.evals import EvalConfig, Variant, evaluate, parse_variant, score
from domainlm.evals.tasks import load_suite
from domainlm.io import read_json


@pytest.fixture(scope="module")
def sample_suite(tmp_path_factory):
    """One item of every sample task (7 items), prompted raw so a random model still writes text."""
    from domainlm.sample import generate_sample

    root = tmp_path_factory.mktemp("live")
    generate_sample(root / "sample", seed=0, size="tiny")
    suite = root / "suite"
    suite.mkdir()
    for path in sorted((root / "sample" / "tasks" / "eval").glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()[:1]
        (suite / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(root / "sample" / "tasks" / "taxonomy.json", suite / "taxonomy.json")
    (suite / "suite.yaml").write_text("name: harbor\nmax_new_tokens: 6\nchat: false\n", encoding="utf-8")
    return root, suite


@pytest.fixture(scope="module")
def test_model(tmp_path_factory):
    from domainlm.models.testing import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("model") / "m"))


def test_batch_size_does_not_change_greedy_predictions(sample_suite, test_model):
    _, suite = sample_suite
    suites = [load_suite(suite)]
    one = score(test_model, suites, batch_size=1).records
    five = score(test_model, suites, batch_size=5).records
    strip = [{k: v for k, v in r.items()} for r in one]
    assert strip == five
    generated = [r for r in one if r["type"] != "mcq"]
    assert any(r["output"] for r in generated)  # real text, not a trivially equal empty string
    mcq = [r for r in one if r["type"] == "mcq"]
    assert mcq and all(len(r["loglikelihoods"]) == 4 for r in mcq)  # scored by log-likelihood


def test_variants_on_sample_domain_with_tiny(sample_suite, test_model, tmp_path):
    from domainlm.kb import KBConfig, build_kb

    root, suite = sample_suite
    docs = [json.loads(line) for line in (root / "sample" / "truth" / "documents.jsonl").open(encoding="utf-8")]
    build_kb([{"id": d["id"], "text": d["text"], "source": d["path"], "meta": {}} for d in docs], tmp_path / "kb",
             KBConfig(embedder="none", mine_terms=False))
    variants = ["base=tiny", f"base+kb=tiny@{tmp_path / 'kb'}", f"small={test_model}"]
    result = evaluate(EvalConfig(suites=[str(suite)], variants=variants, batch_size=4, kb_k=1), tmp_path / "out")
    results = read_json(result.outputs["results"])
    assert list(results["variants"]) == ["base", "base+kb", "small"]
    for name, run in results["variants"].items():
        assert run["n"] == 7
        assert set(run["tasks"]) == {"intent", "json_extract", "knowledge_qa", "mcq", "ner", "tool_call", "unanswerable"}
        for task in run["tasks"].values():
            assert 0.0 <= task["score"] <= 1.0 and "unparseable" in task
        d = run["density"]
        assert d["params"] > 0 and d["tokens_in"] > 0 and d["flops"] > 0 and d["wall_s"] > 0
        assert d["score_per_tflop"] is None or d["score_per_tflop"] >= 0
        assert (tmp_path / "out" / name / "predictions.jsonl").is_file()
    # Retrieval changed the prompts of the +KB variant only, for the types whose prompt has a context slot
    # (qa, mcq, json, refusal here; not intent, ner, tool_call), and is recorded per item.
    kb_preds = [json.loads(x) for x in (tmp_path / "out" / "base+kb" / "predictions.jsonl").open(encoding="utf-8")]
    base_preds = [json.loads(x) for x in (tmp_path / "out" / "base" / "predictions.jsonl").open(encoding="utf-8")]
    types = {json.loads(x)["id"]: json.loads(x)["type"] for f in suite.glob("*.jsonl") for x in f.open(encoding="utf-8")}
    with_passages = {types[p["id"]] for p in kb_preds if p.get("retrieved")}
    assert {"qa", "mcq", "refusal"} <= with_passages <= {"qa", "mcq", "json", "refusal"}
    assert not any("retrieved" in p for p in base_preds)
    assert sum(p["prompt_tokens"] for p in kb_preds) > sum(p["prompt_tokens"] for p in base_preds)
    # The smaller model has fewer parameters and spends fewer FLOPs per item.
    small, base = results["variants"]["small"]["density"], results["variants"]["base"]["density"]
    assert small["params"] < base["params"] and small["tflops_per_item"] < base["tflops_per_item"]
    # A live run's predictions.jsonl re-scores, without the model, to the same task scores.
    rescored = read_json(evaluate(EvalConfig(suites=[str(suite)], predictions=str(result.outputs["base/predictions"])),
                                  tmp_path / "rescored").outputs["results"])
    assert {t: v["score"] for t, v in rescored["tasks"].items()} == {
        t: v["score"] for t, v in results["variants"]["base"]["tasks"].items()}
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Variants by category" in html and "Density scatter" in html and html.count("<img") >= 3


def test_parse_variant():
    assert parse_variant("tuned+kb=out/model@out/kb") == ("tuned+kb", "out/model", "out/kb")
    assert parse_variant("base=openai:http://h:1/v1#m") == ("base", "openai:http://h:1/v1#m", None)
    with pytest.raises(Exception, match="NAME=MODEL"):
        parse_variant("tiny")


def test_variants_are_named_models_given_as_fields_or_as_command_line_text():
    config = EvalConfig(suites=["s"], variants=["tuned+kb=out/model@out/kb", Variant(name="base", model="tiny")])
    assert [(v.name, v.model, v.kb) for v in config.variants] == [("tuned+kb", "out/model", "out/kb"), ("base", "tiny", None)]
    assert [str(v) for v in config.variants] == ["tuned+kb=out/model@out/kb", "base=tiny"]
    with pytest.raises(DomainlmError, match="--variants 'tiny': expected NAME=MODEL"):
        EvalConfig(variants=["tiny"])


def test_pinned_judge_runs_and_is_recorded(tmp_path, test_model):
    suite = tmp_path / "gen"
    suite.mkdir()
    (suite / "summary.jsonl").write_text(json.dumps(
        {"id": "g1", "type": "generation", "question": "用一句话介绍金卡", "answer": "海港金卡年费100元。"},
        ensure_ascii=False) + "\n", encoding="utf-8")
    (suite / "suite.yaml").write_text(
        f"max_new_tokens: 4\nchat: false\njudge:\n  model: {test_model}\n  prompt: '参考：{{reference}} 回答：{{output}} 分数：'\n",
        encoding="utf-8")
    scored = score(test_model, [load_suite(suite)])
    results, records = scored.results, scored.records
    assert results["judge"]["model"] == test_model and results["judge"]["prompt"].startswith("参考：")
    assert "judge_output" in records[0] and 0.0 <= records[0]["judge_score"] <= 1.0
    assert records[0]["score"] == records[0]["judge_score"]
