"""The causal-LM training loop behind cpt and sft, on accelerate (DDP/FSDP/DeepSpeed come from its launcher).

Written here rather than taken from transformers' Trainer because the line needs three things together
that Trainer does not give: sequences packed without padding (position ids restarting per conversation),
the loss over the vocabulary in chunks (``loss.py``), and resume that is exact to the bit: the data
order is a pure function of (seed, step), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from domainlm.io import write_json, write_jsonl, write_text
from domainlm.train.config import REPORTING, TrainConfig
from domainlm.train.data import Example, collate
from domainlm.train.progress import (
    PROJECT,
    TrainProgress,
    accelerate_trackers,
    check_trackers,
    hyperparameters,
    run_name,
)

CHECKPOINTS = "checkpoints"


@dataclass
class LoopResult:
    steps: int
    tokens: int
    train_loss: float
    eval_loss_start: float | None
    eval_loss_end: float | None
    tokens_per_s: float
    wall_s: float
    history: list[dict] = field(default_factory=list)


def step_indices(step: int, n: int, per_step: int, seed: int) -> list[int]:
    """Example indices of optimizer step ``step``: epochs are seeded permutations laid end to end."""
    out: list[int] = []
    start = step * per_step
    while len(out) < per_step:
        epoch, offset = divmod(start + len(out), n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.extend(order[offset : offset + per_step - len(out)])
    return out


# A small corpus gets more passes to reach min_steps, but no more than this many: past it a model only
# memorises the few examples it has.
MAX_EPOCHS_FOR_MIN_STEPS = 20


def total_steps(cfg: TrainConfig, n_examples: int, world: int) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    per_epoch = n_examples / (cfg.batch_size * world)
    steps = max(1, math.ceil(cfg.epochs * per_epoch))
    if cfg.min_steps > steps:
        steps = max(steps, min(cfg.min_steps, math.ceil(MAX_EPOCHS_FOR_MIN_STEPS * per_epoch)))
    return steps


def pick_mixed_precision(cfg: TrainConfig) -> str:
    import torch

    if cfg.dtype == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}[cfg.dtype]


def heldout_loss(wrapper, examples: list[Example], pad_id: int, batch_size: int, device) -> float | None:
    """Mean token cross-entropy on held-out sequences (exp of it is the perplexity); None without any."""
    import torch

    if not examples:
        return None
    was_training = wrapper.training
    wrapper.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
            loss, n = wrapper(**batch)
            total, count = total + float(loss), count + n
    wrapper.train(was_training)
    return total / max(count, 1)


@dataclass
class _State:
    """What a checkpoint's ``state.json`` keeps beside the weights, optimizer and scheduler (with the config)."""

    step: int = 0
    tokens: int = 0
    history: list[dict] = field(default_factory=list)
    eval_loss_start: float | None = None


