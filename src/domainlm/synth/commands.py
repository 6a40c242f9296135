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

        from domainlm.kb import open_kb
        from domainlm.synth import SynthConfig, synthesize
        from domainlm.workspace import stage_run

        open_kb(kb)  # a missing or broken KB fails here with its own one-line reason
        config = SynthConfig(seed=seed, teacher=teacher)
        console = Console(stderr=True)
        with stage_run("synth", out, inputs=[kb], config=config, seed=seed, force=force) as run:
            if run.skipped:
                console.print(f"synth: up to date in {out} (use --force to re-run)")
                return
            result = synthesize(kb, out, config)
            for name in result.counts:
                run.output(f"{name}.jsonl")
            run.output("rejected.jsonl")
            run.metrics.update(result.counts, rejected=result.rejected)
        summary = ", ".join(f"{name} {n}" for name, n in result.counts.items())
        console.print(f"synth: wrote {out}: {summary}; rejected {result.rejected}")
