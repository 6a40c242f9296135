"""Fin-Eva dev loads as-is (types inferred, taxonomy applied) and breaks down by category/subcategory
exactly as the fixed prediction file dictates; bad inputs give one clear line naming file:line."""

import json
from collections import defaultdict
from pathlib import Path

import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.evals import EvalConfig, evaluate
from domainlm.evals.tasks import load_suite
from domainlm.io import read_json

FINEVA = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "fineva"
PREDICTIONS = Path(__file__).parent / "data" / "fineva_dev_predictions.jsonl"
needs_fineva = pytest.mark.skipif(not FINEVA.is_dir(), reason="shared/benchmarks/fineva not present")


@needs_fineva
def test_fineva_loads_with_inferred_types_and_taxonomy():
    suite = load_suite(FINEVA)
    assert len(suite.items) == 1419 and len(suite.tasks()) == 33
    kinds = defaultdict(set)
    for item in suite.items:
        kinds[item["category"]].add(item["type"])
    assert kinds["安全合规"] == {"yesno"}
    assert kinds["金融知识"] == {"mcq"}
    by_id = {i["id"]: i for i in suite.items}
    assert by_id["fineva-ant/financial_factuality/0"]["subcategory"] == "金融事实性"


@needs_fineva
def test_fineva_taxonomy_breakdown_with_fixed_predictions(tmp_path):
    # The fixed file answers row r correctly when r % 3 == 0, wrongly ("答案不是<gold>，而是<other>")
    # when r % 3 == 1, and not at all when r % 3 == 2 — so every expected number follows from row indices.
    results = read_json(evaluate(EvalConfig(suites=[str(FINEVA)], predictions=str(PREDICTIONS)), tmp_path / "run")
                        .outputs["results"])
    rows = [json.loads(line) for f in sorted(FINEVA.glob("*.jsonl")) for line in f.open(encoding="utf-8")]
    per_task = defaultdict(list)
    for row in rows:
        per_task[row["task"]].append(row["raw"]["row_index"] % 3)
    for task, mods in per_task.items():
        got = results["tasks"][task]
        assert got["n"] == len(mods) == 43
        assert got["score"] == pytest.approx(mods.count(0) / 43, abs=1e-6)
        assert got["unparseable"] == pytest.approx(mods.count(2) / 43, abs=1e-6)
        assert got["ci95"][0] <= got["score"] <= got["ci95"][1]
    category_tasks = defaultdict(list)
    for row in rows:
        if row["task"] not in category_tasks[row["category"]]:
            category_tasks[row["category"]].append(row["task"])
    assert set(results["categories"]) == {"内容生成", "安全合规", "金融知识", "金融认知", "金融逻辑"}
    for category, tasks in category_tasks.items():
        body = results["categories"][category]
        expected = sum(per_task[t].count(0) / 43 for t in tasks) / len(tasks)
        assert body["score"] == pytest.approx(expected, abs=1e-6)
        assert body["n"] == 43 * len(tasks)
        assert len(body["subcategories"]) == len(tasks)
    assert len(results["categories"]["金融知识"]["subcategories"]) == 14
    # Files written: predictions with extracted answers and verdicts, results, a self-contained report.
    out = tmp_path / "run"
    first = json.loads((out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert {"id", "output", "extracted", "gold", "score", "unparseable"} <= set(first)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "金融知识" in html and "data:image/svg+xml;base64," in html and "http" not in html.split("<body>")[1][:2000]
    assert (out / "manifest.json").is_file()


@needs_fineva
def test_rerun_is_cached_and_force_reruns(tmp_path):
    config = EvalConfig(suites=[str(FINEVA)], predictions=str(PREDICTIONS))
    evaluate(config, tmp_path)
    stamp = (tmp_path / "results.json").stat().st_mtime_ns
    assert evaluate(config, tmp_path).skipped
    assert (tmp_path / "results.json").stat().st_mtime_ns == stamp
    evaluate(config, tmp_path, force=True)
    assert (tmp_path / "results.json").stat().st_mtime_ns != stamp


def _suite(tmp_path, lines):
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "t.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return folder


def test_prediction_id_not_in_suite_is_one_line_error(tmp_path, capsys):
    folder = _suite(tmp_path, [{"id": "a", "type": "qa", "question": "q", "answer": "x"}])
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "a", "output": "x"}\n{"id": "zz", "output": "y"}\n', encoding="utf-8")
    code = main(["eval", "--suite", str(folder), "--predictions", str(preds), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{preds}:2: id 'zz' is not in the suite" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_type_is_one_line_error_naming_file_and_line(tmp_path):
    folder = _suite(tmp_path, [{"id": "a", "type": "qa", "answer": "x"}, {"id": "b", "type": "essay", "answer": "x"}])
    with pytest.raises(DomainlmError, match=r"t\.jsonl:2: item 'b' has unknown type 'essay'"):
        load_suite(folder)
    folder2 = tmp_path / "s2"
    folder2.mkdir()
    (folder2 / "u.jsonl").write_text('{"id": "c", "answer": "maybe"}\n', encoding="utf-8")
    with pytest.raises(DomainlmError, match=r"u\.jsonl:1: item 'c' has no 'type' and none can be inferred"):
        load_suite(folder2)


def test_missing_predictions_score_as_unparseable(tmp_path):
    folder = _suite(tmp_path, [{"id": "a", "type": "qa", "answer": "x"}, {"id": "b", "type": "qa", "answer": "y"}])
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": "a", "output": "x"}\n', encoding="utf-8")
    results = read_json(evaluate(EvalConfig(suites=[str(folder)], predictions=str(preds)), tmp_path / "out").outputs["results"])
    assert results["tasks"]["t"]["missing"] == 1
    assert results["tasks"]["t"]["score"] == 0.5 and results["tasks"]["t"]["unparseable"] == 0.5


@needs_fineva
def test_general_ability_panel_is_reported_apart(tmp_path):
    general = tmp_path / "general"
    general.mkdir()
    (general / "gen_qa.jsonl").write_text(
        "\n".join(json.dumps({"id": f"g{i}", "type": "qa", "question": "1+1=?", "answer": "2"}) for i in range(4)) + "\n",
        encoding="utf-8")
    preds = tmp_path / "p.jsonl"
    gen_preds = [json.dumps({"id": f"g{i}", "output": "2" if i < 3 else "3"}) for i in range(4)]
    preds.write_text(PREDICTIONS.read_text(encoding="utf-8") + "\n".join(gen_preds) + "\n", encoding="utf-8")
    result = evaluate(EvalConfig(suites=[str(FINEVA), str(general)], predictions=str(preds), general=[str(general)]),
                      tmp_path / "out")
    results = read_json(result.outputs["results"])
    assert results["general"]["tasks"] == ["gen_qa"] and results["general"]["score"] == 0.75
    assert len(results["domain"]["tasks"]) == 33
    assert "General ability kept" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    with pytest.raises(DomainlmError, match="--general"):
        evaluate(EvalConfig(suites=[str(FINEVA)], predictions=str(preds), general=[str(general)]), tmp_path / "o2")
