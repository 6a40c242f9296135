"""``domainlm compress``: a thin shell over :func:`domainlm.compress.stage.compress`.

The library takes its gate suites, training data and timing prompts as arguments; the command fills in
the sample domain's (:mod:`domainlm.sample.defaults`) where none are given, so ``domainlm compress tiny
--to int8`` works on a fresh machine.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from domainlm.compress.stage import DISTILL_TARGETS, compress
from domainlm.config import split_overrides, with_options
from domainlm.sample import SPEED_PROMPTS, distill_data, gate_suite
from domainlm.workspace import workspace_config_or_defaults


def register(app: typer.Typer) -> None:
    @app.command("compress")
    def compress_command(
        model: str = typer.Argument(..., help="Model spec to compress: tiny | HF folder | LoRA adapter folder."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml (compress.min_retention=0.95)."),
        to: str = typer.Option(..., "--to", help="merge | int8 | int4 | gguf-f16 | gguf-q8_0 | gguf-q4_k_m | distill | prune"),
        out: Path = typer.Option(..., "--out", help="Output folder."),
        gate: list[Path] = typer.Option(None, "--gate", help="Eval suite folder for the quality gate (repeatable); "
                                        "default: the sample domain's tasks/eval."),
        min_retention: float = typer.Option(None, "--min-retention", help="Result score / source score needed (0-1)."),
        no_gate: bool = typer.Option(False, "--no-gate", help="Skip the quality gate (parity still runs)."),
        teacher: str = typer.Option(None, "--teacher", help="distill: teacher model spec (default: MODEL)."),
        data: list[Path] = typer.Option(None, "--data", help="distill/prune: task or document JSONL (repeatable)."),
        steps: int = typer.Option(None, "--steps", help="distill/prune: training steps."),
        student_layers: int = typer.Option(None, "--student-layers", help="distill: student depth (0: half)."),
        prune_layers: int = typer.Option(None, "--prune-layers", help="prune: layers to drop."),
        prune_mlp: float = typer.Option(None, "--prune-mlp", help="prune: share of MLP width to keep."),
        seed: int = typer.Option(None, "--seed"),
        config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
        force: bool = typer.Option(False, "--force", help="Re-run even if inputs and config are unchanged."),
    ) -> None:
        """Compress a model (merge, int8/int4, GGUF, distill, prune) behind a template-parity check and a quality gate."""
        positional, kv = split_overrides(overrides or [])
        if positional:
            raise typer.BadParameter(f"unexpected argument '{positional[0]}' (one MODEL only)")
        ws = workspace_config_or_defaults(config, kv)
        section = ws.compress.stage_config(to, seed=ws.seed, suites=[], data=[], batch_size=ws.eval.batch_size,
                                           eval_limit=ws.eval.limit)
        cfg = with_options(section, "compress", seed=seed, gate=False if no_gate else None,
                           suites=[str(g) for g in gate] if gate else None, min_retention=min_retention,
                           teacher=teacher, data=[str(d) for d in data] if data else None, steps=steps,
                           student_layers=student_layers, prune_layers=prune_layers, prune_mlp=prune_mlp)
        if cfg.gate and not cfg.suites:
            cfg = with_options(cfg, "compress", suites=[str(gate_suite())])
        if cfg.target in DISTILL_TARGETS and not cfg.data:
            cfg = with_options(cfg, "compress", data=distill_data())
        console = Console(stderr=True)
        result = compress(model, out, cfg, force=force, console=console, speed_prompts=SPEED_PROMPTS)
        metrics = result.metrics
        if "retention" in metrics:
            console.print(f"{to}: score {metrics['source_score']:.4f} → {metrics['result_score']:.4f} "
                          f"(retention {metrics['retention']:.3f}), {metrics['size_bytes'] / 1e6:.2f} MB, "
                          f"{metrics['tokens_per_s']} tokens/s")
        console.print(f"wrote {result.outputs.get('artifact')}")
