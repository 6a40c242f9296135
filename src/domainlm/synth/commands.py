"""``domainlm synth KB --out DIR [--teacher M]``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        kb: Path = typer.Argument(..., help="Knowledge base folder (from `domainlm kb build`)."),
        out: Path = typer.Option(..., "--out", help="Folder for train/*.jsonl and eval/*.jsonl."),
        teacher: str = typer.Option(None, "--teacher", help="Model spec of a teacher that writes extra questions."),
        seed: int = typer.Option(0, "--seed"),
        force: bool = typer.Option(False, "--force", help="Re-run even when inputs and config are unchanged."),
    ) -> None:
        """Training and evaluation sets (knowledge QA, unanswerable questions) from a knowledge base."""
        from rich.console import Console

        from domainlm.synth import SynthConfig
        from domainlm.synth.generate import synth_stage

        console = Console(stderr=True)
        metrics, skipped = synth_stage(kb, out, SynthConfig(seed=seed, teacher=teacher), force=force)
        if skipped:
            console.print(f"synth: up to date in {out} (use --force to re-run)")
            return
        summary = ", ".join(f"{name} {n}" for name, n in metrics.items())
        console.print(f"synth: wrote {out}: {summary}")
