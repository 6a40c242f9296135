"""``domainlm sandbox``: sweeps, scaling fits, predictions, knowledge capacity, muP coordinate check.

Thin shells over the stage functions; torch, scipy and matplotlib are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from domainlm.config import apply_overrides, validate
from domainlm.errors import DomainlmError
from domainlm.io import read_json, read_jsonl, write_json, write_text
from domainlm.manifest import stage_run
from domainlm.sandbox.capacity import CapacityConfig, run_capacity
from domainlm.sandbox.fit import fit_runs, predict
from domainlm.sandbox.sweep import SweepConfig, load_results, load_sweep_config, print_table, run_sweep, write_results

console = Console(stderr=True)

sandbox_app = typer.Typer(
    help="Model sandbox: many small muP runs to choose data mix and hyper-parameters before one big run.",
    no_args_is_help=True,
)

# The sweep used when no --config is given: learning rate x width on the given data, so that the
# muTransfer picture (same best LR at every width) and a first scaling fit come out of the box.
DEFAULT_SPACE = {"lr": [0.003, 0.01, 0.03, 0.1], "width": [32, 64, 128]}
DEFAULT_BASE = {"depth": 2, "base_width": 32, "tokens": 300_000, "seq_len": 64, "batch_size": 16}


def _sources(data: list[str]) -> dict:
    sources = {}
    for index, item in enumerate(data):
        name, sep, path = item.partition("=")
        if not sep or "/" in name or not name:
            name, path = ("industry" if index == 0 else f"source{index}"), item
        sources[name] = {"path": str(Path(path).resolve()), "weight": 1.0}
    return sources


@sandbox_app.command("sweep")
def sweep_cmd(
    overrides: list[str] = typer.Argument(None, help="key=value overrides of the sweep config, e.g. workers=4"),
    config: Path = typer.Option(None, "--config", "-c", help="SWEEP.yaml (see docs/sandbox.md)."),
    data: list[str] = typer.Option(None, "--data", help="Without --config: text source(s), [name=]PATH; "
                                   "a sample-domain folder, Document JSONL, SQuAD JSON or .txt."),
    out: Path = typer.Option(None, "--out", help="Sweep folder (default: artifacts/sandbox/<name>)."),
    workers: int = typer.Option(None, "--workers", help="Parallel runs (default: config's, or one per core)."),
    force: bool = typer.Option(False, "--force", help="Re-run every run, even finished ones."),
) -> None:
    """Run a grid / random / Bayesian sweep of small muP models; resumable; prints the results table."""

    overrides = overrides or []
    if config is not None:
        cfg = load_sweep_config(config, overrides)
        config_dir = config.resolve().parent
        inputs = [config]
    elif data:
        raw = apply_overrides({"name": "default", "data": {"sources": _sources(data)}, "base": dict(DEFAULT_BASE),
                               "search": {"method": "grid", "space": DEFAULT_SPACE}}, overrides)
        cfg = validate(SweepConfig, raw, "sandbox sweep")
        config_dir, inputs = Path("."), []
    else:
        raise DomainlmError("sandbox sweep: give --config SWEEP.yaml or --data PATH")
    if workers is not None:
        cfg.workers = workers
    out = out or Path("artifacts") / "sandbox" / cfg.name
    for src in cfg.data.sources.values():
        path = Path(src.path) if Path(src.path).is_absolute() else config_dir / src.path
        if not path.exists():
            raise DomainlmError(f"data source {src.path}: no such file or folder (relative to {config_dir})")
        inputs.append(path)
    with stage_run("sandbox.sweep", out, inputs=inputs, config=cfg, force=force) as run:
        if run.skipped:
            console.print(f"{out}: up to date (use --force to re-run)")
            print_table(read_jsonl(out / "results.jsonl"))
            return
        records = run_sweep(cfg, out, config_dir=config_dir, force=force)
        run.output("results.jsonl")
        run.output("results.csv")
        write_results(records, out)
        ok = [r for r in records if r["status"] == "ok"]
        run.metrics.update({"runs": len(records), "ok": len(ok), "diverged": sum(r["status"] == "diverged" for r in records),
                            "failed": sum(r["status"] == "failed" for r in records),
                            "best_val_loss": ok[0]["val_loss"] if ok else None, "best_run": ok[0]["id"] if ok else None})
    print_table(records)
    console.print(f"wrote {out / 'results.jsonl'}, {out / 'results.csv'} ({len(records)} runs)")
    failed = [r for r in records if r["status"] == "failed"]
    for record in failed[:3]:
        console.print(f"[yellow]run {record['id']} failed:[/] {record.get('error')}")


@sandbox_app.command("fit")
def fit_cmd(
    sweeps: list[Path] = typer.Argument(..., help="Sweep folders (or runs/ folders, result files)."),
    out: Path = typer.Option(..., "--out", help="Folder for fit.json and report.html."),
    boot: int = typer.Option(200, "--boot", min=0, help="Bootstrap resamples."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999),
    seed: int = typer.Option(0, "--seed"),
    params: float = typer.Option(None, "--params", help="Recommendation for a run of N non-embedding params..."),
    tokens: float = typer.Option(None, "--tokens", help="...trained on D tokens (bytes in the sandbox)."),
    compute: float = typer.Option(None, "--compute", help="Or for a compute budget C in FLOPs (N from the "
                                  "L(N, D) law unless --params is given). Default: the largest swept run."),
    width: int = typer.Option(None, "--width", min=1, help="Hidden size of the real model: the recommended lr is "
                              "moved there from the sweep's muP base width (x base_width/width)."),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Fit loss vs params/tokens/compute and optimal LR / batch size vs scale, with bootstrap intervals;
    write recommendation.json (lr, batch size, steps, predicted loss) for the real run."""
    from domainlm.sandbox.recommend import FILE, recommend
    from domainlm.sandbox.report import fit_report

    for name, value in (("--params", params), ("--tokens", tokens), ("--compute", compute)):
        if value is not None and value <= 0:
            raise DomainlmError(f"sandbox fit: {name} must be positive, got {value}")
    if (tokens is not None and (params is None or compute is not None)) or (params is not None and tokens is None
                                                                           and compute is None):
        raise DomainlmError("sandbox fit: give --params with --tokens, --compute (with or without --params), or none")
    records = load_results(sweeps)
    files = [Path(s) / "runs" if (Path(s) / "runs").is_dir() else Path(s) for s in sweeps]
    # the target is part of the config: a new target re-writes the recommendation
    settings = {"boot": boot, "confidence": confidence, "seed": seed,
                "target": {"params": params, "tokens": tokens, "compute": compute, "width": width}}
    with stage_run("sandbox.fit", out, inputs=files, config=settings, seed=seed, force=force) as run:
        if run.skipped:
            console.print(f"{out}: up to date (use --force to re-run)")
            fit = json.loads((out / "fit.json").read_text(encoding="utf-8"))
        else:
            with console.status(f"fitting {len(records)} runs, {boot} bootstrap resamples"):
                fit = fit_runs(records, n_boot=boot, confidence=confidence, seed=seed)
            write_json(run.output("fit.json"), fit)
            write_text(run.output("report.html"), fit_report(fit))
            run.metrics.update({name: law["params"] for name, law in fit["fits"].items()})
            try:
                rec = recommend(fit, params=params, tokens=tokens, compute=compute, width=width,
                                seq_len=_common(records, "seq_len"), base_width=_common(records, "base_width"))
            except DomainlmError as exc:
                # the fits are still worth keeping; a missing recommendation is said, and `lr: auto` will say it too
                console.print(f"[yellow]no recommendation:[/] {exc}")
                (out / FILE).unlink(missing_ok=True)  # never leave an older fit's recommendation beside this fit
                rec = None
            if rec is not None:
                write_json(run.output(FILE), rec.model_dump(mode="json"))
                run.metrics["recommendation"] = {"lr": rec.lr.value, "loss": rec.loss.value if rec.loss else None,
                                                 "trusted": rec.trusted}
    _print_fit(fit)
    if (out / FILE).is_file():
        _print_recommendation(read_json(out / FILE))
    console.print(f"wrote {out / 'fit.json'} and {out / 'report.html'}"
                  + (f" and {out / FILE}" if (out / FILE).is_file() else ""))


