"""Price outlook: a 3–6-month forecast of a time series with prediction intervals, a backtest and a plot.

The model is exponential smoothing (ETS) from statsmodels, chosen per series by AIC among additive /
damped trends and additive / multiplicative seasonality: the family that wins on monthly commodity
prices in the M-competitions, cheap to fit, with analytic prediction intervals. Every forecast is
shown beside what it must beat: the backtest (rolling origin, the last ``folds`` windows of ``horizon``
steps) reports the mean absolute error of the model, of the naive forecast (the last value) and of the
seasonal-naive forecast (the value a season ago), and MASE against the naive one. A forecast that does not
beat naive says so: the caller should not trust its shape.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from domainlm.errors import DomainlmError


class ForecastConfig(BaseModel):
    horizon: int = Field(6, ge=1, le=24, description="Steps ahead (months for a monthly series).")
    season_length: int = Field(12, ge=0, description="Steps per season (12 for monthly data, 0 for none).")
    level: float = Field(0.8, gt=0, lt=1, description="Prediction interval coverage.")
    folds: int = Field(3, ge=1, description="Backtest windows of `horizon` steps at the end of the series.")


@dataclass
class Series:
    dates: list[str]
    values: np.ndarray
    source: str


def read_series(path: str | Path, value: str, date: str | None = None) -> Series:
    """A series from a CSV file: the ``value`` column (numbers), labelled by the ``date`` column if given."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise DomainlmError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise DomainlmError(f"{path}: no rows")
    for column in (value, date):
        if column and column not in rows[0]:
            raise DomainlmError(f"{path}: no column '{column}' (columns: {', '.join(rows[0])})")
    values = []
    for number, row in enumerate(rows, start=2):
        text = (row[value] or "").replace(",", "").strip()
        try:
            values.append(float(text))
        except ValueError:
            raise DomainlmError(f"{path}:{number}: '{value}' is not a number: {row[value]!r}") from None
        if not math.isfinite(values[-1]):
            raise DomainlmError(f"{path}:{number}: '{value}' is not finite")
    dates = [row[date] for row in rows] if date else [str(i) for i in range(1, len(rows) + 1)]
    return Series(dates, np.asarray(values, dtype=float), str(path))


