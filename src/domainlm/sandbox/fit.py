"""Scaling-law fits over sandbox runs, with bootstrap confidence intervals.

Fits (each on the best run of every (params, tokens) group, i.e. the envelope over learning rate etc.):

* ``loss_nd``: L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, "Chinchilla", approach 3),
  least squares on log L with a Huber loss from a grid of starting points, as in the paper;
* ``loss_compute``: L(C) = E + A * C^-gamma on the compute frontier (C = 6ND);
* ``lr`` and ``batch_size``: the optimum per group (vertex of a parabola through the best point and its
  neighbours in log space), then a power law opt = a * C^b (DeepSeek LLM 2024, §3.1).

Intervals: the whole fit is repeated on bootstrap resamples of the runs; intervals are percentiles of the
refitted parameters and of the predictions they make. scipy (``scipy.optimize.least_squares``) does the
non-linear fits; the bootstrap and the grouping are a few lines of numpy written here.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from domainlm.errors import DomainlmError

ND_NAMES = ("E", "A", "alpha", "B", "beta")
C_NAMES = ("E", "A", "gamma")


def _least_squares():
    try:
        from scipy.optimize import least_squares
    except ImportError:
        raise DomainlmError("sandbox fit needs scipy: pip install scipy") from None
    return least_squares


# ---------------------------------------------------------------------------------------------------
# Model forms (parameters are fitted in log space for A, B, E so they stay positive)
# ---------------------------------------------------------------------------------------------------


def loss_nd(params: dict, n, d):
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    return params["E"] + params["A"] / n ** params["alpha"] + params["B"] / d ** params["beta"]


def loss_c(params: dict, c):
    return params["E"] + params["A"] * np.asarray(c, dtype=float) ** -params["gamma"]


def power_law(params: dict, x):
    return params["a"] * np.asarray(x, dtype=float) ** params["b"]


def _best_of(least_squares, residual, starts: list[np.ndarray], bounds, keep: int = 4):
    """Run the optimiser from the ``keep`` starting points with the lowest initial error (a grid of
    starts guards against local minima; polishing all of them would cost seconds per fit)."""
    low, high = np.array(bounds[0]) + 1e-9, np.array(bounds[1]) - 1e-9
    starts = [np.clip(theta, low, high) for theta in starts]
    starts.sort(key=lambda theta: float(np.sum(residual(theta) ** 2)))
    best = None
    for theta0 in starts[:keep]:
        sol = least_squares(residual, theta0, bounds=bounds, loss="huber", f_scale=1e-2)
        if best is None or sol.cost < best.cost:
            best = sol
    return best


def fit_loss_nd(n, d, loss, start: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Fit E + A/N^alpha + B/D^beta; returns the parameters and the raw vector (a warm start)."""
    least_squares = _least_squares()
    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)

    def residual(theta):
        log_e, log_a, alpha, log_b, beta = theta
        terms = np.stack([np.full_like(log_n, log_e), log_a - alpha * log_n, log_b - beta * log_d])
        return np.logaddexp.reduce(terms, axis=0) - log_l

    upper_e = np.log(loss.min())
    bounds = ([-10.0, -10.0, 0.0, -10.0, 0.0], [upper_e, 40.0, 3.0, 40.0, 3.0])
    if start is not None:
        starts = [start]
    else:  # Chinchilla's grid of initialisations: the objective has local minima
        starts = [np.array([np.log(loss.min()) + de, la, al, lb, be])
                  for de in (-1.0, -0.1) for al in (0.2, 0.5, 1.0) for be in (0.2, 0.5, 1.0)
                  for la in (2.0, 8.0) for lb in (2.0, 8.0)]
    best = _best_of(least_squares, residual, starts, bounds)
    log_e, log_a, alpha, log_b, beta = best.x
    return {"E": float(np.exp(log_e)), "A": float(np.exp(log_a)), "alpha": float(alpha),
            "B": float(np.exp(log_b)), "beta": float(beta)}, best.x