def _common(records: list[dict], key: str) -> int | None:
    """A run setting (seq_len, base_width) when every finished run used the same one, else None."""
    values = {r["config"].get(key) for r in records if r.get("status") == "ok"}
    return values.pop() if len(values) == 1 and None not in values else None


def _print_recommendation(rec: dict) -> None:
    def fmt(est: dict | None) -> str:
        if est is None:
            return "-"
        interval = f"  [{est['low']:.4g}, {est['high']:.4g}]" if est.get("low") is not None else ""
        return f"{est['value']:.4g}{interval}"

    t = rec["target"]
    typer.echo(f"recommendation for N={t['params']:.4g}, D={t['tokens']:.4g}, C={t['compute']:.4g} ({t['source']}):")
    typer.echo(f"  learning rate: {fmt(rec['lr'])}" + (f" at width {rec['width']} (muP lr {rec['lr_mup']['value']:.4g} "
                                                        f"at base width {rec['swept']['base_width']})" if rec.get("width") else ""))
    typer.echo(f"     batch size: {fmt(rec['batch_size'])}" + (f" ({rec['batch_bytes']} bytes, {rec['steps']} steps)"
                                                             if rec.get("batch_bytes") else ""))
    typer.echo(f" predicted loss: {fmt(rec['loss'])} {rec['loss_unit'].split(' (')[0]}")
    if rec["trusted"]:
        typer.echo("  trusted: yes (within the swept range, enough points, narrow intervals)")
    else:
        typer.echo("  trusted: NO")
        for reason in rec["reasons"]:
            typer.echo(f"    - {reason}")


