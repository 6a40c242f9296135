"""``domainlm plan``: predicted peak GPU memory and tokens/s of a training run, before launching it.

Arithmetic from the model's config.json, no weights loaded:

* memory = weights + gradients + AdamW state + saved activations + loss buffers + a CUDA workspace;
* tokens/s = achieved FLOP/s (peak × an expected model-FLOPs utilisation) / FLOPs per token, where a
  token costs 6N (forward 2N, backward 4N) for full training, 4N for LoRA (no weight gradients of the
  frozen base), +2N more with gradient checkpointing (the forward runs twice), plus attention.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.models import resolve_hf_dir

GIB = 1024**3
# dense bf16 peak FLOP/s and memory of common training GPUs (datasheet numbers)
GPUS = {
    "h100": (989e12, 80 * GIB),
    "h200": (989e12, 141 * GIB),
    "a100": (312e12, 80 * GIB),
    "l40s": (362e12, 48 * GIB),
    "4090": (165e12, 24 * GIB),
    "cpu": (1e12, 64 * GIB),
}


@dataclass
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v

    @classmethod
    def from_config(cls, cfg: dict) -> Shape:
        try:
            heads = cfg["num_attention_heads"]
            return cls(vocab=cfg["vocab_size"], hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=heads,
                       kv_heads=cfg.get("num_key_value_heads") or heads,
                       head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
                       intermediate=cfg["intermediate_size"], tied=bool(cfg.get("tie_word_embeddings", False)),
                       qkv_bias=cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias")))
        except KeyError as exc:
            raise DomainlmError(f"config.json: missing key {exc} (a decoder-only transformer config is needed)") from None

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one block: q, k, v, o, gate, up, down."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    @property
    def block_params(self) -> int:
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        return sum(a * b for a, b in self.linear_shapes()) + 2 * self.hidden + bias

    @property
    def params(self) -> int:
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * self.block_params + embed + self.hidden

    def lora_params(self, r: int) -> int:
        return self.layers * sum(r * (a + b) for a, b in self.linear_shapes())


# famous shapes, so a plan needs no download: Qwen2.5 0.5B / 1.5B / 7B
KNOWN_SHAPES = {
    "qwen2-0.5b": Shape(151936, 896, 24, 14, 2, 64, 4864, True, True),
    "qwen2-1.5b": Shape(151936, 1536, 28, 12, 2, 128, 8960, True, True),
    "qwen2-7b": Shape(152064, 3584, 28, 28, 4, 128, 18944, False, True),
}


@dataclass
class Plan:
    params: int
    trainable: int
    weights_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    loss_gib: float
    workspace_gib: float
    peak_gib: float
    fits: bool
    flops_per_token: float
    tokens_per_s: float
    gpu: str
    mfu: float


def shape_for(base: str) -> Shape:
    if base.lower() in KNOWN_SHAPES:
        return KNOWN_SHAPES[base.lower()]
    path = resolve_hf_dir(base) / "config.json"
    cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    return Shape.from_config(cfg)


def plan(shape: Shape, *, method: str = "lora", seq: int = 2048, batch: int = 1, grad_checkpointing: bool = False,
         chunked_loss: bool = True, lora_r: int = 16, gpu: str = "h100", mfu: float | None = None) -> Plan:
    """Predict memory and speed for ``batch`` sequences of ``seq`` tokens per micro-step on one GPU."""
    if gpu not in GPUS:
        raise DomainlmError(f"--gpu {gpu}: expected one of {', '.join(GPUS)}")
    peak_flops, memory = GPUS[gpu]
    n = shape.params
    tokens = seq * batch
    if method == "full":  # fp32 master weights and grads, AdamW m and v in fp32
        trainable = n
        weights, grads = 4 * n, 4 * n
    else:
        trainable = shape.lora_params(lora_r)
        weights = (0.5 * n + 2 * shape.vocab * shape.hidden) if method == "qlora" else 2 * n
        weights += 4 * trainable
        grads = 4 * trainable
    optimizer = 8 * trainable
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim
    # bf16 tensors a decoder block keeps for its backward pass, per token: two norm inputs/outputs,
    # q/k/v, attention output, o_proj input, gate/up/activation/product (flash/sdpa keep no seq² scores)
    per_token_layer = 2 * (8 * h + 2 * kv + 5 * i)
    if grad_checkpointing:  # only block inputs are kept, one block is recomputed at a time
        activations = tokens * (shape.layers * 2 * h + per_token_layer)
    else:
        activations = tokens * shape.layers * per_token_layer
    if method != "full":
        activations += tokens * shape.layers * 2 * lora_r * 7  # adapter intermediate outputs
    # loss: full logits (bf16) + their fp32 upcast + fp32 gradient, or one 2048-row chunk of them
    loss_rows = min(tokens, 2048) if chunked_loss else tokens
    loss = loss_rows * shape.vocab * (2 + 4 + 4) + tokens * h * 2 * 2
    workspace = 1.5 * GIB
    peak = weights + grads + optimizer + activations + loss + workspace
    nonembed = shape.layers * shape.block_params
    head = shape.vocab * shape.hidden
    matmul = nonembed + head
    flops = (6 if method == "full" else 4) * matmul + (2 * matmul if grad_checkpointing else 0)
    flops += 6 * shape.layers * seq * shape.heads * shape.head_dim  # causal attention scores and mixing (fwd+bwd)
    mfu = mfu if mfu is not None else (0.35 if gpu != "cpu" else 0.2)
    return Plan(
        params=n, trainable=trainable, weights_gib=weights / GIB, grads_gib=grads / GIB, optimizer_gib=optimizer / GIB,
        activations_gib=activations / GIB, loss_gib=loss / GIB, workspace_gib=workspace / GIB, peak_gib=peak / GIB,
        fits=peak <= memory, flops_per_token=flops, tokens_per_s=mfu * peak_flops / flops, gpu=gpu, mfu=mfu,
    )


def plan_table(p: Plan) -> list[tuple[str, str]]:
    data = asdict(p)
    rows = [("parameters", f"{p.params / 1e6:,.1f} M"), ("trainable", f"{p.trainable / 1e6:,.2f} M")]
    for key in ("weights_gib", "grads_gib", "optimizer_gib", "activations_gib", "loss_gib", "workspace_gib", "peak_gib"):
        rows.append((key.replace("_gib", "") + " (GiB)", f"{data[key]:.2f}"))
    rows += [("fits on " + p.gpu, "yes" if p.fits else "NO"),
             ("FLOPs per token", f"{p.flops_per_token / 1e9:.2f} G"),
             (f"tokens/s at {p.mfu:.0%} MFU", f"{p.tokens_per_s:,.0f}" if math.isfinite(p.tokens_per_s) else "-")]
    return rows
