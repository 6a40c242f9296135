"""95% confidence intervals by the percentile bootstrap.

Items are resampled with replacement inside each task; a category's score in a resample is the mean
of its tasks' resampled scores, so category intervals are consistent with task intervals. The
generator is seeded: same verdicts, same intervals.
"""

from __future__ import annotations

import numpy as np

N_RESAMPLES = 1000


def bootstrap_task(counts: np.ndarray, main, seed: int = 0, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """Resampled main scores of one task: ``counts`` is (items, k); returns (n_resamples,)."""
    n = counts.shape[0]
    if n == 0:
        return np.zeros(n_resamples)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    return main(counts[idx].sum(axis=1))


def interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]
