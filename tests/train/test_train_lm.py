"""cpt and sft on the sample domain with real tiny models: learning, caching, exact resume, LoRA, templates."""

import json
import math
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from domainlm.train import TrainConfig, train


def docs(sample_dir):
    return [sample_dir / "truth" / "documents.jsonl"]


@pytest.fixture(scope="module")
def cpt_run(tmp_path_factory, sample_model, sample_dir):
    out = tmp_path_factory.mktemp("cpt") / "model"
    cfg = TrainConfig(stage="cpt", seq_len=64, batch_size=4, max_steps=30, lr=3e-3, eval_fraction=0.15, seed=1)
    return out, cfg, train(str(sample_model), docs(sample_dir), out, cfg)


def test_cpt_lowers_held_out_domain_perplexity(cpt_run):
    out, _, result = cpt_run
    metrics = result.metrics
    assert metrics["steps"] == 30 and metrics["held_out"] >= 2
    assert math.exp(metrics["eval_loss_end"]) < 0.5 * math.exp(metrics["eval_loss_start"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train-cpt" and manifest["metrics"]["eval_loss_end"] == metrics["eval_loss_end"]
    for name in ("model.safetensors", "config.json", "report.md", "loss.png", "train_log.jsonl"):
        assert (out / name).is_file(), name
    log = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    assert len(log) == 30 and log[-1]["loss"] < log[0]["loss"] and log[-1]["tokens_per_s"] > 0
    assert "held-out perplexity" in (out / "report.md").read_text()


def test_result_names_the_model_and_the_base_it_started_from(cpt_run, sample_model):
    out, _, result = cpt_run
    assert not result.skipped and result.stage == "train-cpt"
    assert result.outputs == {"model": out, "base": sample_model.resolve()}


def test_unchanged_rerun_skips(cpt_run, sample_model, sample_dir):
    out, cfg, first = cpt_run
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    again = train(str(sample_model), docs(sample_dir), out, cfg)
    assert again.skipped and again.outputs == first.outputs
    assert again.metrics["eval_loss_end"] == first.metrics["eval_loss_end"]
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, sample_model, sample_dir):
    cfg = TrainConfig(stage="cpt", seq_len=32, batch_size=2, grad_accum=2, max_steps=6, save_every=2, lr=2e-3,
                      eval_fraction=0.0)
    whole = tmp_path / "whole"
    train(str(sample_model), docs(sample_dir), whole, cfg)
    parts = tmp_path / "parts"
    stopped = train(str(sample_model), docs(sample_dir), parts, cfg, stop_after=3)
    assert stopped.metrics["interrupted"] and stopped.metrics["steps"] == 3 and stopped.outputs == {}
    assert not (parts / "manifest.json").exists() and (parts / "checkpoints" / "step-000003").is_dir()
    resumed = train(str(sample_model), docs(sample_dir), parts, cfg).metrics
    assert resumed["steps"] == 6
    a, b = load_file(whole / "model.safetensors"), load_file(parts / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    base = load_file(sample_model / "model.safetensors")
    assert any(not (a[k] == base[k]).all() for k in a)  # training did change the weights
    log_whole = [json.loads(line)["loss"] for line in (whole / "train_log.jsonl").open()]
    log_parts = [json.loads(line)["loss"] for line in (parts / "train_log.jsonl").open()]
    assert log_whole == log_parts


def test_lora_sft_keeps_the_base_chat_template_and_saves_adapter(tmp_path, sample_model, sample_dir):
    from transformers import AutoTokenizer

    from domainlm.models import load_model

    data = tmp_path / "tasks"
    data.mkdir()
    for task in ("mcq", "unanswerable"):
        shutil.copy(sample_dir / "tasks" / "train" / f"{task}.jsonl", data)
    out = tmp_path / "lora"
    cfg = TrainConfig(stage="sft", method="lora", lora_r=4, seq_len=256, batch_size=4, max_steps=3, lr=1e-3)
    metrics = train(str(sample_model), [data], out, cfg).metrics
    assert metrics["records"] == 40 and metrics["eval_loss_end"] < metrics["eval_loss_start"]
    assert (out / "adapter" / "adapter_config.json").is_file()
    base_tok, tok = AutoTokenizer.from_pretrained(sample_model), AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == base_tok.chat_template
    conv = [{"role": "user", "content": "海港银行客服热线？"}, {"role": "assistant", "content": "A"}]
    assert tok.apply_chat_template(conv, tokenize=False) == base_tok.apply_chat_template(conv, tokenize=False)
    merged = load_model(out)
    assert merged.info["params"] == load_model(sample_model).info["params"]
    assert load_model(out / "adapter").generate(["海港"], max_new_tokens=4) == merged.generate(["海港"], max_new_tokens=4)


def test_llama_architecture_trains_too(tmp_path, sample_dir):
    from domainlm.models.testing import make_tiny_model

    base = make_tiny_model(tmp_path / "llama", arch="llama")
    cfg = TrainConfig(stage="sft", seq_len=512, batch_size=4, max_steps=4, lr=3e-3, eval_fraction=0.2)
    metrics = train(str(base), [sample_dir / "tasks" / "train" / "intent.jsonl"], tmp_path / "out", cfg).metrics
    assert metrics["eval_loss_end"] < metrics["eval_loss_start"]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "llama"


def test_cli_reports_bad_data_in_one_line_and_writes_nothing(tmp_path, sample_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "domainlm", "train", "--base", str(sample_model), "--data", str(bad),
                          "--out", str(out), "--stage", "sft"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"error: {bad}:1: messages: no assistant turn to learn from (no usable sft record in the data)"]
    assert not out.exists()
    run = subprocess.run([sys.executable, "-m", "domainlm", "train", "--base", str(sample_model), "--data", str(bad),
                          "--out", str(out), "--stage", "rlhf"], capture_output=True, text=True)
    assert run.returncode == 2 and "error: --stage: String should match pattern" in run.stderr


def test_conversations_longer_than_seq_len_are_explained(tmp_path, sample_model, sample_dir):
    from domainlm.errors import DomainlmError

    cfg = TrainConfig(stage="sft", seq_len=16, max_steps=1)
    with pytest.raises(DomainlmError, match="cut at --seq-len 16 lost their answers"):
        train(str(sample_model), [sample_dir / "tasks" / "train" / "tool_call.jsonl"], tmp_path / "out", cfg)


def test_kb_adds_retrieval_augmented_copies_and_makes_the_kb_an_input(tmp_path, sample_model, sample_dir):
    from domainlm.kb import KBConfig, build_kb

    rows = [json.loads(x) for x in (sample_dir / "truth" / "documents.jsonl").open(encoding="utf-8")]
    build_kb([{"id": r["id"], "text": r["text"], "source": r["path"], "meta": {}} for r in rows], tmp_path / "kb",
             KBConfig(embedder="none", mine_terms=False))
    data = [sample_dir / "tasks" / "train" / "knowledge_qa.jsonl", sample_dir / "tasks" / "train" / "intent.jsonl"]
    n_qa = sum(1 for _ in data[0].open(encoding="utf-8"))
    n_intent = sum(1 for _ in data[1].open(encoding="utf-8"))
    out = tmp_path / "sft"
    run = subprocess.run([sys.executable, "-m", "domainlm", "train", "--base", str(sample_model), "--data", str(data[0]),
                          "--data", str(data[1]), "--out", str(out), "--stage", "sft", "--max-steps", "2", "--seq-len", "512",
                          "--kb", str(tmp_path / "kb"), "--kb-k", "2"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # every qa item once more with passages; intent prompts have no context slot
    assert manifest["metrics"]["records"] == 2 * n_qa + n_intent
    assert any(str(tmp_path / "kb") in path for path in manifest["inputs"])
