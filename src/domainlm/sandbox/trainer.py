"""One sandbox run: build the muP model, train it on a data mix with a WSD schedule, measure it.

``train_run`` is a plain function (run config + tokenised sources in, metrics out) so the sweep can call it
in worker processes. torch is imported inside functions: this module is safe to import from the CLI.
"""

from __future__ import annotations

import hashlib
import json
import math
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class RunConfig(BaseModel):
    """Everything that defines one proxy run; its hash is the run id (same config, same result file)."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(64, ge=8)
    depth: int = Field(2, ge=1)
    n_heads: int = Field(4, ge=1)
    base_width: int = Field(64, ge=8, description="muP base width: LR and multipliers are tuned here.")
    mup: bool = True
    input_mult: float = Field(1.0, gt=0)
    output_mult: float = Field(1.0, gt=0)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(16, ge=1)
    seq_len: int = Field(64, ge=8)
    tokens: int = Field(200_000, ge=1, description="Training tokens; steps = tokens / (batch_size * seq_len).")
    warmup_frac: float = Field(0.1, ge=0, le=1, description="WSD: linear warm-up share of the steps.")
    decay_frac: float = Field(0.2, ge=0, le=1, description="WSD: linear decay-to-zero share at the end.")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    mix: dict[str, float] = Field(default_factory=dict, description="Source name -> sampling weight.")
    eval_windows: int = Field(32, ge=1, description="Validation windows per source.")
    seed: int = 0

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.batch_size * self.seq_len))

    def run_id(self) -> str:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def wsd_lr_factor(step: int, steps: int, warmup_frac: float, decay_frac: float) -> float:
    """Warmup-Stable-Decay (MiniCPM): linear warm-up, constant, then linear decay to zero."""
    warmup = int(steps * warmup_frac)
    decay = int(steps * decay_frac)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if decay and step >= steps - decay:
        return max(0.0, (steps - step) / decay)
    return 1.0


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build_model(cfg: RunConfig, vocab_size: int = 257, device: str = "cpu"):
    from domainlm.sandbox.mup_model import ModelConfig, MupTransformer

    model_cfg = ModelConfig(
        vocab_size=vocab_size, width=cfg.width, depth=cfg.depth, n_heads=cfg.n_heads, max_seq_len=cfg.seq_len,
        mup=cfg.mup, base_width=cfg.base_width, input_mult=cfg.input_mult, output_mult=cfg.output_mult,
    )
    return MupTransformer(model_cfg).to(device)


def validation_loss(model, windows: np.ndarray, device: str, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats per byte) over fixed validation windows."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size])).to(device)
            with _autocast(device):
                loss = model.loss(chunk[:, :-1], chunk[:, 1:])
            total += float(loss) * len(chunk)
            count += len(chunk)
    model.train()
    return total / count


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_batches(model, cfg: RunConfig, next_batch, device: str, log_every: int = 0, on_log=None) -> dict:
    """The training loop shared by sweeps and the capacity probe: AdamW with muP groups, WSD, clipping."""
    import torch

    optimizer = torch.optim.AdamW(model.param_groups(cfg.lr, cfg.weight_decay), betas=(0.9, 0.95), eps=1e-8)
    steps = cfg.steps
    curve: list[tuple[int, float]] = []
    status = "ok"
    for step in range(steps):
        factor = wsd_lr_factor(step, steps, cfg.warmup_frac, cfg.decay_frac)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        batch = torch.from_numpy(next_batch()).to(device)
        with _autocast(device):
            loss = model.loss(batch[:, :-1], batch[:, 1:])
        if not torch.isfinite(loss):
            status = "diverged"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            curve.append((step, round(float(loss.detach()), 5)))
            if on_log:
                on_log(step, float(loss.detach()))
    return {"status": status, "curve": curve}


def train_run(cfg: RunConfig, streams: dict[str, dict[str, np.ndarray]], device: str = "cpu") -> dict:
    """Train one proxy model and return its metrics (validation loss per source and under the mix)."""
    import torch

    from domainlm.sandbox.data import MixSampler, eval_windows

    started = time.time()
    torch.manual_seed(cfg.seed)
    weights = cfg.mix or {name: 1.0 for name in streams}
    unknown = sorted(set(weights) - set(streams))
    if unknown:
        from domainlm.errors import DomainlmError

        raise DomainlmError(f"mix names unknown data sources {unknown}; sources are {sorted(streams)}")
    model = build_model(cfg, device=device)
    sampler = MixSampler({n: s["train"] for n, s in streams.items()}, weights, cfg.seq_len, cfg.seed)
    result = train_batches(model, cfg, lambda: sampler.batch(cfg.batch_size), device,
                           log_every=max(1, cfg.steps // 20))
    val_losses: dict[str, float | None] = {}
    if result["status"] == "ok":
        for name, stream in streams.items():
            loss = validation_loss(model, eval_windows(stream["val"], cfg.seq_len, cfg.eval_windows), device)
            val_losses[name] = round(loss, 6) if math.isfinite(loss) else None
    total_w = sum(weights.get(n, 0.0) for n in streams)
    if result["status"] == "ok" and all(v is not None for v in val_losses.values()):
        # the loss of the run's own mix: what the model was asked to learn
        val_loss = sum(weights.get(n, 0.0) * v for n, v in val_losses.items()) / total_w
    else:
        val_loss, result["status"] = None, "diverged"
    params = model.num_params()
    tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    return {
        "status": result["status"],
        "val_loss": None if val_loss is None else round(val_loss, 6),
        "val_losses": val_losses,
        "params": params,
        "params_total": model.num_params(non_embedding=False),
        "tokens": tokens,
        "steps": cfg.steps,
        "flops": 6.0 * params * tokens,  # Kaplan's C = 6ND (non-embedding N)
        "train_curve": result["curve"],
        "device": device,
        "wall_s": round(time.time() - started, 3),
    }
