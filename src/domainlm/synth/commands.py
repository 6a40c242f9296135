"""``domainlm synth KB --out DIR [--teacher M]``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from domainlm.config import with_options
from domainlm.synth import synth_stage
from domainlm.workspace import workspace_config_or_defaults


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_command)


def synth_command(
    kb: Path = typer.Argument(..., help="Knowledge base folder (from `domainlm kb build`)."),
    out: Path = typer.Option(..., "--out", help="Folder for train/*.jsonl and eval/*.jsonl."),
    teacher: str = typer.Option(None, "--teacher", help="Model spec of a teacher that writes extra questions."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Re-run even when inputs and config are unchanged."),
    config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
) -> None:
    """Training and evaluation sets (knowledge QA, unanswerable questions) from a knowledge base."""
    console = Console(stderr=True)
    workspace = workspace_config_or_defaults(config)
    section = workspace.synth.stage_config(seed=seed, reading_passages=workspace.retrieval.training_passages)
    result = synth_stage(kb, out, with_options(section, "synth", teacher=teacher), force=force)
    if result.skipped:
        console.print(f"synth: up to date in {out} (use --force to re-run)")
        return
    summary = ", ".join(f"{name} {n}" for name, n in result.metrics.items())
    console.print(f"synth: wrote {out}: {summary}")
