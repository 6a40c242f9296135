"""``domainlm demo``: the Harbor Bank sample domain written into a workspace and built with ``tiny`` (or a
given base model). Everything specific to the sample lives here or in :mod:`domainlm.sample`; the line
itself knows nothing of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from domainlm.config import CONFIG_FILE
from domainlm.io import write_text
from domainlm.pipeline.line import BuildResult, build
from domainlm.sample import generate_sample

# Settings that let `tiny` learn the sample domain on 2 CPU cores inside the demo's time budget, and an
# eval sample (items per task) that keeps four variants plus the compression gate affordable on a CPU.
# seq_len 384 holds every sample task but tool calls (~1,900 tokens with their tool schemas) and JSON
# extraction (~430), including the retrieval-augmented copies of knowledge items. At size tiny (20 items per
# task) 3 sft epochs were 42 steps, too few: one more synth file put the tuned model below the untrained one;
# 8 epochs (111 steps) is well clear of it (0.275 vs 0.046).
DEMO_SETTINGS = {
    "tiny": {"cpt_epochs": 3.0, "sft_epochs": 8.0, "eval_limit": 0, "gate_limit": 0},
    "small": {"cpt_epochs": 3.0, "sft_epochs": 1.5, "eval_limit": 20, "gate_limit": 10},
    "medium": {"cpt_epochs": 2.0, "sft_epochs": 1.0, "eval_limit": 40, "gate_limit": 20},
}


def demo_config(base: str, size: str, seed: int) -> dict[str, Any]:
    settings = DEMO_SETTINGS[size]
    return {
        "name": "harbor-bank-demo",
        "language": "zh",
        "seed": seed,
        "sources": ["sample/docs", "sample/web"],
        "tasks": {"train": ["sample/tasks/train"], "eval": ["sample/tasks/eval"]},
        "artifacts": "artifacts",
        "sample": {"seed": seed, "size": size},
        "train": {
            "base": base,
            "stages": ["cpt", "sft"],
            "seq_len": 384,
            "batch_size": 8,
            "lr": 2e-3,
            "cpt": {"epochs": settings["cpt_epochs"]},
            "sft": {"epochs": settings["sft_epochs"]},
        },
        "compress": {"gate_limit": settings["gate_limit"]},
        "eval": {"limit": settings["eval_limit"]},
    }


def demo(
    out: str | Path = "domainlm-demo",
    *,
    base: str = "tiny",
    size: str = "small",
    seed: int = 0,
    overrides: list[str] | tuple = (),
    force: bool = False,
    console: Console | None = None,
) -> BuildResult:
    """Write the sample domain into ``out``, a workspace config for it, and build the whole line."""
    console = console or Console(stderr=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]domainlm demo[/]: sample domain ({size}, seed {seed}) → {out / 'sample'}")
    generate_sample(out / "sample", seed=seed, size=size)
    config_text = (
        "# Written by `domainlm demo`: the Harbor Bank sample domain, built with "
        f"{base}.\n# Edit and run `domainlm build -c {CONFIG_FILE}` to rebuild what changed.\n"
        + yaml.safe_dump(demo_config(base, size, seed), allow_unicode=True, sort_keys=False)
    )
    config_path = out / CONFIG_FILE
    if not config_path.is_file() or config_path.read_text(encoding="utf-8") != config_text:
        write_text(config_path, config_text)
    return build(config_path, overrides, force=force, console=console)
