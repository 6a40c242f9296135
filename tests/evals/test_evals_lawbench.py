"""LawBench parity: re-scoring the published predictions reproduces every published results.csv row."""

import csv
from pathlib import Path

import pytest

from domainlm.evals.lawbench import multi_choice_judge, score_file

LAWBENCH = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "lawbench"
ROWS = list(csv.DictReader((LAWBENCH / "results.csv").open(encoding="utf-8"))) if LAWBENCH.is_dir() else []


@pytest.mark.skipif(not ROWS, reason="shared/benchmarks/lawbench not present")
def test_all_nine_rows_present():
    assert len(ROWS) == 9


@pytest.mark.skipif(not ROWS, reason="shared/benchmarks/lawbench not present")
@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['task']}-{r['model_name']}")
def test_lawbench_row_reproduced_exactly(row):
    result = score_file(row["task"], LAWBENCH / "predictions" / "zero_shot" / row["model_name"] / f"{row['task']}.json")
    assert result["n"] == 500
    # The CSV holds pandas' rendering of the float: '%.16g', with "0.0" for zero. Our floats render the same.
    assert as_csv(result["score"]) == row["score"]
    assert as_csv(result["abstention_rate"]) == row["abstention_rate"]


def as_csv(value: float) -> str:
    text = format(value, ".16g")
    return text if any(c in text for c in ".e") else text + ".0"


def test_multi_choice_judge_rules():
    assert multi_choice_judge("[正确答案]B<eoa>", list("ABCD"), "B") == (1.0, False)
    assert multi_choice_judge("Because of A, B", list("ABCD"), "B") == (0.0, False)  # two options present
    assert multi_choice_judge("不知道", list("ABCD"), "B") == (0.0, True)  # abstention
