"""The muP coordinate check (Yang et al., Tensor Programs V, §D.1): train models of growing width for a few
steps with the same learning rate and record the typical size (mean |x|) of each layer's activations.

Under muP the curves are flat in width; under the standard parametrisation the logits and the later
layers grow with width, which is why the best learning rate drifts there. Used by the tests and by
``domainlm sandbox coord-check``.
"""

from __future__ import annotations

import numpy as np


def coord_check(
    streams: dict[str, np.ndarray],
    widths=(32, 64, 128, 256),
    *,
    mup: bool = True,
    base_width: int = 32,
    depth: int = 2,
    lr: float = 0.01,
    steps: int = 4,
    batch_size: int = 8,
    seq_len: int = 32,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """``{width: {"embed": .., "block1": .., ..., "logits": ..}}``: mean |activation| after ``steps``."""
    import torch

    from domainlm.sandbox.data import MixSampler
    from domainlm.sandbox.trainer import RunConfig, build_model, train_batches

    out: dict[int, dict[str, float]] = {}
    for width in widths:
        cfg = RunConfig(width=width, base_width=base_width, depth=depth, mup=mup, lr=lr, batch_size=batch_size,
                        seq_len=seq_len, tokens=steps * batch_size * seq_len, warmup_frac=0, decay_frac=0,
                        grad_clip=0, seed=seed)
        torch.manual_seed(seed)
        model = build_model(cfg)
        # same data for every width: the sampler is re-seeded for each model
        sampler = MixSampler(streams, {n: 1.0 for n in streams}, seq_len, seed)
        train_batches(model, cfg, lambda sampler=sampler: sampler.batch(batch_size), "cpu")
        probe = torch.from_numpy(MixSampler(streams, {n: 1.0 for n in streams}, seq_len, seed + 1).batch(batch_size))
        with torch.no_grad():
            logits, hidden = model(probe[:, :-1], return_hidden=True)
        sizes = {"embed": float(hidden[0].abs().mean())}
        for index, h in enumerate(hidden[1:], start=1):
            sizes[f"block{index}"] = float(h.abs().mean())
        sizes["logits"] = float(logits.abs().mean())
        out[width] = sizes
    return out


def spread(result: dict[int, dict[str, float]], layer: str) -> float:
    """max/min of a layer's activation size across widths: 1.0 is perfectly flat."""
    values = [sizes[layer] for sizes in result.values()]
    return max(values) / max(min(values), 1e-12)
