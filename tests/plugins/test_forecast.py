"""Price outlook: ETS forecast with intervals, backtested against naive and seasonal-naive."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("statsmodels", reason="forecast needs domainlm[plugins] (in [all], which CI installs)")

from domainlm.cli import main  # noqa: E402
from domainlm.errors import DomainlmError  # noqa: E402
from domainlm.plugins.forecast import ForecastConfig, Series, forecast, read_series, run_tool  # noqa: E402


def _co2_monthly(months: int = 120) -> np.ndarray:
    """Mauna Loa CO2 (public data shipped inside statsmodels): a real series with trend and seasonality."""
    from statsmodels.datasets import co2

    series = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    return series.to_numpy()[-months:]


def _price_series(n: int = 72, seed: int = 0) -> np.ndarray:
    """A vegetable-price-like series: yearly seasonality, slow drift, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 6.0 + 0.01 * t + 1.5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.25, n)


@pytest.mark.parametrize("values", [_co2_monthly(), _price_series()], ids=["co2", "price"])
def test_beats_naive_on_seasonal_series_and_intervals_are_ordered(values):
    result = forecast(Series([str(i) for i in range(len(values))], values, "series"), ForecastConfig(horizon=6))
    bt = result["backtest"]
    assert bt["folds"] == 3 and bt["beats_naive"] and bt["beats_seasonal_naive"] and "warning" not in result
    assert bt["mase_vs_naive"] < 0.6
    assert [p["step"] for p in result["forecast"]] == [1, 2, 3, 4, 5, 6]
    assert all(p["low"] < p["mean"] < p["high"] for p in result["forecast"])
    # the interval widens with the horizon
    widths = [p["high"] - p["low"] for p in result["forecast"]]
    assert widths[-1] > widths[0]


def test_a_random_walk_is_flagged_when_the_model_cannot_beat_naive():
    rng = np.random.default_rng(3)
    walk = 100 + np.cumsum(rng.normal(0, 1, 60))
    result = forecast(Series([str(i) for i in range(60)], walk, "walk"), ForecastConfig(horizon=3, season_length=0))
    if not result["backtest"]["beats_naive"]:
        assert "does not beat the naive forecast" in result["warning"]
    assert result["backtest"]["folds"] == 3


def test_cli_reads_csv_and_writes_json_and_plot(tmp_path, capsys):
    values = _price_series(48)
    csv_file = tmp_path / "prices.csv"
    csv_file.write_text("month,price\n" + "".join(f"2021-{i:03d},{v:.2f}\n" for i, v in enumerate(values)), encoding="utf-8")
    assert main(["forecast", str(csv_file), "--value", "price", "--date", "month", "--horizon", "3",
                 "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "forecast.json").read_text("utf-8"))
    assert len(saved["forecast"]) == 3 and saved["last"]["date"] == "2021-047"
    assert (tmp_path / "out" / "forecast.png").stat().st_size > 1000
    printed = json.loads(capsys.readouterr().out)
    assert printed == saved["forecast"]


def test_bad_input_names_the_file_and_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("month,price\n2024-01,3.2\n2024-02,n/a\n", encoding="utf-8")
    with pytest.raises(DomainlmError, match=r"bad.csv:3: 'price' is not a number"):
        read_series(bad, "price")
    with pytest.raises(DomainlmError, match="no column 'cost'"):
        read_series(bad, "cost")
    assert "at least 8" in run_tool({"values": [1, 2, 3]})["error"]
    assert "error" in run_tool({"values": [1] * 20, "horizon": 99})
    assert len(run_tool({"values": list(_price_series(40)), "horizon": 4})["forecast"]) == 4
