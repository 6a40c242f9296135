"""``domainlm sample``: the command-line shell over :func:`domainlm.sample.generate_sample`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("sample")
    def sample(
        out: Path = typer.Option(..., "--out", help="Folder to write the sample domain into."),
        seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives byte-identical files."),
        size: str = typer.Option("small", "--size", help="tiny | small | medium"),
        force: bool = typer.Option(False, "--force", help="Re-generate even if the folder is up to date."),
    ) -> None:
        """Generate the sample bank domain: documents, noisy web copies, ground truth and task files."""
        from rich.console import Console

        from domainlm.errors import DomainlmError
        from domainlm.sample.generate import SIZES, generate_sample
        from domainlm.workspace import read_manifest

        if size not in SIZES:
            raise DomainlmError(f"--size '{size}': expected one of {', '.join(SIZES)}")
        console = Console(stderr=True)
        before = read_manifest(out)
        generate_sample(out, seed=seed, size=size, force=force)
        manifest = read_manifest(out)
        if not force and before is not None and manifest is not None and before.started == manifest.started:
            console.print(f"{out}: up to date (seed {seed}, size {size}); use --force to re-generate")
            return
        m = manifest.metrics if manifest else {}
        items = m.get("task_items", {})
        console.print(
            f"wrote {out}: {m.get('documents')} documents, {m.get('web_pages')} web pages, {m.get('facts')} facts, "
            f"{m.get('noise_spans')} noise spans, {m.get('pii_spans')} PII spans, "
            f"{sum(v for k, v in items.items() if k.startswith('train/'))} train / "
            f"{sum(v for k, v in items.items() if k.startswith('eval/'))} eval task items"
        )
