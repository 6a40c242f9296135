"""From scaling fits to one recommendation for the real run, and from ``train.lr: auto`` to a number.

``recommend(fit, ...)`` turns the result of :func:`domainlm.sandbox.fit.fit_runs` into a
:class:`Recommendation` (learning rate, batch size, tokens and steps, predicted loss with the fit's
bootstrap interval, the swept range, and ``trusted: false`` with the reasons when the numbers are an
extrapolation or rest on too few runs). ``domainlm sandbox fit`` writes it as ``recommendation.json``.

``resolve_lr(cfg, path)`` is what ``train`` calls first: when ``cfg.lr == "auto"`` it reads the
recommendation and returns the config with the concrete learning rate, so the manifest (and the skip
check) records the number that was trained with, not the word ``auto``.

Units, said once because they decide what can be compared: the sandbox trains byte-level muP proxies, so
its losses are nats per UTF-8 byte of held-out text; a real run's eval loss is nats per token of its own
tokenizer. :func:`predicted_vs_actual` converts when it is given the held-out byte count, and says when the
two numbers are not comparable at all (sft loss is over answer tokens only; dpo/kto have no LM loss).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domainlm.errors import DomainlmError
from domainlm.sandbox.fit import loss_nd, predict

FILE = "recommendation.json"
# The workspace's sandbox fit folder, relative to the line's `artifacts` folder: `train.lr: auto` with no
# `train.sandbox` path reads ARTIFACTS/sandbox/fit/recommendation.json (what `sandbox fit --out` would write
# there). Kept beside the other artifacts so a fresh workspace never picks up someone else's fit.
DEFAULT_FIT_DIR = Path("sandbox") / "fit"

# Trust limits. A power law fitted over k decades is commonly trusted about one decade beyond its data
# (Hoffmann et al. and DeepSeek LLM extrapolate ~10x in compute from their largest proxy with care); past
# that, or from fewer points than parameters + 1, the recommendation is still written but marked untrusted.
MAX_EXTRAPOLATION = 10.0  # in N and D each; C = 6ND may then be up to 100x
MIN_LR_POINTS = 3  # (compute, optimal lr) points behind the lr law; a 2-parameter law through 2 points has no check
MIN_LOSS_GROUPS = 6  # (N, D) groups behind L(N, D): 5 parameters
MAX_LOSS_SPREAD = 0.25  # interval width / value above which the predicted loss says little
MAX_LR_SPREAD = 10.0  # high / low of the lr interval above which the lr is a guess


class Estimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float
    low: float | None = None  # bootstrap percentile interval; None when no resample gave a fit
    high: float | None = None


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: float = Field(..., gt=0, description="Non-embedding parameters N.")
    tokens: float = Field(..., gt=0, description="Training tokens D (sandbox tokens are bytes).")
    compute: float = Field(..., gt=0, description="C = 6ND FLOPs.")
    source: Literal["params+tokens", "compute", "params+compute", "largest swept run"]


class Swept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: int
    groups: int
    params: tuple[float, float]
    tokens: tuple[float, float]
    compute: tuple[float, float]
    lr: tuple[float, float]
    batch_size: tuple[float, float]
    seq_len: int | None = None
    base_width: int | None = None  # muP base width: the sandbox's lr is the lr of a model this wide


class Recommendation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Target
    lr: Estimate  # the learning rate to train with: lr_mup moved to `width` when a width was given
    lr_mup: Estimate  # the sandbox's optimum, a muP learning rate at swept.base_width
    width: int | None = None  # the real model's hidden size the lr was moved to
    batch_size: Estimate | None = None  # sequences of `swept.seq_len` bytes
    batch_bytes: int | None = None  # batch_size * seq_len: the unit that carries over to another tokenizer
    steps: int | None = None  # target tokens / batch_bytes
    loss: Estimate | None = None
    loss_law: Literal["loss_nd", "loss_compute"] | None = None
    loss_unit: str = "nats per byte (byte-level sandbox proxy, held-out text of the swept mix)"
    confidence: float
    swept: Swept
    trusted: bool
    reasons: list[str] = Field(default_factory=list, description="Why the numbers are not to be trusted.")
    notes: list[str] = Field(default_factory=list, description="What to know when using them.")


# ---------------------------------------------------------------------------------------------------
# fit result -> Recommendation
# ---------------------------------------------------------------------------------------------------


def _range(values) -> tuple[float, float]:
    values = list(values)
    return float(min(values)), float(max(values))


def compute_optimal_split(fit: dict, compute: float, params: float | None = None) -> tuple[float, float]:
    """(N, D) for a compute budget: N given, or the N that minimises L(N, C/6N) (Chinchilla approach 3)."""
    if params is not None:
        return params, compute / (6.0 * params)
    if "loss_nd" not in fit["fits"]:
        raise DomainlmError("recommend: a compute budget alone needs the L(N, D) law (sweep 2+ sizes and 2+ token "
                            "counts, 6+ groups); or give --params too")
    law = fit["fits"]["loss_nd"]["params"]
    # a dense log grid is exact enough (N to 0.1%) and has no failure modes, unlike a root finder
    grid = np.geomspace(max(compute / 6.0, 1.0) ** 0.5 * 1e-4, max(compute / 6.0, 1.0) ** 0.5 * 1e4, 20001)
    losses = loss_nd(law, grid, compute / (6.0 * grid))
    n = float(grid[int(np.argmin(losses))])
    return n, compute / (6.0 * n)


def _est(d: dict | None) -> Estimate | None:
    return None if d is None else Estimate(**d)


def lr_at_width(lr: float, base_width: int, width: int) -> float:
    """muP's Adam rule for hidden matrices (lr ∝ 1/fan_in, Yang et al. 2022, table 3): the sandbox trains
    them at lr * base_width / width. A standard-parametrised model has one lr, and its hidden matrices hold
    most of its weights, so that one lr is taken at the real model's width. A heuristic, said as one."""
    return lr * base_width / width


