"""Knowledge density: what a model scores per parameter and per unit of inference compute.

FLOPs are estimated from the architecture in ``model.info`` (the usual 2·N per token for the dense
layers, plus attention over the context), counted per request from the real token counts.
"""

from __future__ import annotations

from domainlm.evals.stats import FEW_ITEMS


def dense_flops_per_token(info: dict) -> float | None:
    """2 FLOPs per weight used per token. The input embedding is a lookup, not a matmul, so an untied
    embedding matrix is left out; a tied one is the LM head and counts once."""
    params = info.get("params")
    if not params:
        return None
    vocab, hidden = info.get("vocab_size") or 0, info.get("hidden_size") or 0
    lookup_only = 0 if info.get("tie_embeddings") else vocab * hidden
    return 2.0 * (params - lookup_only)


def request_flops(info: dict, prompt_tokens: int, output_tokens: int) -> float | None:
    """Forward FLOPs of one request: prefill of the prompt, then one step per generated token.

    Attention: QKᵀ and AV are 2·c·d_attn multiply-adds each per layer for a token seeing c positions.
    """
    dense = dense_flops_per_token(info)
    if dense is None:
        return None
    layers = info.get("n_layers") or 0
    heads, head_dim = info.get("n_heads") or 0, info.get("head_dim") or 0
    d_attn = heads * head_dim or (info.get("hidden_size") or 0)
    total = prompt_tokens + output_tokens
    # Sum of context lengths seen by tokens 1..total: total·(total+1)/2.
    context_sum = total * (total + 1) / 2
    return dense * total + 4.0 * layers * d_attn * context_sum


def density(score: float, usage: dict, info: dict) -> dict:
    """Parameters, tokens, FLOPs, wall time, throughput and score per parameter / per TFLOP."""
    n_items = max(1, usage.get("items", 0))
    params = info.get("params")
    flops = usage.get("flops")
    wall = usage.get("wall_s") or 0.0
    out = {
        "params": params,
        "tokens_in": usage.get("tokens_in", 0),
        "tokens_out": usage.get("tokens_out", 0),
        "tokens_estimated": usage.get("tokens_estimated", False),
        "flops": flops,
        "tflops_per_item": flops / 1e12 / n_items if flops else None,
        "wall_s": round(wall, 3),
        "tokens_per_s": round((usage.get("tokens_in", 0) + usage.get("tokens_out", 0)) / wall, 2) if wall else None,
        "score": score,
    }
    # "Score per B parameters" and "score per TFLOP spent on an average item": higher is denser.
    out["score_per_bparam"] = score / (params / 1e9) if params else None
    out["score_per_tflop"] = score / out["tflops_per_item"] if out["tflops_per_item"] else None
    return out


# ---------------------------------------------------------------------------------------------------
# Density of a model version (the version ledger, :mod:`domainlm.pipeline.versions`)
# ---------------------------------------------------------------------------------------------------
# A score resting on fewer items than FEW_ITEMS, or on mostly empty / degenerate outputs, is shown but
# flagged, with the thresholds the line report warns at.
MOSTLY_SILENT = 0.2  # share of empty or degenerate outputs that makes a score suspect


def version_density(score: float | None, params: int | None, flops_per_token: float | None,
                    measured: dict | None = None) -> dict:
    """Knowledge density of one model version, as :func:`density` defines it for a run: score per billion
    parameters, and score per TFLOP spent on an average item where the eval measured its FLOPs (``measured``:
    the run's ``density`` block). ``score_per_gflop_token`` divides by the weights' own cost of one token
    (``flops_per_token``), so versions scored on different prompts still compare. None where a part is unknown."""
    if score is None:
        return {"score_per_bparam": None, "score_per_gflop_token": None, "score_per_tflop": None}
    per_item = (measured or {}).get("tflops_per_item")
    return {
        "score_per_bparam": score / (params / 1e9) if params else None,
        "score_per_gflop_token": score / (flops_per_token / 1e9) if flops_per_token else None,
        "score_per_tflop": score / per_item if per_item else None,
    }


def trust_notes(overall: dict | None) -> list[str]:
    """Why a score (and so the density divided from it) cannot be taken at face value: no items, fewer than
    ``FEW_ITEMS``, or more than ``MOSTLY_SILENT`` of the outputs empty or degenerate (they score 0)."""
    overall = overall or {}
    n = overall.get("n") or 0
    if overall.get("score") is None or not n:
        return ["not scored"]
    notes = []
    if n < FEW_ITEMS:
        notes.append(f"{n} items (< {FEW_ITEMS}): wide interval")
    silent = overall.get("degenerate") or 0  # empty outputs are among the degenerate ones (count_silent)
    if silent / n > MOSTLY_SILENT:
        notes.append(f"{silent} of {n} outputs empty or degenerate")
    return notes
