"""A small decoder-only transformer of the Qwen2/Llama shape with muP parametrisation (nanoGPT-style).

Shape: token embedding → ``depth`` pre-norm blocks (RMSNorm → causal self-attention with rotary
positions → residual; RMSNorm → SwiGLU MLP → residual) → RMSNorm → untied linear read-out.

muP (Yang et al., "Tensor Programs V", 2022; the multiplier form of Cerebras' "Practitioner's guide to
muP", 2023). With ``m = width / base_width``:

=====================  ===================  ==============================  ==============
tensor                 init std             forward multiplier              Adam LR
=====================  ===================  ==============================  ==============
embedding              ``init_std``         ``input_mult``                  ``lr``
hidden matrices        ``1/sqrt(fan_in)``   —                               ``lr / m``
attention logits       —                    ``1/head_dim`` (not 1/sqrt)     —
read-out (unembed)     0                    ``output_mult / m``             ``lr``
RMSNorm gains          1                    —                               ``lr``
=====================  ===================  ==============================  ==============

With these rules the size of every activation update stays constant as the width grows, so the best
learning rate found on a narrow model is the best one for a wide model ("muTransfer"). ``mup=False``
gives the standard parametrisation (every LR = ``lr``, 1/sqrt(head_dim) attention, no 1/m on the
logits, read-out init 1/sqrt(width)) for comparison in the coordinate check.

Written by hand: the ``mup`` package targets older model code and no library offers a Qwen2-shaped muP
model small and readable enough to be a sweep unit. This module imports torch at the top; import it
only inside functions from CLI code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int = 257
    width: int = 64
    depth: int = 2
    n_heads: int = 4
    mlp_ratio: float = 8 / 3
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    mup: bool = True
    base_width: int = 64
    init_std: float = 1.0
    input_mult: float = 1.0
    output_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.width % self.n_heads or (self.width // self.n_heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.n_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads

    @property
    def base_head_dim(self) -> int:
        return max(2, self.base_width // self.n_heads)

    @property
    def width_mult(self) -> float:
        return self.width / self.base_width if self.mup else 1.0

    @property
    def mlp_hidden(self) -> int:
        return max(8, int(round(self.mlp_ratio * self.width / 8)) * 8)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotary_tables(head_dim: int, seq_len: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # Llama/Qwen2 "rotate_half" layout
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=False)
        if cfg.mup:
            # 1/d instead of 1/sqrt(d): q and k become correlated during training, so q·k grows like d.
            # Scaled so that it equals 1/sqrt(d) at the base width (same behaviour there as SP).
            self.scale = math.sqrt(cfg.base_head_dim) / cfg.head_dim
        else:
            self.scale = 1.0 / math.sqrt(cfg.head_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.width, 2 * cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.width)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.width)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class MupTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        cfg = self.cfg
        nn.init.normal_(self.embed.weight, std=cfg.init_std)
        for block in self.blocks:
            for linear in (block.attn.qkv, block.attn.proj, block.mlp.gate_up, block.mlp.down):
                nn.init.normal_(linear.weight, std=1.0 / math.sqrt(linear.in_features))
        if cfg.mup:
            nn.init.zeros_(self.head.weight)  # muP: a zero read-out is width-independent at init
        else:
            nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(cfg.width))

    def forward(self, idx: torch.Tensor, return_hidden: bool = False):
        t = idx.shape[1]
        if t > self.rope_cos.shape[0]:  # longer than trained on (e.g. a long probe): extend the tables
            cos, sin = rotary_tables(self.cfg.head_dim, t, self.cfg.rope_theta, device=idx.device)
        else:
            cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.embed(idx) * self.cfg.input_mult
        hidden = [x]
        for block in self.blocks:
            x = block(x, cos, sin)
            hidden.append(x)
        logits = self.head(self.norm(x)) * (self.cfg.output_mult / self.cfg.width_mult)
        return (logits, hidden) if return_hidden else logits

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict]:
        """Adam parameter groups with muP learning rates: hidden matrices get ``lr / m``."""
        hidden, vector_like = [], []
        for name, param in self.named_parameters():
            if param.ndim == 2 and name.startswith("blocks."):
                hidden.append(param)
            else:
                vector_like.append(param)  # embedding, read-out, norm gains
        m = self.cfg.width_mult
        return [
            {"params": hidden, "lr": lr / m, "base_lr": lr / m, "weight_decay": weight_decay},
            {"params": vector_like, "lr": lr, "base_lr": lr, "weight_decay": 0.0},
        ]

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters; non-embedding (the Kaplan/Chinchilla N) excludes the embedding and read-out."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.embed.weight.numel() + self.head.weight.numel()
        return total

    def describe(self) -> dict:
        return {**asdict(self.cfg), "params": self.num_params(), "params_total": self.num_params(False)}
