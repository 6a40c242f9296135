"""The fitter recovers known scaling-law parameters from synthetic loss curves, with covering intervals."""

import numpy as np
import pytest

from domainlm.errors import DomainlmError
from domainlm.sandbox.fit import fit_runs, loss_nd, optimum_1d, predict

pytest.importorskip("scipy")

# Chinchilla's published fit (Hoffmann et al. 2022, approach 3) as the ground truth to recover.
TRUE = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
LR_A, LR_B = 2.0, -0.12  # optimal lr = 2.0 * C^-0.12


def synthetic_records(noise: float = 0.003, seed: int = 1) -> list[dict]:
    """A sweep over N x D x lr whose loss is the true law times a parabola in log(lr / lr*) times noise."""
    rng = np.random.default_rng(seed)
    records = []
    for n in np.geomspace(1e5, 1e8, 6):
        for d in np.geomspace(1e6, 1e9, 6):
            c = 6 * n * d
            lr_star = LR_A * c**LR_B
            for k in (-2, -1, 0, 1, 2):  # a grid of learning rates around the optimum, factor 2 apart
                lr = float(lr_star * 2.0 ** (k + 0.3))
                loss = loss_nd(TRUE, n, d) * (1 + 0.03 * np.log(lr / lr_star) ** 2) * (1 + noise * rng.standard_normal())
                records.append({"id": f"{n:.0f}-{d:.0f}-{k}", "status": "ok", "val_loss": float(loss), "params": n,
                                "tokens": d, "flops": c,
                                "config": {"lr": lr, "batch_size": 32, "mix": {"a": 1.0}, "width": 1, "depth": 1}})
    return records


@pytest.fixture(scope="module")
def fitted() -> dict:
    return fit_runs(synthetic_records(), n_boot=60, confidence=0.95, seed=0)


def test_loss_law_recovered_and_intervals_cover_truth(fitted):
    law = fitted["fits"]["loss_nd"]
    for key, true in TRUE.items():
        low, high = law["interval"][key]
        assert low <= true <= high, f"{key}: true {true} outside [{low}, {high}]"
        assert abs(law["params"][key] - true) / true < 0.15, (key, law["params"][key], true)
    # the intervals are informative, not the whole bounds box
    assert law["interval"]["alpha"][1] - law["interval"]["alpha"][0] < 0.1


def test_optimal_lr_law_recovered(fitted):
    law = fitted["fits"]["lr"]
    low, high = law["interval"]["b"]
    assert low <= LR_B <= high
    assert abs(law["params"]["b"] - LR_B) < 0.02


def test_predict_bigger_run_with_interval(fitted):
    n, d = 1e9, 2e10  # 10x beyond the largest proxy in N, 20x in D
    out = predict(fitted, n, d)
    true = loss_nd(TRUE, n, d)
    assert out["loss"]["low"] <= true <= out["loss"]["high"]
    assert abs(out["loss"]["value"] - true) / true < 0.01
    true_lr = LR_A * (6 * n * d) ** LR_B
    assert out["lr"]["low"] <= true_lr <= out["lr"]["high"]
    assert out["loss_at_compute"]["low"] < out["loss_at_compute"]["high"]


def test_optimum_1d_vertex_between_grid_points():
    lrs = [0.01, 0.02, 0.04, 0.08]
    losses = [(np.log(x) - np.log(0.03)) ** 2 for x in lrs]
    assert optimum_1d(lrs, losses) == pytest.approx(0.03, rel=1e-6)
    assert optimum_1d(lrs, [1, 2, 3, 4]) == 0.01  # optimum on the edge of the sweep: the edge value


def test_fit_needs_finished_runs():
    records = synthetic_records()[:1] + [{"id": "x", "status": "diverged", "val_loss": None, "config": {}}]
    with pytest.raises(DomainlmError, match="need at least 2"):
        fit_runs(records, n_boot=5)
