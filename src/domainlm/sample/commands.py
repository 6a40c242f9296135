"""``domainlm sample``: the command-line shell over :func:`domainlm.sample.generate_sample`."""

from __future__ import annotations

from pathlib import Path

import typer

from domainlm.config import split_overrides
from domainlm.errors import DomainlmError
from domainlm.manifest import read_manifest
from domainlm.sample.generate import SIZES, generate_sample
from domainlm.workspace import workspace_config_or_defaults


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)


def sample_command(
    args: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml (sample.seed=3, sample.size=tiny)."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder to write the sample domain into."),
    seed: int = typer.Option(None, "--seed", help="Seed; the same seed gives byte-identical files (default: sample.seed, 0)."),
    size: str = typer.Option(None, "--size", help="tiny | small | medium (default: sample.size, small)."),
    force: bool = typer.Option(False, "--force", help="Re-generate even if the folder is up to date."),
    config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one, if any)."),
) -> None:
    """Generate the sample bank domain: documents, noisy web copies, ground truth and task files."""
    from rich.console import Console


    positional, overrides = split_overrides(args or [])
    if positional:
        raise DomainlmError(f"sample: unexpected argument '{positional[0]}' (the output folder goes after --out)")
    if out is None:
        raise DomainlmError("sample: --out DIR is required")
    section = workspace_config_or_defaults(config, overrides).sample
    seed = section.seed if seed is None else seed
    size = section.size if size is None else size
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
