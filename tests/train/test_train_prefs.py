"""dpo on preference pairs and kto on thumbs-up/down feedback rows, with TRL, on a tiny model."""

import json

from domainlm.models import load_model
from domainlm.train import TrainConfig, train

PAIRS = [
    ("信用卡年费多少？", "首年免年费，次年刷卡满六次免年费。", "不知道。"),
    ("定期存款有哪些期限？", "三个月、六个月、一年、两年、三年和五年。", "随便。"),
    ("How long can a mortgage last?", "Up to thirty years.", "No idea."),
    ("What if I lose my card?", "Call the hotline to freeze it.", "Whatever."),
]


def margin(model_dir) -> float:
    """Mean log-likelihood advantage of the chosen answers over the rejected ones, in chat format."""
    model = load_model(model_dir)
    reqs = []
    for prompt, chosen, rejected in PAIRS:
        ctx = model.render_chat([{"role": "user", "content": prompt}])
        reqs += [(ctx, chosen), (ctx, rejected)]
    ll = model.loglikelihood(reqs)
    return sum(ll[i] - ll[i + 1] for i in range(0, len(ll), 2)) / len(PAIRS)


def test_dpo_moves_the_model_towards_chosen_answers(tmp_path, sample_model):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r}, ensure_ascii=False) + "\n"
                            for p, c, r in PAIRS), encoding="utf-8")
    cfg = TrainConfig(stage="dpo", batch_size=4, max_steps=8, lr=5e-3, seq_len=128)
    metrics = train(str(sample_model), [data], tmp_path / "dpo", cfg).metrics
    assert metrics["steps"] == 8 and metrics["records"] == 4
    assert margin(tmp_path / "dpo") > margin(sample_model) + 1.0
    assert (tmp_path / "dpo" / "loss.png").is_file() and (tmp_path / "dpo" / "manifest.json").is_file()


def test_kto_trains_on_feedback_export_rows(tmp_path, sample_model):
    rows = []
    for i, (prompt, chosen, rejected) in enumerate(PAIRS):
        rows.append({"id": f"u{i}", "time": "2026-01-01T00:00:00", "request": prompt, "response": chosen,
                     "rating": "up", "correction": None, "model": "m", "user": "a"})
        rows.append({"id": f"d{i}", "time": "2026-01-01T00:00:00", "request": prompt, "response": rejected,
                     "rating": "down", "correction": None, "model": "m", "user": "b"})
    data = tmp_path / "feedback.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = TrainConfig(stage="kto", method="lora", lora_r=8, batch_size=4, max_steps=8, lr=5e-3, seq_len=128)
    metrics = train(str(sample_model), [data], tmp_path / "kto", cfg).metrics
    assert metrics["steps"] == 8 and metrics["records"] == 8
    assert (tmp_path / "kto" / "adapter" / "adapter_config.json").is_file()
    assert margin(tmp_path / "kto") > margin(sample_model)