def fit_loss_c(c, loss, start: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Fit E + A * C^-gamma."""
    least_squares = _least_squares()
    log_c, log_l = np.log(np.asarray(c, dtype=float)), np.log(np.asarray(loss, dtype=float))

    def residual(theta):
        log_e, log_a, gamma = theta
        return np.logaddexp(log_e, log_a - gamma * log_c) - log_l

    bounds = ([-10.0, -10.0, 0.0], [float(log_l.min()), 60.0, 3.0])
    starts = [start] if start is not None else [
        np.array([log_l.min() + de, la, g]) for de in (-1.0, -0.1) for la in (2.0, 8.0, 16.0) for g in (0.05, 0.2, 0.5)]
    best = _best_of(least_squares, residual, starts, bounds)
    log_e, log_a, gamma = best.x
    return {"E": float(np.exp(log_e)), "A": float(np.exp(log_a)), "gamma": float(gamma)}, best.x


def fit_power_law(x, y) -> dict:
    """y = a * x^b by least squares in log-log space (b = 0 when x does not vary)."""
    log_x, log_y = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if np.ptp(log_x) == 0:
        return {"a": float(np.exp(log_y.mean())), "b": 0.0}
    b, log_a = np.polyfit(log_x, log_y, 1)
    return {"a": float(np.exp(log_a)), "b": float(b)}


def optimum_1d(values, losses) -> float:
    """Best value of a swept hyper-parameter: vertex of the parabola (in log value) through the best
    point and its two neighbours; the best point itself when it lies on the edge of the sweep."""
    values, losses = np.asarray(values, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(values)
    values, losses = values[order], losses[order]
    i = int(np.argmin(losses))
    if i == 0 or i == len(values) - 1:
        return float(values[i])
    x = np.log(values[i - 1 : i + 2])
    a, b, _ = np.polyfit(x, losses[i - 1 : i + 2], 2)
    if a <= 0:
        return float(values[i])
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))


# ---------------------------------------------------------------------------------------------------
# From run records to fits
# ---------------------------------------------------------------------------------------------------


def _rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        if r.get("status") != "ok" or r.get("val_loss") is None:
            continue
        c = r["config"]
        rows.append({"N": float(r["params"]), "D": float(r["tokens"]), "C": float(r["flops"]),
                     "lr": float(c["lr"]), "bs": float(c["batch_size"]), "loss": float(r["val_loss"]),
                     "mix": tuple(sorted(c.get("mix", {}).items())), "width": c["width"], "depth": c["depth"]})
    return rows


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups = defaultdict(list)
    for row in rows:
        groups[(row["N"], row["D"])].append(row)
    return groups


def _optimum_in_group(group: list[dict], key: str) -> float | None:
    """Optimum of ``key`` in a group, other settings held at their best values."""
    best = min(group, key=lambda r: r["loss"])
    other = "bs" if key == "lr" else "lr"
    line = {}
    for row in group:
        if row[other] == best[other]:
            line[row[key]] = min(line.get(row[key], np.inf), row["loss"])
    if len(line) < 2:
        return None
    return optimum_1d(list(line), list(line.values()))


def _fit_all(rows: list[dict], warm: dict | None = None) -> dict:
    groups = _groups(rows)
    env = [min(g, key=lambda r: r["loss"]) for g in groups.values()]
    out: dict = {}
    n_distinct, d_distinct = len({r["N"] for r in env}), len({r["D"] for r in env})
    if len(env) >= 6 and n_distinct >= 2 and d_distinct >= 2:
        params, raw = fit_loss_nd([r["N"] for r in env], [r["D"] for r in env], [r["loss"] for r in env],
                                  start=None if warm is None else warm.get("loss_nd"))
        out["loss_nd"], out["_raw_nd"] = params, raw
    frontier = _frontier(env)
    if len(frontier) >= 4:
        params, raw = fit_loss_c([r["C"] for r in frontier], [r["loss"] for r in frontier],
                                 start=None if warm is None else warm.get("loss_compute"))
        out["loss_compute"], out["_raw_c"] = params, raw
    for key, name in (("lr", "lr"), ("bs", "batch_size")):
        points = [(g[0]["C"], _optimum_in_group(g, key)) for g in groups.values()]
        points = [(c, v) for c, v in points if v is not None]
        if points:
            out[name] = {**fit_power_law([c for c, _ in points], [v for _, v in points]),
                         "points": [[c, v] for c, v in points]}
    return out


def _frontier(env: list[dict]) -> list[dict]:
    """Compute-efficient runs: each has a lower loss than every cheaper run."""
    frontier, best = [], np.inf
    for row in sorted(env, key=lambda r: r["C"]):
        if row["loss"] < best:
            frontier.append(row)
            best = row["loss"]
    return frontier


def fit_runs(records: list[dict], n_boot: int = 200, confidence: float = 0.95, seed: int = 0) -> dict:
    """All fits with bootstrap intervals; the result is JSON-serialisable and feeds :func:`predict`."""
    rows = _rows(records)
    if len(rows) < 2:
        raise DomainlmError(f"sandbox fit: {len(rows)} finished runs; need at least 2 with status ok")
    mixes = defaultdict(int)
    for row in rows:
        mixes[row["mix"]] += 1
    mix = max(mixes, key=mixes.get)
    note = "" if len(mixes) == 1 else f"runs have {len(mixes)} data mixes; fitted the most common one {dict(mix)}"
    rows = [r for r in rows if r["mix"] == mix]
    point = _fit_all(rows)
    warm = {"loss_nd": point.get("_raw_nd"), "loss_compute": point.get("_raw_c")}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[dict]] = defaultdict(list)
    for _ in range(n_boot):
        resample = [rows[i] for i in rng.integers(0, len(rows), len(rows))]
        try:
            boot = _fit_all(resample, warm)
        except (ValueError, np.linalg.LinAlgError):
            continue  # a degenerate resample (e.g. one distinct size) has no fit; skip it
        for name in ("loss_nd", "loss_compute", "lr", "batch_size"):
            if name in boot:
                samples[name].append({k: v for k, v in boot[name].items() if k != "points"})
    tail = (1 - confidence) / 2
    fits = {}
    for name in ("loss_nd", "loss_compute", "lr", "batch_size"):
        if name not in point:
            continue
        estimate = {k: v for k, v in point[name].items() if k != "points"}
        boots = samples.get(name, [])
        intervals = {k: [float(np.quantile([b[k] for b in boots], tail)), float(np.quantile([b[k] for b in boots], 1 - tail))]
                     for k in estimate} if boots else {}
        fits[name] = {"params": estimate, "interval": intervals, "bootstrap": boots}
        if "points" in point[name]:
            fits[name]["points"] = point[name]["points"]
    env = [min(g, key=lambda r: r["loss"]) for g in _groups(rows).values()]
    return {
        "confidence": confidence, "n_boot": n_boot, "runs": len(rows), "groups": len(env), "note": note,
        "mix": dict(mix), "fits": fits,
        "envelope": [{k: r[k] for k in ("N", "D", "C", "lr", "bs", "loss", "width", "depth")} for r in env],
        "runs_table": [{k: r[k] for k in ("N", "D", "C", "lr", "bs", "loss", "width", "depth")} for r in rows],
    }


def _estimate(fit: dict, fn, confidence: float) -> dict:
    value = float(fn(fit["params"]))
    boots = [float(fn(b)) for b in fit["bootstrap"]]
    tail = (1 - confidence) / 2
    out = {"value": value}
    if boots:
        out["low"], out["high"] = float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))
    return out


def predict(fit_result: dict, params: float, tokens: float) -> dict:
    """Predicted loss, learning rate and batch size (with intervals) for a run of N params, D tokens."""
    if params <= 0 or tokens <= 0:
        raise DomainlmError("predict: --params and --tokens must be positive")
    fits, confidence = fit_result["fits"], fit_result["confidence"]
    compute = 6.0 * params * tokens
    out: dict = {"params": params, "tokens": tokens, "compute": compute}
    if "loss_nd" in fits:
        out["loss"] = _estimate(fits["loss_nd"], lambda p: loss_nd(p, params, tokens), confidence)
    if "loss_compute" in fits:
        out["loss_at_compute"] = _estimate(fits["loss_compute"], lambda p: loss_c(p, compute), confidence)
    if "lr" in fits:
        out["lr"] = _estimate(fits["lr"], lambda p: power_law(p, compute), confidence)
    if "batch_size" in fits:
        out["batch_size"] = _estimate(fits["batch_size"], lambda p: power_law(p, compute), confidence)
    if len(out) == 3:
        raise DomainlmError("predict: the fit has no usable law (too few runs: sweep more sizes and lrs)")
    return out