def _print_fit(fit: dict) -> None:
    from rich.table import Table

    table = Table(title=f"scaling fits ({int(fit['confidence'] * 100)}% bootstrap intervals, {fit['runs']} runs)")
    for column in ("law", "parameter", "estimate", "interval"):
        table.add_column(column)
    for name, law in fit["fits"].items():
        for key, value in law["params"].items():
            low, high = law["interval"].get(key, (float("nan"), float("nan")))
            table.add_row(name, key, f"{value:.4g}", f"[{low:.4g}, {high:.4g}]")
    Console().print(table)
    if fit.get("note"):
        console.print(fit["note"])


@sandbox_app.command("predict")
def predict_cmd(
    fit: Path = typer.Option(..., "--fit", help="fit.json or the folder written by `sandbox fit`."),
    params: float = typer.Option(..., "--params", help="Non-embedding parameters N of the big run."),
    tokens: float = typer.Option(..., "--tokens", help="Training tokens D of the big run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Predicted loss, learning rate and batch size (with intervals) for a bigger run."""

    path = fit / "fit.json" if fit.is_dir() else fit
    result = predict(read_json(path), params, tokens)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"N={params:.4g} params, D={tokens:.4g} tokens, C={result['compute']:.4g} FLOPs")
    for key, label in (("loss", "loss L(N,D)"), ("loss_at_compute", "loss L(C)"), ("lr", "learning rate"),
                       ("batch_size", "batch size")):
        if key in result:
            est = result[key]
            interval = f"  [{est['low']:.4g}, {est['high']:.4g}]" if "low" in est else ""
            typer.echo(f"{label:>14}: {est['value']:.4g}{interval}")


@sandbox_app.command("capacity")
def capacity_cmd(
    overrides: list[str] = typer.Argument(None, help="key=value settings, e.g. people=500 width=128 lr=0.01"),
    out: Path = typer.Option(..., "--out", help="Folder for capacity.json and report.html."),
    exposures: str = typer.Option(None, "--exposures", help="Comma-separated exposure counts, e.g. 1,10,100."),
    mix_fractions: str = typer.Option(None, "--mix-fractions", help="Shares of tokens that are other text, e.g. 0,0.5."),
    other: Path = typer.Option(None, "--other", help="Other text to mix in: sample folder, JSONL, SQuAD JSON, .txt."),
    device: str = typer.Option("auto", "--device"),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Bits of knowledge stored per parameter on a synthetic knowledge set, vs exposures and mixing."""
    from domainlm.sandbox.report import capacity_report

    raw = apply_overrides({}, overrides or [])
    if exposures:
        try:
            raw["exposures"] = [int(x) for x in exposures.split(",") if x.strip()]
        except ValueError:
            raise DomainlmError(f"--exposures '{exposures}': expected integers like 1,10,100") from None
    if mix_fractions:
        try:
            raw["mix_fractions"] = [float(x) for x in mix_fractions.split(",") if x.strip()]
        except ValueError:
            raise DomainlmError(f"--mix-fractions '{mix_fractions}': expected numbers like 0,0.5") from None
    cfg = validate(CapacityConfig, raw, "sandbox capacity")
    if any(m > 0 for m in cfg.mix_fractions) and other is None:
        raise DomainlmError("sandbox capacity: a mix fraction > 0 needs --other PATH (the text to mix in)")
    with stage_run("sandbox.capacity", out, inputs=[other] if other else [], config=cfg, seed=cfg.seed,
                   force=force) as run:
        if run.skipped:
            console.print(f"{out}: up to date (use --force to re-run)")
            results = json.loads((out / "capacity.json").read_text(encoding="utf-8"))["results"]
        else:
            results = _run_capacity(cfg, other, device)
            write_json(run.output("capacity.json"), {"config": cfg.model_dump(), "results": results})
            write_text(run.output("report.html"), capacity_report(results, cfg.model_dump()))
            run.metrics["bits_per_param"] = {f"mix={r['mix_fraction']},exposures={r['exposures']}": r["bits_per_param"]
                                             for r in results}
    from rich.table import Table

    table = Table(title="knowledge capacity (published: ~2 bits/param at saturation)")
    for column in ("other text", "exposures", "params_total", "bits", "bits_possible", "bits/param", "accuracy"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(f"{r['mix_fraction']:.0%}", str(r["exposures"]), str(r["params_total"]), f"{r['bits']:.1f}", f"{r['bits_possible']:.0f}",
                      f"{r['bits_per_param']:.4f}", f"{r['accuracy']:.3f}")
    Console().print(table)
    console.print(f"wrote {out / 'capacity.json'} and {out / 'report.html'}")


def _run_capacity(cfg, other: Path | None, device: str) -> list[dict]:
    import numpy as np
    from rich.progress import Progress

    from domainlm.sandbox import tokenizer
    from domainlm.sandbox.data import load_texts
    from domainlm.sandbox.trainer import pick_device

    other_tokens = None
    if other is not None:
        other_tokens = np.concatenate([tokenizer.encode(t, eot=True) for t in load_texts(other).texts])
    device = pick_device(device)
    with Progress(console=console) as progress:
        task = progress.add_task("capacity runs", total=len(cfg.exposures) * len(cfg.mix_fractions))
        return run_capacity(cfg, other_tokens, device, on_progress=lambda r: progress.advance(task))


@sandbox_app.command("coord-check")
def coord_check_cmd(
    data: Path = typer.Option(..., "--data", help="Text to train on: sample folder, Document JSONL, SQuAD JSON, .txt."),
    out: Path = typer.Option(..., "--out", help="Folder for coord.json and report.html."),
    widths: str = typer.Option("32,64,128,256", "--widths"),
    steps: int = typer.Option(4, "--steps", min=1),
    lr: float = typer.Option(0.01, "--lr"),
) -> None:
    """muP coordinate check: activation sizes vs width after a few steps, muP beside standard param."""
    import numpy as np

    from domainlm.sandbox import tokenizer
    from domainlm.sandbox.coord_check import coord_check, spread
    from domainlm.sandbox.data import load_texts
    from domainlm.sandbox.report import coord_report

    try:
        width_list = [int(w) for w in widths.split(",")]
    except ValueError:
        raise DomainlmError(f"--widths '{widths}': expected integers like 32,64,128") from None
    stream = np.concatenate([tokenizer.encode(t, eot=True) for t in load_texts(data).texts])
    results = {}
    with console.status("coordinate check"):
        for label, mup in (("muP", True), ("standard parametrisation", False)):
            results[label] = coord_check({"text": stream}, width_list, mup=mup, base_width=width_list[0], lr=lr, steps=steps)
    spreads = {label: {layer: spread(r, layer) for layer in r[width_list[0]]} for label, r in results.items()}
    write_json(out / "coord.json", {"widths": width_list, "steps": steps, "lr": lr, "results": results, "spread": spreads})
    write_text(out / "report.html", coord_report(results))
    for label, per_layer in spreads.items():
        typer.echo(f"{label}: max/min activation size across widths: "
                   + ", ".join(f"{k}={v:.2f}" for k, v in per_layer.items()))
    console.print(f"wrote {out / 'coord.json'} and {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