def _fit(values: np.ndarray, season_length: int, form: dict | None = None):
    """The ETS model with the lowest AIC among the candidates the series supports (only ``form`` when given)."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    endog = pd.Series(values)  # statsmodels' prediction frames need an index
    seasonal_ok = season_length > 1 and len(values) >= 2 * season_length + 2
    positive = bool(np.all(values > 0))
    candidates = [(trend, damped, seasonal) for trend in (None, "add") for damped in (False, True)
                  for seasonal in ((None, "add", "mul") if seasonal_ok else (None,))
                  if not (damped and trend is None) and not (seasonal == "mul" and not positive)]
    if form is not None:
        candidates = [(form["trend"], form["damped"], form["seasonal"])]
    best = None
    for trend, damped, seasonal in candidates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on short series
            try:
                model = ETSModel(endog, error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                                 seasonal_periods=season_length if seasonal else None)
                fit = model.fit(disp=False, maxiter=200)
            except (ValueError, np.linalg.LinAlgError):
                continue
        if np.isfinite(fit.aic) and (best is None or fit.aic < best[0]):
            best = (fit.aic, fit, {"trend": trend, "damped": damped, "seasonal": seasonal})
    if best is None:
        raise DomainlmError("no exponential smoothing model fits this series")
    return best[1], best[2]


def _naive(history: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(history[-1], horizon)


def _seasonal_naive(history: np.ndarray, horizon: int, season_length: int) -> np.ndarray:
    if season_length < 2 or len(history) < season_length:
        return _naive(history, horizon)
    last = history[-season_length:]
    return np.array([last[i % season_length] for i in range(horizon)])


def backtest(values: np.ndarray, config: ForecastConfig, form: dict | None = None) -> dict:
    """Rolling-origin errors of the model, naive and seasonal-naive over the last ``folds`` windows.

    ``form`` (the model chosen on the whole series) is refitted on each window's history, which costs one
    fit per window instead of a whole model search."""
    h, m = config.horizon, config.season_length
    errors = {"model": [], "naive": [], "seasonal_naive": []}
    folds = 0
    for fold in range(config.folds, 0, -1):
        cut = len(values) - fold * h
        if cut < max(2 * m + 2, 8):
            continue
        history, actual = values[:cut], values[cut : cut + h]
        try:
            fit, _ = _fit(history, m, form)
        except DomainlmError:  # the chosen form does not fit this shorter history: search again
            fit, _ = _fit(history, m)
        errors["model"].append(np.abs(np.asarray(fit.forecast(h)) - actual))
        errors["naive"].append(np.abs(_naive(history, h) - actual))
        errors["seasonal_naive"].append(np.abs(_seasonal_naive(history, h, m) - actual))
        folds += 1
    if not folds:
        return {"folds": 0, "note": f"series too short to backtest ({len(values)} points)"}
    mae = {name: float(np.mean(np.concatenate(errs))) for name, errs in errors.items()}
    return {"folds": folds, "mae": mae, "mase_vs_naive": mae["model"] / mae["naive"] if mae["naive"] else None,
            "beats_naive": mae["model"] < mae["naive"], "beats_seasonal_naive": mae["model"] < mae["seasonal_naive"]}


def forecast(series: Series, config: ForecastConfig | None = None) -> dict:
    """The forecast with its interval, the chosen model and the backtest, as JSON-ready data."""
    config = config or ForecastConfig()
    values = series.values
    if len(values) < 8:
        raise DomainlmError(f"{series.source}: {len(values)} points; a forecast needs at least 8")
    fit, form = _fit(values, config.season_length)
    # Multiplicative forms get simulated intervals: a fixed seed makes the same input give the same answer.
    frame = fit.get_prediction(start=len(values), end=len(values) + config.horizon - 1,
                               rng=np.random.default_rng(0)).summary_frame(alpha=1 - config.level)
    low, high = frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy()
    result = {
        "source": series.source, "points": len(values), "last": {"date": series.dates[-1], "value": float(values[-1])},
        "model": "ETS(" + ", ".join(f"{k}={v}" for k, v in form.items()) + ")", "level": config.level,
        "forecast": [{"step": i + 1, "mean": float(frame["mean"].iloc[i]), "low": float(low[i]), "high": float(high[i])}
                     for i in range(config.horizon)],
        "backtest": backtest(values, config, form),
    }
    bt = result["backtest"]
    if bt.get("folds") and not bt["beats_naive"]:
        result["warning"] = "the model does not beat the naive forecast in backtest: trust the interval, not the shape"
    elif not bt.get("folds"):
        result["warning"] = bt["note"]
    return result


def plot(series: Series, result: dict, out: str | Path) -> Path:
    """History, forecast and interval as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series.values)
    steps = [n - 1 + p["step"] for p in result["forecast"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(range(n), series.values, color="#2b6cb0", label="history")
    ax.plot(steps, [p["mean"] for p in result["forecast"]], color="#c05621", label="forecast")
    ax.fill_between(steps, [p["low"] for p in result["forecast"]], [p["high"] for p in result["forecast"]],
                    color="#c05621", alpha=0.2, label=f"{int(result['level'] * 100)}% interval")
    ax.set_title(result["model"], fontsize="small")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


TOOL = {"type": "function", "function": {
    "name": "price_forecast",
    "description": "Forecast the next months of a price series with prediction intervals and a backtest.",
    "parameters": {"type": "object", "properties": {
        "values": {"type": "array", "items": {"type": "number"}, "description": "The series, oldest first."},
        "horizon": {"type": "integer", "minimum": 1, "maximum": 24},
        "season_length": {"type": "integer", "minimum": 0}},
        "required": ["values"]}}}


def run_tool(arguments: dict) -> dict:
    """The tool a model calls: the forecast of the values it gives (errors come back as ``{"error"}``)."""
    try:
        values = [float(v) for v in arguments.get("values") or []]
        config = ForecastConfig(**{k: arguments[k] for k in ("horizon", "season_length") if k in arguments})
        return forecast(Series([str(i) for i in range(1, len(values) + 1)], np.asarray(values), "arguments"), config)
    except (DomainlmError, TypeError, ValueError) as exc:
        return {"error": str(exc)}
