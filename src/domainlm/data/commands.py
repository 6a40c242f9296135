"""``domainlm clean`` and ``domainlm quality-scorer``: thin shells over :mod:`domainlm.data`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from domainlm.config import split_overrides, with_options
from domainlm.data.quality import QualityScorer
from domainlm.data.recipe import load_recipe
from domainlm.data.stage import clean
from domainlm.errors import DomainlmError
from domainlm.io import iter_jsonl
from domainlm.workspace import workspace_config_or_defaults


def register(app: typer.Typer) -> None:
    app.command("clean")(clean_command)
    app.command("quality-scorer")(quality_scorer_command)


def clean_command(
    args: list[str] = typer.Argument(
        None, help="Input files/folders, and key=value overrides of domainlm.yaml (clean.*)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder."),
    recipe: str = typer.Option(
        None, "--recipe", help="Built-in recipe (default-zh, default-en) or a recipe YAML file."
    ),
    engine: str = typer.Option(None, "--engine", help="local | ray"),
    workers: int = typer.Option(None, "--workers", help="Worker processes (0 = one per core)."),
    text_field: str = typer.Option(None, "--text-field", help="Text column of jsonl/csv inputs (default: text)."),
    explain: bool = typer.Option(False, "--explain", help="Print what the recipe will do and exit."),
    force: bool = typer.Option(False, "--force", help="Re-run even when inputs and config are unchanged."),
    config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
) -> None:
    """Clean raw documents: ingest, repair, remove noise, redact PII, score, dedup; trace and data card."""
    console = Console(stderr=True)
    inputs, overrides = split_overrides(args or [])
    section = workspace_config_or_defaults(config, overrides).clean
    cfg = with_options(section, "clean", recipe=recipe, engine=engine, workers=workers, text_field=text_field)
    if explain:
        typer.echo(load_recipe(cfg.recipe).explain())
        return
    if not inputs:
        raise DomainlmError("clean: give at least one input file or folder")
    if out is None:
        raise DomainlmError("clean: --out DIR is required")
    result = clean(inputs, out, cfg, force=force, progress=True)
    if result.skipped:
        console.print(f"up to date: {out} (inputs and config unchanged; --force to re-run)")
    m = result.metrics
    typer.echo(
        f"kept {m.get('kept', 0)}, rejected {m.get('rejected', 0)}, duplicates {m.get('duplicates', 0)} "
        f"of {m.get('documents', 0)} documents -> {result.outputs['clean']}"
    )


def quality_scorer_command(
    kept: list[Path] = typer.Option(..., "--kept", help="JSONL files of documents to keep (a 'text' field)."),
    rejected: list[Path] = typer.Option(
        ..., "--rejected", help="JSONL files of documents to reject (e.g. a rejected.jsonl)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Scorer file to write (.npz); use it as quality.scorer in a recipe."
    ),
    text_field: str = typer.Option("text", "--text-field"),
) -> None:
    """Train a learned quality scorer on your own kept/rejected examples."""

    def texts(paths: list[Path]) -> list[str]:
        return [r[text_field] for p in paths for r in iter_jsonl(p) if isinstance(r.get(text_field), str)]

    good, bad = texts(kept), texts(rejected)
    scorer = QualityScorer.train(good, bad)
    scorer.save(out)
    right = sum(scorer.predict(t) >= 0.5 for t in good) + sum(scorer.predict(t) < 0.5 for t in bad)
    typer.echo(
        f"trained on {len(good)} kept / {len(bad)} rejected; training accuracy {right / (len(good) + len(bad)):.3f} -> {out}"
    )
