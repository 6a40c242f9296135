"""Knowledge density: what a model scores per parameter and per unit of inference compute.

FLOPs are estimated from the architecture in ``model.info`` (the usual 2·N per token for the dense
layers, plus attention over the context), counted per request from the real token counts.
"""

from __future__ import annotations


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
