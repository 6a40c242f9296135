"""``domainlm eval``: a thin shell over :func:`domainlm.evals.stage.evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from domainlm.config import with_options
from domainlm.evals.stage import evaluate
from domainlm.io import read_json
from domainlm.workspace import workspace_config_or_defaults


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        overrides: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml (eval.seed=1)."),
        model: str = typer.Option(None, "--model", help="Model spec: tiny | HF dir | file.gguf | openai:URL#name."),
        kb: Path = typer.Option(None, "--kb", help="Knowledge base for retrieval-augmented eval."),
        suite: list[Path] = typer.Option(None, "--suite", help="Suite folder (task JSONL + suite.yaml); repeatable."),
        out: Path = typer.Option(..., "--out", help="Output folder."),
        predictions: Path = typer.Option(None, "--predictions", help="Re-score stored predictions (no model)."),
        variants: list[str] = typer.Option(None, "--variants", help="NAME=MODEL or NAME=MODEL@KB; repeat to compare variants."),
        general: list[Path] = typer.Option(None, "--general", help="A --suite that is the general-ability panel."),
        kb_k: int = typer.Option(None, "--kb-k", min=1, help="Passages retrieved from --kb per item (default: retrieval.k, 3)."),
        limit: int = typer.Option(None, "--limit", min=0, help="At most N items per task, a seeded sample (default: eval.limit)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Batch size (does not change greedy results)."),
        seed: int = typer.Option(None, "--seed"),
        config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
        force: bool = typer.Option(False, "--force", help="Re-run even if inputs and config are unchanged."),
    ) -> None:
        """Score a model (or stored predictions) on task suites: results.json, predictions.jsonl, report.html."""
        cfg = workspace_config_or_defaults(config, overrides or [])
        section = cfg.eval.stage_config(suites=[str(s) for s in suite] if suite else list(cfg.tasks.eval),
                                        variants=list(variants or []), kb_k=kb_k or cfg.retrieval.k)
        # --general names the panel of this run; the workspace's eval.general belongs to its own suites.
        eval_cfg = with_options(section, "eval", model=model, kb=str(kb) if kb else None,
                                predictions=str(predictions) if predictions else None,
                                general=[str(g) for g in general or []], limit=limit, seed=seed, batch_size=batch_size)
        results = read_json(evaluate(eval_cfg, out, force=force).outputs["results"])
        console = Console(stderr=True)
        if results.get("variants"):
            for name, v in results["variants"].items():
                console.print(f"{name}: score {v['overall']['score']:.4f} (n={v['overall']['n']})")
        else:
            o = results["overall"]
            console.print(f"score {o['score']:.4f}  95% CI {o['ci95']}  n={o['n']}  unparseable {o['unparseable']:.3f}")
            for cat, body in results["categories"].items():
                console.print(f"  {cat}: {body['score']:.4f} {body['ci95']} (n={body['n']})")
        console.print(f"wrote {out / 'results.json'}, {out / 'report.html'}")
