"""``domainlm build``, ``domainlm rebase``, ``domainlm versions`` and ``domainlm demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from domainlm.pipeline import build as run_build
from domainlm.pipeline import demo as run_demo
from domainlm.pipeline import rebase as run_rebase


def _print_result(result) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    ran = [o.name for o in result.outcomes if o.status == "ran"]
    console.print(f"done: {len(ran)} stage(s) ran" + (f" ({', '.join(ran)})" if ran else ", everything was up to date"))
    if result.report:
        typer.echo(str(result.report))


def register(app: typer.Typer) -> None:
    @app.command()
    def build(
        args: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml"),
        config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
        until: str = typer.Option(None, "--until", help="Last stage to run: clean kb synth train compress eval report."),
        from_: str = typer.Option(None, "--from", help="First stage to run (earlier artifacts must exist)."),
        force: bool = typer.Option(False, "--force", help="Re-run the selected stages even when up to date."),
    ) -> None:
        """Run the configured line on a workspace: clean → kb → synth → train → compress → eval → report."""

        _print_result(run_build(config, args or [], until=until, from_=from_, force=force))

    @app.command()
    def rebase(
        new_base: str = typer.Argument(..., metavar="NEW", help="Model spec of the new base model."),
        args: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml"),
        config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
        registry: Path = typer.Option(None, "--registry", help="Flywheel model registry: the feedback its promoted "
                                      "sft turns trained on is trained into the new line too."),
        keep_old: bool = typer.Option(False, "--keep-old", help="Build and compare, but keep the workspace on the old "
                                      "base (the new line is kept in the snapshot's new/)."),
        force: bool = typer.Option(False, "--force", help="Re-run every stage."),
    ) -> None:
        """Rebuild the line on a new base model with the same data, feedback, suites and seeds; rebase.md shows
        old vs new per suite and category with the 95% interval of the difference. The old line is kept."""

        result = run_rebase(config, new_base, args or [], registry=registry, keep_old=keep_old, force=force)
        _print_result(result.build)
        if result.comparison is not None:
            typer.echo(str(result.comparison.with_name("rebase.md")))

    @app.command()
    def versions(
        config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml of the line (default: nearest one)."),
        registry: Path = typer.Option(None, "--registry", help="A flywheel model registry instead of a workspace."),
        plot: Path = typer.Option(None, "--plot", help="Also write knowledge density across versions here (PNG)."),
        as_json: bool = typer.Option(False, "--json", help="Print the records (JSON lines) instead of the table."),
    ) -> None:
        """Every model version the line or the flywheel made: parameters (counted from the weights), compute
        per token, score, general-ability retention and knowledge density, with a note where a score rests on
        too few items or on empty / degenerate outputs. Reads ARTIFACTS/versions.jsonl or REGISTRY/versions.jsonl."""
        from domainlm.errors import DomainlmError
        from domainlm.io import dumps
        from domainlm.pipeline.versions import (
            format_table,
            plot_versions,
            registry_versions,
            table_rows,
            workspace_versions,
        )
        from domainlm.workspace import load_workspace

        if registry is not None and config is not None:
            raise DomainlmError("versions: pass --registry or -c/--config, not both")
        records = registry_versions(registry) if registry is not None else workspace_versions(load_workspace(config))
        if as_json:
            for record in records:
                typer.echo(dumps(record))
        else:
            typer.echo(format_table(table_rows(records)))
        if plot is not None:
            written = plot_versions(records, plot)
            typer.echo(f"wrote {written}" if written else "no plot: no version has both a score and counted weights",
                       err=True)

    @app.command()
    def demo(
        args: list[str] = typer.Argument(None, help="key=value overrides of the demo's domainlm.yaml"),
        out: Path = typer.Option(Path("domainlm-demo"), "--out", help="Folder for the sample domain and every artifact."),
        base: str = typer.Option("tiny", "--base", help="Base model spec (default: tiny, trained here from scratch)."),
        size: str = typer.Option("small", "--size", help="Sample domain size: tiny | small | medium."),
        seed: int = typer.Option(0, "--seed"),
        force: bool = typer.Option(False, "--force", help="Re-run every stage."),
    ) -> None:
        """Write the Harbor Bank sample domain and build the whole line on it; prints the report's path."""

        _print_result(run_demo(out, base=base, size=size, seed=seed, overrides=args or [], force=force))