def recommend(fit: dict, *, params: float | None = None, tokens: float | None = None,
              compute: float | None = None, seq_len: int | None = None, base_width: int | None = None,
              width: int | None = None) -> Recommendation:
    """The recommendation for a target run: N and D; or a compute budget (N from the L(N, D) law, or given);
    or, with no target, the largest swept run (an interpolation: the numbers are then the sweep's own).
    ``width`` (the real model's hidden size, with the sweep's muP ``base_width``) moves the lr to it."""
    if width is not None and base_width is None:
        raise DomainlmError("recommend: --width needs the sweep's muP base_width, and its runs disagree on it")
    table = fit.get("runs_table") or []
    if not table:
        raise DomainlmError("recommend: the fit has no runs table (re-run `domainlm sandbox fit`)")
    if "lr" not in fit["fits"]:
        raise DomainlmError("recommend: the fit has no learning-rate law (sweep 2+ learning rates at each size)")
    if tokens is not None and compute is not None:
        raise DomainlmError("recommend: give --tokens or --compute, not both")
    if compute is not None:
        source = "params+compute" if params is not None else "compute"
        params, tokens = compute_optimal_split(fit, compute, params)
    elif params is not None and tokens is not None:
        source = "params+tokens"
    elif params is None and tokens is None:
        largest = max(table, key=lambda r: r["C"])
        params, tokens, source = largest["N"], largest["D"], "largest swept run"
    else:
        raise DomainlmError("recommend: give --params with --tokens (or with --compute), or --compute alone")
    pred = predict(fit, params, tokens)
    swept = Swept(runs=fit["runs"], groups=fit["groups"], params=_range(r["N"] for r in table),
                  tokens=_range(r["D"] for r in table), compute=_range(r["C"] for r in table),
                  lr=_range(r["lr"] for r in table), batch_size=_range(r["bs"] for r in table), seq_len=seq_len,
                  base_width=base_width)
    loss_law = "loss_nd" if "loss" in pred else ("loss_compute" if "loss_at_compute" in pred else None)
    loss = _est(pred.get("loss") or pred.get("loss_at_compute"))
    batch = _est(pred.get("batch_size"))
    if batch is None:  # no batch-size law: the batch size the lr optimum was found at
        best = min(table, key=lambda r: r["loss"])
        batch = Estimate(value=best["bs"])
    batch_bytes = int(round(batch.value)) * seq_len if seq_len else None
    steps = max(1, int(tokens // batch_bytes)) if batch_bytes else None
    reasons = trust_reasons(fit, params, tokens, pred, swept)
    lr_mup = _est(pred["lr"])
    if width is not None:
        lr = Estimate(**{k: None if v is None else lr_at_width(v, base_width, width)
                         for k, v in lr_mup.model_dump().items()})
        notes = [f"lr is the sandbox's muP lr moved from base width {base_width} to width {width} "
                 "(x base_width/width, muP's hidden-matrix rule); check it with a short run"]
    else:
        lr = lr_mup
        notes = ["lr is the sandbox's muP lr at its base width: for a model of another width give --width "
                 "(the lr is then scaled by base_width/width)"]
    notes.append("loss is in nats per byte; compare it with a run's held-out loss converted to nats per byte")
    if source == "largest swept run":
        notes.append("no target given: the recommendation is for the largest swept run (an interpolation); "
                     "pass --params/--tokens or --compute for the real run")
    return Recommendation(target=Target(params=params, tokens=tokens, compute=6.0 * params * tokens, source=source),
                          lr=lr, lr_mup=lr_mup, width=width, batch_size=batch, batch_bytes=batch_bytes, steps=steps, loss=loss,
                          loss_law=loss_law, confidence=fit["confidence"], swept=swept, trusted=not reasons,
                          reasons=reasons, notes=notes)


def trust_reasons(fit: dict, params: float, tokens: float, pred: dict, swept: Swept) -> list[str]:
    """Every reason the recommendation cannot be trusted; empty when it can."""
    reasons = []
    for name, value, (low, high) in (("params", params, swept.params), ("tokens", tokens, swept.tokens)):
        if value > high * MAX_EXTRAPOLATION:
            reasons.append(f"{name} {value:.3g} is {value / high:.0f}x the largest swept ({high:.3g}): "
                           f"extrapolating more than {MAX_EXTRAPOLATION:.0f}x")
        elif value < low / MAX_EXTRAPOLATION:
            reasons.append(f"{name} {value:.3g} is far below the smallest swept ({low:.3g})")
    lr_points = fit["fits"]["lr"].get("points", [])
    if len(lr_points) < MIN_LR_POINTS:
        reasons.append(f"the lr law rests on {len(lr_points)} (compute, optimal lr) points; need {MIN_LR_POINTS}+ "
                       "(sweep more sizes or token counts)")
    # an optimum on the edge of its own group's lr sweep is a bound, not an optimum (optimum_1d returns the edge)
    edge = 0
    for c, v in lr_points:
        lrs = [r["lr"] for r in fit["runs_table"] if math.isclose(r["C"], c, rel_tol=1e-9)]
        if lrs and (math.isclose(v, min(lrs)) or math.isclose(v, max(lrs))):
            edge += 1
    if edge:
        reasons.append(f"{edge} of {len(lr_points)} per-size optimal lrs lie on the edge of the swept lrs: the "
                       "optimum may be outside; widen the lr sweep")
    lr = pred["lr"]
    if "low" not in lr:
        reasons.append("the lr has no interval (no bootstrap resample gave a fit; raise --boot or sweep more)")
    elif lr["low"] <= 0 or lr["high"] / lr["low"] > MAX_LR_SPREAD:
        reasons.append(f"the lr interval [{lr['low']:.3g}, {lr['high']:.3g}] spans more than {MAX_LR_SPREAD:.0f}x")
    loss = pred.get("loss") or pred.get("loss_at_compute")
    if loss is None:
        reasons.append("no loss law: too few runs (L(N, D) needs 6+ (N, D) groups with 2+ sizes and 2+ token "
                       "counts; L(C) needs 4+ compute-frontier points)")
    elif "low" not in loss:
        reasons.append("the predicted loss has no interval (no bootstrap resample gave a fit)")
    elif (loss["high"] - loss["low"]) / loss["value"] > MAX_LOSS_SPREAD:
        reasons.append(f"the predicted-loss interval [{loss['low']:.3g}, {loss['high']:.3g}] is wider than "
                       f"{MAX_LOSS_SPREAD:.0%} of the value")
    for name, est in (("lr", lr), ("predicted loss", loss)):
        # resampling runs can drop a group's best run, which biases refits (the envelope loss goes up): a
        # point estimate outside its own interval says the interval is not a confidence interval here
        if est is not None and "low" in est and not est["low"] <= est["value"] <= est["high"]:
            reasons.append(f"the {name} {est['value']:.4g} lies outside its own bootstrap interval "
                           f"[{est['low']:.4g}, {est['high']:.4g}]: the fit is unstable (sweep more runs)")
    if "loss" in pred and fit["groups"] < MIN_LOSS_GROUPS:
        reasons.append(f"L(N, D) rests on {fit['groups']} groups; need {MIN_LOSS_GROUPS}+")
    return reasons


# ---------------------------------------------------------------------------------------------------
# Reading it back, and `train.lr: auto`
# ---------------------------------------------------------------------------------------------------


def recommendation_path(path: str | Path | None, artifacts: str | Path | None = None) -> Path | None:
    """Where to read the recommendation: ``path`` (a file or a fit folder) when given, else the
    workspace's ARTIFACTS/sandbox/fit/recommendation.json when ``artifacts`` is given, else None."""
    if path is not None:
        path = Path(path)
        return path / FILE if path.is_dir() else path
    if artifacts is not None:
        return Path(artifacts) / DEFAULT_FIT_DIR / FILE
    return None


def load_recommendation(path: str | Path) -> Recommendation:
    path = Path(path)
    path = path / FILE if path.is_dir() else path
    if not path.is_file():
        raise DomainlmError(f"{path}: no sandbox recommendation; run `domainlm sandbox sweep` then "
                            f"`domainlm sandbox fit SWEEP --out {path.parent}` (or set train.lr to a number)")
    try:
        return Recommendation.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise DomainlmError(f"{path}: not a sandbox recommendation ({first}); re-run `domainlm sandbox fit`") from None


def resolve_lr(cfg, path: str | Path | None):
    """``(cfg, recommendation)``: when ``cfg.lr == "auto"``, the config with the recommended learning rate
    and the recommendation it came from; otherwise ``(cfg, None)`` unchanged.

    Only the learning rate is taken. The batch size is not: the sandbox counts sequences of its own
    ``seq_len`` bytes and the real run sequences of ``seq_len`` tokens of another tokenizer, and after the
    line merges its stage overrides an explicit ``batch_size: 8`` cannot be told from the default; the
    recommendation's ``batch_bytes`` is there to set it by hand."""
    if cfg.lr != "auto":
        return cfg, None
    if path is None:
        raise DomainlmError("train.lr is 'auto' but no sandbox recommendation was given: set train.sandbox to "
                            "the folder `domainlm sandbox fit --out` wrote (or set train.lr to a number)")
    rec = load_recommendation(path)
    return cfg.model_copy(update={"lr": rec.lr.value}), rec


def loss_per_byte(loss_per_token: float, tokens: int, n_bytes: int) -> float:
    """A mean loss in nats per token over ``tokens`` tokens of text that is ``n_bytes`` UTF-8 bytes long,
    in nats per byte: the total nats are the same, only the divisor changes."""
    if tokens <= 0 or n_bytes <= 0:
        raise ValueError("tokens and bytes must be positive")
    return loss_per_token * tokens / n_bytes


def heldout_tokens_bytes(examples, tokenizer) -> tuple[int, int]:
    """(tokens, UTF-8 bytes) that a held-out loss is averaged over: the positions with a label after the
    shift (as the loss takes them), decoded without special tokens (the sandbox's end-of-text is one token
    and no byte either, so a document separator adds to the tokens, not the bytes, on both sides)."""
    tokens = n_bytes = 0
    for example in examples:
        ids = [t for t, y in zip(example.input_ids[1:], example.labels[1:], strict=True) if y != -100]
        tokens += len(ids)
        n_bytes += len(tokenizer.decode(ids, skip_special_tokens=True).encode("utf-8"))
    return tokens, n_bytes


def predicted_vs_actual(rec: Recommendation, stage: str, eval_loss: float | None,
                        eval_tokens: int | None = None, eval_bytes: int | None = None) -> dict:
    """Metrics for the train manifest/report: the sandbox's predicted loss beside the run's.

    The comparable number is the held-out (eval) loss at the end of a cpt run, converted to nats per byte:
    the sandbox's loss is a held-out loss after training on raw text. The train loss is not (seen data, a
    running mean over steps); an sft loss is over answer tokens only; dpo/kto have no LM loss."""
    out: dict = {"sandbox_lr": rec.lr.value, "sandbox_trusted": rec.trusted}
    if rec.loss is not None:
        out.update(sandbox_predicted_loss=rec.loss.value, sandbox_predicted_low=rec.loss.low,
                   sandbox_predicted_high=rec.loss.high)
    why = None
    if rec.loss is None:
        why = "the sandbox fit has no loss law"
    elif stage != "cpt":
        why = f"a {stage} loss is not the raw-text loss the sandbox predicts"
    elif eval_loss is None:
        why = "the run has no held-out loss (eval_fraction 0)"
    elif not eval_tokens or not eval_bytes:
        why = "the held-out byte count is unknown, so the loss cannot be put in nats per byte"
    if eval_tokens and eval_bytes:
        # what turns this run's token count into the sandbox's unit (bytes) for `sandbox fit --tokens`
        out["eval_bytes_per_token"] = round(eval_bytes / eval_tokens, 4)
    if why is None:
        actual = loss_per_byte(eval_loss, eval_tokens, eval_bytes)
        out["actual_eval_loss_per_byte"] = round(actual, 5)
        out["sandbox_within_interval"] = (rec.loss.low is not None and rec.loss.low <= actual <= rec.loss.high)
    out["sandbox_comparable"] = why is None
    if why:
        out["sandbox_not_comparable"] = why
    return out
