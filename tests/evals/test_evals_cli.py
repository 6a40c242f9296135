"""The eval command stays torch-free until a model is needed, and prints a short summary."""

import json
import subprocess
import sys


def test_importing_evals_and_cli_help_do_not_import_torch():
    code = ("import sys, domainlm.evals.commands, domainlm.evals.stage, domainlm.evals.aggregate, domainlm.report;"
            "from domainlm.cli import app; assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_command_rescoring_prints_scores(tmp_path, capsys):
    from domainlm.cli import main

    suite = tmp_path / "s"
    suite.mkdir()
    (suite / "t.jsonl").write_text(
        "\n".join(json.dumps({"id": str(i), "type": "mcq", "choices": ["a", "b"], "answer": "A"}) for i in range(4)),
        encoding="utf-8")
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(json.dumps({"id": str(i), "output": "答案是A" if i < 3 else "B"}) for i in range(4)),
                     encoding="utf-8")
    code = main(["eval", "--suite", str(suite), "--predictions", str(preds), "--out", str(tmp_path / "o")])
    assert code == 0
    assert "score 0.7500" in capsys.readouterr().err
    results = json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))
    assert results["tasks"]["t"]["n"] == 4 and results["tasks"]["t"]["score"] == 0.75
    assert "density" not in results  # no model ran: no compute to report


def test_failed_eval_leaves_no_empty_output_folder(tmp_path, capsys):
    from domainlm.cli import main

    suite = tmp_path / "s"
    suite.mkdir()
    (suite / "t.jsonl").write_text(json.dumps({"id": "0", "type": "mcq", "choices": ["a", "b"], "answer": "A"}) + "\n",
                                   encoding="utf-8")
    preds = tmp_path / "p.jsonl"
    preds.write_text("{broken\n", encoding="utf-8")
    out = tmp_path / "o"
    assert main(["eval", "--suite", str(suite), "--predictions", str(preds), "--out", str(out)]) == 2
    assert f"{preds}:1: not valid JSON" in capsys.readouterr().err
    assert not out.exists()  # created by the failed run: removed
    out.mkdir()  # a folder that existed before stays
    assert main(["eval", "--suite", str(suite), "--predictions", str(preds), "--out", str(out)]) == 2
    assert out.is_dir()
    capsys.readouterr()
