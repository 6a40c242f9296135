"""CLI: ``domainlm forecast``, ``domainlm exam`` and ``domainlm plugins list``."""

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

    @app.command("exam")
    def exam_command(
        kb_dir: Path = typer.Argument(..., help="Knowledge-base folder (from `domainlm kb build`)."),
        out: Path = typer.Option(..., "--out", help="exam.md, exam.docx or exam.json (the format is the suffix)."),
        n: int = typer.Option(20, "--n", help="Items wanted."),
        types: str = typer.Option("mcq,cloze,short", "--types", help="Item types, comma-separated."),
        seed: int = typer.Option(0, "--seed", help="Seed: the same KB and seed give the same exam."),
        query: str = typer.Option(None, "--query", help="Topic: items only from passages the KB's search returns."),
        choices: int = typer.Option(4, "--choices", help="Options of a multiple-choice item."),
    ) -> None:
        """Exam from a KB: multiple choice, fill in the blank, short answer; answer key with each item's passage."""
        from domainlm.config import validate
        from domainlm.io import dumps
        from domainlm.kb import open_kb
        from domainlm.plugins.exam import ExamConfig, exam_format, make_exam, validate_exam, write_exam

        config = validate(ExamConfig, {"n": n, "types": [t.strip() for t in types.split(",") if t.strip()],
                                       "seed": seed, "query": query, "choices": choices}, "exam")
        exam_format(out)
        kb = open_kb(kb_dir)
        exam = make_exam(kb_dir, config, kb=kb)
        report = validate_exam(exam, kb)
        write_exam(exam, out)
        counts = ", ".join(f"{v['n']} {t}" for t, v in report["by_type"].items())
        err.print(f"{out}: {report['n']} items ({counts}); {report['valid']} valid (key in its passage, "
                  "no distractor supported by it)", highlight=False)
        for warning in exam.warnings:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False)
        for problem in report["problems"]:
            err.print(f"[red]invalid:[/] {problem['id']}: {'; '.join(problem['problems'])}", highlight=False)
        typer.echo(dumps({k: report[k] for k in ("n", "valid", "validity", "by_type")}))
        if report["problems"]:
            raise typer.Exit(1)

    plugins = typer.Typer(help="Tools a served model can call: built in, from entry points, from OpenAPI files.",
                          no_args_is_help=True)

    @plugins.command("list")
    def list_command(
        openapi: list[Path] = typer.Option(None, "--openapi", help="An OpenAPI 3 file (JSON or YAML) to read as tools "
                                           "(repeatable)."),
        timeout: float = typer.Option(10.0, "--tool-timeout", help="Seconds an OpenAPI tool's request may take."),
        as_json: bool = typer.Option(False, "--json", help="JSON output, with each tool's whole parameters schema."),
    ) -> None:
        """Every tool `serve --plugin all` would load (built-in and entry points), and those of --openapi files."""
        from domainlm.io import dumps
        from domainlm.plugins.registry import load_tools

        tools = load_tools(["all"], [str(p) for p in openapi or []], timeout)
        if as_json:
            typer.echo(dumps([{"name": t.name, "source": t.source, "description": t.description,
                               "parameters": t.parameters} for t in tools]))
            return
        from rich.table import Table

        table = Table("name", "source", "parameters", "description", show_lines=False)
        for t in tools:
            table.add_row(t.name, t.source, t.summary(), t.description)
        Console().print(table)
        err.print("kb_search is added by `serve --kb`; `serve --plugin NAME` or `--openapi FILE` makes a tool callable.")

    app.add_typer(plugins, name="plugins")
