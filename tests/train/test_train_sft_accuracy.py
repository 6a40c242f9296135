"""sft on the sample domain's training tasks raises accuracy on its eval tasks (scored by the eval stage's scorers)."""

import json

from domainlm.evals.scorers import score_item
from domainlm.models import load_model
from domainlm.train import TrainConfig, train
from domainlm.train.data import task_to_messages


def verdicts(model_dir, items) -> list[dict]:
    outputs = load_model(model_dir, batch_size=16).chat([task_to_messages(i)[0] for i in items], max_new_tokens=8)
    return [score_item(item, output) for item, output in zip(items, outputs, strict=True)]


def test_sft_beats_the_untrained_model_on_multiple_choice(tmp_path, sample_model, sample_dir):
    items = [json.loads(line) for line in (sample_dir / "tasks" / "eval" / "mcq.jsonl").open(encoding="utf-8")]
    before = verdicts(sample_model, items)
    cfg = TrainConfig(stage="sft", seq_len=128, batch_size=4, max_steps=40, lr=5e-3, eval_fraction=0.0)
    train(str(sample_model), [sample_dir / "tasks" / "train" / "mcq.jsonl"], tmp_path / "sft", cfg)
    after = verdicts(tmp_path / "sft", items)
    accuracy_before = sum(v["score"] for v in before) / len(items)
    accuracy_after = sum(v["score"] for v in after) / len(items)
    # the untrained model writes no answer letter at all; the trained one answers every item with a letter
    assert accuracy_before == 0.0 and sum(v["unparseable"] for v in before) == len(items)
    assert sum(v["unparseable"] for v in after) == 0
    assert accuracy_after >= accuracy_before + 0.25
