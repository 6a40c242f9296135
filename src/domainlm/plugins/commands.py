"""CLI: ``domainlm forecast``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("forecast")
    def forecast_command(
        csv_file: Path = typer.Argument(..., help="CSV with one row per period, oldest first."),
        value: str = typer.Option(..., "--value", help="Column holding the numbers (a price)."),
        date: str = typer.Option(None, "--date", help="Column labelling each period."),
        horizon: int = typer.Option(6, "--horizon", help="Periods ahead (3–6 months for a price outlook)."),
        season: int = typer.Option(12, "--season", help="Periods per season (12 for monthly, 0 for none)."),
        level: float = typer.Option(0.8, "--level", help="Prediction interval coverage."),
        out: Path = typer.Option(None, "--out", help="Folder for forecast.json and forecast.png."),
    ) -> None:
        """Price outlook: forecast with intervals, backtested against naive and seasonal-naive."""
        from domainlm.config import validate
        from domainlm.io import dumps, write_json
        from domainlm.plugins.forecast import ForecastConfig, forecast, plot, read_series

        config = validate(ForecastConfig, {"horizon": horizon, "season_length": season, "level": level}, "forecast")
        series = read_series(csv_file, value, date)
        result = forecast(series, config)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "forecast.json", result)
            plot(series, result, out / "forecast.png")
            err.print(f"{out}/forecast.json, {out}/forecast.png")
        bt = result["backtest"]
        if bt.get("folds"):
            mae = bt["mae"]
            err.print(f"{result['model']}; backtest MAE {mae['model']:.3g} vs naive {mae['naive']:.3g}, "
                      f"seasonal-naive {mae['seasonal_naive']:.3g} ({bt['folds']} windows of {horizon})", highlight=False)
        if result.get("warning"):
            err.print(f"[yellow]warning:[/] {result['warning']}", highlight=False)
        typer.echo(dumps(result["forecast"]))
