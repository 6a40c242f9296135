"""Causal-LM loss without materialising the full logits tensor.

With a 150k-token vocabulary the logits of one 2048-token sequence are 1.2 GB in float32, and their
gradient as much again: the largest single tensor in fine-tuning. Two remedies, both computing exactly
the usual mean cross-entropy over labelled tokens:

* on CUDA with Liger Kernel installed, its fused linear + cross-entropy Triton kernel;
* elsewhere, written here (torch has no such op): only labelled positions go through the output layer
  (prompt tokens of sft never do), in row chunks recomputed in the backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = hidden @ weight.t()
    if logits.dtype in (torch.float16, torch.bfloat16):  # softmax over 150k classes wants fp32
        logits = logits.float()
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                          chunk_rows: int = 2048) -> tuple[torch.Tensor, int]:
    """Sum of token cross-entropies and the number of labelled tokens.

    ``hidden``: (batch, seq, dim) final hidden states; ``labels``: (batch, seq) with -100 = no loss;
    position t predicts ``labels[t + 1]`` (the usual shift)."""
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1)
    keep = (y != -100).nonzero(as_tuple=True)[0]
    n = int(keep.numel())
    if n == 0:
        return hidden.sum() * 0.0, 0
    h, y = h.index_select(0, keep), y.index_select(0, keep)
    total = hidden.new_zeros((), dtype=torch.float64 if hidden.dtype == torch.float64 else torch.float32)
    for start in range(0, n, chunk_rows):
        hs, ys = h[start : start + chunk_rows], y[start : start + chunk_rows]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, hs, weight, ys, use_reentrant=False)
        else:
            total = total + _chunk_loss(hs, weight, ys)
    return total, n


def liger_loss_fn():
    """Liger Kernel's fused linear cross-entropy when it is installed (CUDA only), else None."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyLoss(ignore_index=-100, reduction="sum")


class CausalLMLoss(nn.Module):
    """Wraps a causal LM (plain or PEFT) so that ``forward(batch)`` returns (loss sum, labelled tokens).

    The wrapper is what DDP/FSDP wrap, so gradient synchronisation sees the whole forward pass."""

    def __init__(self, model: nn.Module, chunked: bool = True):
        super().__init__()
        self.model = model
        self.chunked = chunked
        self.liger = liger_loss_fn() if chunked and torch.cuda.is_available() else None

    def _parts(self):
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.model, base.lm_head  # decoder stack, output layer

    def forward(self, input_ids, labels, position_ids):
        if not self.chunked:
            logits = self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
            y = labels[:, 1:].reshape(-1)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), y, reduction="sum")
            return loss, int((y != -100).sum())
        backbone, head = self._parts()
        hidden = backbone(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
        if self.liger is not None and hidden.is_cuda:
            y = labels[:, 1:].reshape(-1)
            h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
            return self.liger(head.weight, h, y), int((y != -100).sum())
        return chunked_cross_entropy(hidden, head.weight, labels)