def train_loop(model, tokenizer, train: list[Example], held_out: list[Example], cfg: TrainConfig, out: Path,
               *, resume: bool = True, stop_after: int | None = None, console=None) -> LoopResult:
    """Train ``model`` on packed ``train`` sequences; checkpoints go to ``out/checkpoints/step-N``.

    ``resume``: continue from the newest checkpoint of ``out`` when there is one. ``stop_after``: stop
    (with a checkpoint) after that many steps, as a crash would; used to test resume. Metrics also go to
    the trackers of ``cfg.report_to`` (see :mod:`domainlm.train.progress`).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from domainlm.train.loss import CausalLMLoss  # imports torch

    check_trackers(cfg.report_to)
    # One process per device (accelerate's launcher sets the world); the same seed on every process, so all
    # start from the same weights. The trackers log from the main process only (accelerate sees to it).
    accelerator = Accelerator(mixed_precision=pick_mixed_precision(cfg), cpu=not torch.cuda.is_available(),
                              log_with=accelerate_trackers(cfg.report_to, out, run_name(out, cfg.stage)) or None)
    set_seed(cfg.seed)
    world, rank = accelerator.num_processes, accelerator.process_index
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # The model returns (sum of token losses, labelled tokens): no full logits, see loss.py.
    wrapper = CausalLMLoss(model, chunked=cfg.chunked_loss)
    if cfg.compile:
        _compile_blocks(wrapper)
    steps = total_steps(cfg, len(train), world)
    optimizer, scheduler = _optimizer_and_schedule(wrapper, cfg, steps)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # so save_state/load_state carry the schedule too

    # Continue this configuration's newest checkpoint, or start afresh (measuring the held-out loss before
    # any training, the start of the report's curve).
    state = _resume(accelerator, out, cfg) if resume else None
    if state is None:
        if rank == 0 and (out / CHECKPOINTS).exists():
            shutil.rmtree(out / CHECKPOINTS)
        state = _State(eval_loss_start=heldout_loss(wrapper, held_out, pad_id, cfg.batch_size, accelerator.device))

    wrapper.train()
    last = min(steps, stop_after) if stop_after else steps
    progress = TrainProgress(total=steps, start=state.step, enabled=accelerator.is_main_process, console=console,
                             label=f"{cfg.stage} {cfg.method}", every=cfg.progress_every)
    accelerator.init_trackers(PROJECT, config=hyperparameters({**cfg.model_dump(), "total_steps": steps,
                                                                "world_size": world, "train_sequences": len(train)}))
    try:
        if state.eval_loss_start is not None and state.step == 0:
            accelerator.log({"eval/loss": state.eval_loss_start}, step=0)
        t0, tokens_at_start = time.perf_counter(), state.tokens
        with progress:
            for step in range(state.step, last):
                # This process's share of the step's examples. The order is a function of (seed, step) alone,
                # so a resumed run sees exactly the batches an uninterrupted one would.
                indices = step_indices(step, len(train), cfg.batch_size * world, cfg.seed)
                mine = [train[i] for i in indices[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]]
                loss, tokens = _step(accelerator, wrapper, optimizer, scheduler, mine, cfg, pad_id)
                state.tokens += tokens
                elapsed = time.perf_counter() - t0
                record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0], "tokens": state.tokens,
                          "tokens_per_s": (state.tokens - tokens_at_start) / max(elapsed, 1e-9),
                          "elapsed_s": round(elapsed, 3)}
                if (step + 1) % cfg.log_every == 0 or step + 1 == last:
                    state.history.append(record)
                    accelerator.log({f"train/{key}": record[key] for key in ("loss", "lr", "tokens_per_s", "tokens")},
                                    step=step + 1)
                progress.update(step + 1, loss, record["tokens_per_s"])
                if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < steps:
                    _save(accelerator, out, cfg, step + 1, state)
        if last < steps:  # stopped early on purpose: leave a checkpoint to resume from
            _save(accelerator, out, cfg, last, state)
        elapsed = time.perf_counter() - t0

        # The held-out loss after training, the end of the report's curve.
        eval_end = heldout_loss(wrapper, held_out, pad_id, cfg.batch_size, accelerator.device)
        if eval_end is not None:
            accelerator.log({"eval/loss": eval_end}, step=last)
    finally:
        # Close the writers and end the W&B / MLflow runs, also when training fails, so that the next run in
        # this process starts its own. Not accelerator.end_training(): it also destroys the process group,
        # which the stage still needs after the loop.
        for tracker in accelerator.trackers:
            tracker.finish()
    accelerator.wait_for_everyone()
    recent = [h["loss"] for h in state.history[-max(1, len(state.history) // 10) :]]
    return LoopResult(
        steps=last, tokens=state.tokens, train_loss=sum(recent) / max(len(recent), 1),
        eval_loss_start=state.eval_loss_start, eval_loss_end=eval_end,
        tokens_per_s=(state.tokens - tokens_at_start) / max(elapsed, 1e-9), wall_s=elapsed, history=state.history,
    )


def _compile_blocks(wrapper) -> None:
    """torch.compile each decoder block in place: parameter names (and so checkpoints) stay unchanged, and
    the chunked loss, which calls the decoder stack directly, still runs the compiled blocks."""
    backbone, _ = wrapper._parts()
    for block in backbone.layers:
        block.compile()


def _optimizer_and_schedule(wrapper, cfg: TrainConfig, steps: int):
    """AdamW (no weight decay on biases and norms, as in GPT training) and a warm-up + cosine schedule that
    ends at ``lr * min_lr_ratio``."""
    import torch
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    params = [p for p in wrapper.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=torch.cuda.is_available(),
    )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=int(cfg.warmup_ratio * steps), num_training_steps=steps, min_lr_rate=cfg.min_lr_ratio
    )
    return optimizer, scheduler


def _latest_checkpoint(out: Path) -> Path | None:
    folder = out / CHECKPOINTS
    found = sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if folder.is_dir() else []
    found = [p for p in found if (p / "state.json").is_file()]
    return found[-1] if found else None


def _resume(accelerator, out: Path, cfg: TrainConfig) -> _State | None:
    """Load the newest checkpoint in ``out`` into the prepared model, optimizer and scheduler; None when
    there is none, or when it was written by another configuration (then it is not this run's past)."""
    checkpoint = _latest_checkpoint(out)
    if checkpoint is None:
        return None
    saved = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
    # matched on what is trained (TrainConfig.identity): a run may resume with other trackers
    if {k: v for k, v in saved.get("config", {}).items() if k not in REPORTING} != cfg.identity():
        return None
    accelerator.load_state(str(checkpoint))
    return _State(step=saved["step"], tokens=saved["tokens"], history=saved["history"],
                  eval_loss_start=saved.get("eval_loss_start"))


def _save(accelerator, out: Path, cfg: TrainConfig, step: int, state: _State) -> None:
    """Checkpoint ``out/checkpoints/step-N``: accelerate's state (weights, optimizer, scheduler, RNGs) from
    every process, then ``state.json`` from the main one; only the newest ``keep_checkpoints`` are kept."""
    folder = out / CHECKPOINTS / f"step-{step:06d}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        write_json(folder / "state.json", {"step": step, "tokens": state.tokens, "history": state.history,
                                           "eval_loss_start": state.eval_loss_start, "config": cfg.model_dump()})
        old = sorted((out / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        for stale in old[: -cfg.keep_checkpoints]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()


def _step(accelerator, wrapper, optimizer, scheduler, examples: list[Example], cfg: TrainConfig,
          pad_id: int) -> tuple[float, int]:
    """One optimizer step on this process's ``examples``, in ``grad_accum`` micro-batches. Returns the
    step's mean token loss and its token count, both over all processes."""
    import torch

    micro = max(1, cfg.batch_size // cfg.grad_accum)
    chunks = [examples[i : i + micro] for i in range(0, len(examples), micro)]
    n_label = sum(sum(1 for y in e.labels[1:] if y != -100) for e in examples)
    step_loss, step_tokens = 0.0, 0
    for k, chunk in enumerate(chunks):
        batch = {key: v.to(accelerator.device) for key, v in collate(chunk, pad_id).items()}
        # gradients are all-reduced between processes only on the last micro-batch
        sync = contextlib.nullcontext() if k == len(chunks) - 1 else accelerator.no_sync(wrapper)
        with sync:
            loss_sum, _ = wrapper(**batch)
            # mean over the step's labelled tokens, however they fall into micro-batches
            accelerator.backward(loss_sum / max(n_label, 1))
        step_loss += float(loss_sum.detach())
        step_tokens += int(batch["input_ids"].numel())
    if cfg.max_grad_norm:
        accelerator.clip_grad_norm_(wrapper.parameters(), cfg.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    # the loss and token counts of every process, summed, so the log is the same whatever the world size
    stats = torch.tensor([step_loss, n_label, step_tokens], dtype=torch.float64, device=accelerator.device)
    stats = accelerator.reduce(stats, reduction="sum")
    return float(stats[0] / max(stats[1], 1)), int(stats[2])


def write_report(out: Path, result: LoopResult, cfg: TrainConfig, extra: dict | None = None) -> list[str]:
    """``train_log.jsonl``, ``loss.png`` (train loss per step, held-out loss at start and end) and
    ``report.md`` in ``out``; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_jsonl(out / "train_log.jsonl", result.history)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot([h["step"] for h in result.history], [h["loss"] for h in result.history], label="train loss")
    if result.eval_loss_start is not None and result.eval_loss_end is not None:
        ax.plot([0, result.steps], [result.eval_loss_start, result.eval_loss_end], "o--", label="held-out loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"{cfg.stage} · {cfg.method}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out / ".loss.png.tmp"
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(out / "loss.png")

    def ppl(x):
        return f"{math.exp(x):.2f}" if x is not None and x < 50 else "-"

    lines = [
        f"# Training report: {cfg.stage} ({cfg.method})", "",
        "![loss](loss.png)", "",
        "| metric | value |", "|---|---|",
        f"| steps | {result.steps} |",
        f"| tokens | {result.tokens} |",
        f"| final train loss | {result.train_loss:.4f} |",
        f"| held-out loss start → end | {result.eval_loss_start if result.eval_loss_start is None else round(result.eval_loss_start, 4)}"
        f" → {result.eval_loss_end if result.eval_loss_end is None else round(result.eval_loss_end, 4)} |",
        f"| held-out perplexity start → end | {ppl(result.eval_loss_start)} → {ppl(result.eval_loss_end)} |",
        f"| tokens/s | {result.tokens_per_s:.0f} |",
        f"| wall time (s) | {result.wall_s:.1f} |",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"| {key} | {value} |")
    lines += ["", "Config:", "```json", json.dumps(cfg.model_dump(), indent=2, ensure_ascii=False), "```", ""]
    write_text(out / "report.md", "\n".join(lines))
    return ["train_log.jsonl", "loss.png", "report.md"]


def result_metrics(result: LoopResult) -> dict:
    data = asdict(result)
    data.pop("history")
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in data.items()}
