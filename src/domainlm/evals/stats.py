"""95% confidence intervals by the percentile bootstrap.

Items are resampled with replacement inside each task; a category's score in a resample is the mean
of its tasks' resampled scores, so category intervals are consistent with task intervals. The
generator is seeded: same verdicts, same intervals. A gate's retention (candidate / reference) comes from
paired resamples (:func:`paired_bootstrap`, :func:`paired_ratios`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Per task: (additive counts of its items, shape (items, k); summed counts → the task's main score).
TaskCounts = dict[str, tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]

N_RESAMPLES = 1000
# Below this many items a task's 95% interval is wider than most differences worth reporting: synth and
# the line report warn about it.
FEW_ITEMS = 30


def resample_indices(n: int, seed: int = 0, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """(n_resamples, n) item indices drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n))


def bootstrap_task(counts: np.ndarray, main, seed: int = 0, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """Resampled main scores of one task: ``counts`` is (items, k); returns (n_resamples,)."""
    n = counts.shape[0]
    if n == 0:
        return np.zeros(n_resamples)
    idx = resample_indices(n, seed, n_resamples)
    return main(counts[idx].sum(axis=1))


def paired_bootstrap(tasks_a: TaskCounts, tasks_b: TaskCounts, seed: int = 0,
                     n_resamples: int = N_RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Resampled overall scores (macro mean over tasks) of two runs on the same items, resampled together.

    ``tasks_a`` / ``tasks_b``: per task, (counts (items, k), main) as from ``scoring.task_counts``, with
    the same items in the same order. Each resample draws one set of item indices and scores both runs on
    it, so item difficulty, which both runs share, cancels out of their ratio or difference: a paired
    interval is much narrower than two independent ones, and it is the right one for "did B keep A's score"."""
    if list(tasks_a) != list(tasks_b):
        raise ValueError("paired bootstrap needs the same tasks in both runs")
    samples_a, samples_b = [], []
    for index, task in enumerate(tasks_a):
        (counts_a, main_a), (counts_b, main_b) = tasks_a[task], tasks_b[task]
        if counts_a.shape[0] != counts_b.shape[0]:
            raise ValueError(f"paired bootstrap needs the same items in both runs (task '{task}')")
        if counts_a.shape[0] == 0:
            samples_a.append(np.zeros(n_resamples))
            samples_b.append(np.zeros(n_resamples))
            continue
        idx = resample_indices(counts_a.shape[0], seed + index, n_resamples)
        samples_a.append(main_a(counts_a[idx].sum(axis=1)))
        samples_b.append(main_b(counts_b[idx].sum(axis=1)))
    return np.mean(samples_a, axis=0), np.mean(samples_b, axis=0)


def ratio_interval(samples_a: np.ndarray, samples_b: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval of b / a over paired resamples; resamples where a scores 0 have no ratio and are
    left out. None when none has one."""
    keep = samples_a > 0
    if not keep.any():
        return None
    return interval(samples_b[keep] / samples_a[keep], level)


def interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def paired_ratios(samples_a: np.ndarray, samples_b: np.ndarray) -> np.ndarray:
    """b / a per paired resample, defined in every resample, for a gate that asks "did b keep a's score".

    Where a scores 0 nothing could be lost: the ratio is 1 when b scores 0 too, and +inf when b scores more.
    So "ratio < t" (t <= 1) holds in exactly the resamples where b < t * a, and the percentile interval of
    these ratios decides the same way as one of the excess b - t * a would, with no resample left out (leaving
    out the resamples where a scores 0 would drop only those favourable to b)."""
    ratios = np.ones_like(samples_b, dtype=float)
    positive = samples_a > 0
    ratios[positive] = samples_b[positive] / samples_a[positive]
    ratios[~positive & (samples_b > 0)] = np.inf
    return ratios


def percentile_bounds(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The two-sided percentile interval, unrounded, with no interpolation between resamples (the
    "inverted_cdf" percentile: every bound is a resampled value, so a bound next to +inf stays finite)."""
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2], method="inverted_cdf")
    return float(lo), float(hi)
