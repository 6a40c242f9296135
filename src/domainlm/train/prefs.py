"""dpo and kto: preference alignment with TRL's trainers, on the base model's own chat template.

dpo learns from pairs ``{"prompt", "chosen", "rejected"}``; kto from single rated answers
``{"prompt", "completion", "label"}`` — the shape of the serving issue's thumbs-up/down feedback export.
Both come as strings or as TRL's conversational message lists (``feedback export --conversational``), with
the request's ``tools`` alongside.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from domainlm.train.config import TrainConfig
from domainlm.train.data import Loaded
from domainlm.train.loop import LoopResult, pick_mixed_precision, write_report
from domainlm.train.model_setup import base_dtype, lora_config, save_trained
from domainlm.train.progress import (
    TrainProgress,
    check_trackers,
    finish_reporting,
    run_name,
    transformers_reporting,
)

ANSWERS = {"dpo": ("chosen", "rejected"), "kto": ("completion",)}


def preference_rows(loaded: Loaded, stage: str) -> list[dict]:
    """Records in TRL's conversational format, so that TRL applies the model's chat template (with the
    row's tools) itself. A string prompt becomes one user turn and a string answer one assistant turn:
    the model is aligned in the chat format it is served in, not on raw text (TRL's reading of standard
    rows), which a chat model never sees."""
    rows = []
    for r in loaded.records:
        row = {"prompt": [{"role": "user", "content": r["prompt"]}] if isinstance(r["prompt"], str) else r["prompt"]}
        for key in ANSWERS[stage]:
            row[key] = [{"role": "assistant", "content": r[key]}] if isinstance(r[key], str) else r[key]
        if stage == "kto":
            row["label"] = r["label"]
        row["tools"] = r.get("tools") or None
        rows.append(row)
    return rows


def preference_dataset(rows: list[dict], stage: str):
    """The rows as a ``datasets.Dataset`` whose messages and tools are stored as JSON.

    Arrow infers one struct type per column, so its default encoding would give every tool call's
    ``arguments`` the union of all rows' argument names (``{"card": "1", "phone": None}``) and every message
    a ``tool_calls: None``: the chat template would render calls that were never made. ``Json`` keeps each
    message exactly as it was read."""
    from datasets import Dataset, Features, Json, List, Value

    features = {"prompt": List(Json())}
    features.update({key: List(Json()) for key in ANSWERS[stage]})
    if stage == "kto":
        features["label"] = Value("bool")
    features["tools"] = Json()
    return Dataset.from_list(rows, features=Features(features))


def _progress_callback(total: int, label: str, console, every: int):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self):
            self.bar = None
            self.tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = TrainProgress(total=state.max_steps or total, start=state.global_step,
                                     enabled=state.is_world_process_zero, console=console, label=label,
                                     every=every)
            self.bar.__enter__()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar and logs and "loss" in logs:
                self.bar.update(state.global_step, float(logs["loss"]), None)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar:
                self.bar.__exit__(None, None, None)

    return Progress()


def train_preferences(base_dir: Path, loaded: Loaded, out: Path, cfg: TrainConfig, *, console=None,
                      base_spec: str | None = None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    check_trackers(cfg.report_to)
    rows = preference_rows(loaded, cfg.stage)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=base_dtype(cfg))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = max(1, cfg.batch_size // cfg.grad_accum)
    # the same trackers, folders and run names as the cpt/sft loop (see domainlm.train.progress)
    name = run_name(out, cfg.stage)
    report_to, tracker_callbacks = transformers_reporting(cfg.report_to, out, name)
    common = dict(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm or 1e9,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        logging_steps=cfg.log_every,
        save_strategy="steps" if cfg.save_every else "no",
        save_steps=cfg.save_every or 500,
        save_total_limit=cfg.keep_checkpoints,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=pick_mixed_precision(cfg) == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to=report_to,
        run_name=name,
        disable_tqdm=True,
        gradient_checkpointing=cfg.grad_checkpointing,
        beta=cfg.beta,
        max_length=cfg.seq_len,
        dataloader_num_workers=0,
    )
    if cfg.stage == "dpo":
        args, trainer_cls = DPOConfig(**common), DPOTrainer
    else:
        args, trainer_cls = KTOConfig(**common), KTOTrainer
    steps_per_epoch = math.ceil(len(rows) / (per_device * cfg.grad_accum * world))
    total = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    trainer = trainer_cls(
        model=model, args=args, train_dataset=preference_dataset(rows, cfg.stage), processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.method in ("lora", "qlora") else None,
        callbacks=[_progress_callback(total, f"{cfg.stage} {cfg.method}", console, cfg.progress_every),
                   *tracker_callbacks],
    )
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) \
        if (out / "checkpoints").is_dir() else []
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    finally:
        finish_reporting(cfg.report_to)
    wall = time.perf_counter() - started
    logs = [h for h in trainer.state.log_history if "loss" in h]
    history = [{"step": h["step"], "loss": float(h["loss"]), **{k: float(v) for k, v in h.items()
                                                               if k.startswith("rewards/")}} for h in logs]
    metrics: dict = {"steps": trainer.state.global_step, "total_steps": total, "wall_s": round(wall, 3)}
    if history:
        metrics["train_loss"] = history[-1]["loss"]
        metrics["first_loss"] = history[0]["loss"]
        for key in ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"):
            if key in history[-1]:
                metrics[key.replace("/", "_")] = round(history[-1][key], 5)
    outputs = []
    if trainer.is_world_process_zero():
        outputs += save_trained(trainer.model, tokenizer, out, cfg, base_dir, base_spec)
        result = LoopResult(steps=metrics["steps"], tokens=0, train_loss=metrics.get("train_loss", float("nan")),
                            eval_loss_start=None, eval_loss_end=None, tokens_per_s=0.0, wall_s=wall, history=history)
        outputs += write_report(out, result, cfg, {k: v for k, v in metrics.items() if k.startswith("rewards_")})
    metrics["outputs"] = outputs
    return metrics
