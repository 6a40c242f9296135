"""The `forecast` plugin's backtest error vs the naive and seasonal-naive forecasts, on real public series.

The series are the ones statsmodels ships (no download): Mauna Loa CO2 (weekly, averaged to months), the El
Niño sea-surface temperatures (monthly), US real GDP (quarterly), yearly sunspots and the Nile's yearly flow.
Each is cut to its last ``--points`` values and backtested by :func:`domainlm.plugins.forecast.backtest`
(rolling origin over the last ``--folds`` windows of ``--horizon`` steps, the model form chosen on the
series refitted per window); the ratio column is model MAE / naive MAE (MASE against naive: < 1 beats it).

    python benchmarks/forecast_backtest.py [--horizon 6] [--folds 6] [--points 240]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from domainlm.plugins import ForecastConfig, forecast
from domainlm.plugins.forecast import Series

RESULTS = Path(__file__).parent / "results" / "forecast_backtest.json"


def public_series(points: int) -> list[tuple[str, np.ndarray, int]]:
    """(name, values, season length) of the statsmodels datasets, oldest first, the last ``points`` values."""
    import statsmodels.api as sm

    co2 = sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    elnino = sm.datasets.elnino.load_pandas().data.drop(columns="YEAR").to_numpy().ravel()
    gdp = sm.datasets.macrodata.load_pandas().data["realgdp"].to_numpy()
    sunspots = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
    nile = sm.datasets.nile.load_pandas().data["volume"].to_numpy()
    found = [("Mauna Loa CO2 (monthly)", co2.to_numpy(), 12), ("El Niño SST (monthly)", elnino, 12),
             ("US real GDP (quarterly)", gdp, 4), ("sunspots (yearly)", sunspots, 0), ("Nile flow (yearly)", nile, 0)]
    return [(name, np.asarray(values, dtype=float)[-points:], season) for name, values, season in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--points", type=int, default=240)
    args = parser.parse_args()

    rows = []
    for name, values, season in public_series(args.points):
        config = ForecastConfig(horizon=args.horizon, season_length=season, folds=args.folds)
        started = time.perf_counter()
        result = forecast(Series(dates=[str(i) for i in range(len(values))], values=values, source=name), config)
        bt = result["backtest"]
        row = {"series": name, "points": len(values), "season_length": season, "model": result["model"],
               "folds": bt.get("folds", 0), "mae": bt.get("mae"), "mase_vs_naive": bt.get("mase_vs_naive"),
               "beats_naive": bt.get("beats_naive"), "beats_seasonal_naive": bt.get("beats_seasonal_naive"),
               "warning": result.get("warning"), "seconds": round(time.perf_counter() - started, 2),
               "example": {"last": result["last"], "forecast": result["forecast"][:3]}}
        rows.append(row)
        mae = row["mae"] or {}
        print(f"{name:26} {row['model']:55} folds {row['folds']}  MAE model {mae.get('model', float('nan')):.4g} "
              f"naive {mae.get('naive', float('nan')):.4g} seasonal-naive {mae.get('seasonal_naive', float('nan')):.4g} "
              f"ratio {row['mase_vs_naive'] or float('nan'):.3f}  {row['seconds']}s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"horizon": args.horizon, "folds": args.folds, "points": args.points,
                                   "series": rows}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
