from domainlm.evals import EvalConfig, evaluate, limit_items
from domainlm.io import read_json, write_jsonl


def _items():
    return [{"id": f"{task}-{n}", "task": task} for task in ("a", "b") for n in range(10)] + [{"id": "c-0", "task": "c"}]


def test_limit_keeps_n_per_task_in_order_and_is_seeded():
    items = _items()
    picked = limit_items(items, 3, seed=0)
    assert [sum(1 for i in picked if i["task"] == t) for t in "abc"] == [3, 3, 1]
    assert picked == [i for i in items if i in picked]  # original order
    assert limit_items(items, 3, seed=0) == picked
    assert limit_items(items, 3, seed=1) != picked
    assert limit_items(items, 0, seed=0) == items


def test_limited_rescoring_accepts_predictions_for_every_item(tmp_path):
    suite = tmp_path / "suite"
    rows = [{"id": f"q{n}", "task": "qa", "category": "k", "subcategory": "k", "type": "qa", "question": f"问{n}",
             "choices": None, "answer": f"答{n}"} for n in range(8)]
    write_jsonl(suite / "qa.jsonl", rows)
    write_jsonl(tmp_path / "p.jsonl", [{"id": r["id"], "output": r["answer"]} for r in rows])
    result = evaluate(EvalConfig(suites=[str(suite)], predictions=str(tmp_path / "p.jsonl"), limit=3), tmp_path / "out")
    results = read_json(result.outputs["results"])
    assert results["tasks"]["qa"]["n"] == 3
    assert results["tasks"]["qa"]["score"] == 1.0
