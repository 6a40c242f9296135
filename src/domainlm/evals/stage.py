"""The eval stage: suites (+ model or stored predictions) in → predictions.jsonl, results.json, report.html out."""

from __future__ import annotations

import contextlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from domainlm.errors import DomainlmError
from domainlm.evals.density import density
from domainlm.evals.report import build_report
from domainlm.evals.scoring import all_items, read_predictions, score_predictions, summarize
from domainlm.evals.tasks import Suite, load_suite
from domainlm.io import write_json, write_jsonl, write_text
from domainlm.workspace import stage_run


class EvalConfig(BaseModel):
    """What one ``domainlm eval`` run is asked to do (recorded in its manifest)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="Model spec; None when re-scoring stored predictions.")
    kb: str | None = None
    suites: list[str] = Field(default_factory=list)
    predictions: str | None = None
    variants: list[str] = Field(default_factory=list, description="NAME=MODEL or NAME=MODEL@KB")
    general: list[str] = Field(default_factory=list, description="Suites that form the general-ability panel.")
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    kb_k: int = Field(3, ge=1, description="Passages retrieved from --kb for each item.")
    limit: int = Field(0, ge=0, description="At most this many items per task (a seeded sample); 0 = all.")


def parse_variant(text: str) -> tuple[str, str, str | None]:
    """``tuned+kb=out/model@out/kb`` → (name, model spec, kb path)."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise DomainlmError(f"--variants '{text}': expected NAME=MODEL or NAME=MODEL@KB, e.g. base+kb=tiny@artifacts/kb")
    model, _, kb = rest.rpartition("@") if "@" in rest else (rest, "", "")
    return name.strip(), model.strip(), (kb.strip() or None)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True)


def limit_items(items: list[dict], limit: int, seed: int) -> list[dict]:
    """At most ``limit`` items per task, drawn with ``seed``, in their original order (0 keeps all).
    Like lm-eval's --limit, but per task, so every task of the suite stays in the table."""
    if not limit:
        return items
    import random

    by_task: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_task.setdefault(item["task"], []).append(index)
    keep: set[int] = set()
    for task, indexes in sorted(by_task.items()):
        keep.update(indexes if len(indexes) <= limit else random.Random(f"{seed}:{task}").sample(indexes, limit))
    return [item for index, item in enumerate(items) if index in keep]


def run_once(suites: list[Suite], *, model: str | None, kb: str | None = None, predictions: str | None = None,
             general: set[str] = frozenset(), seed: int = 0, batch_size: int = 8, kb_k: int = 3,
             label: str = "", limit: int = 0) -> tuple[dict, list[dict]]:
    """Score one model (or one predictions file) on the suites: (results, prediction records)."""
    every = all_items(suites)
    items = limit_items(every, limit, seed)
    usage, info, judge = None, {}, None
    if predictions:
        preds = read_predictions(predictions, {i["id"]: i for i in every})
    else:
        from domainlm.evals.runner import run_model
        from domainlm.models import load_model

        lm = load_model(model, batch_size=batch_size) if _accepts_batch_size(model) else load_model(model)
        try:
            info = dict(getattr(lm, "info", {}) or {})
            with _progress() as progress:
                bar = progress.add_task(f"eval {label or model}", total=len(items))
                preds, usage = run_model(lm, items, {s.name: s.config for s in suites}, kb=kb, kb_k=kb_k,
                                         batch_size=batch_size, seed=seed, progress=lambda k: progress.advance(bar, k))
        finally:
            lm.close()
        judge = _judge(suites, items, preds, batch_size)
    records = score_predictions(items, preds)
    results = summarize(items, records, seed=seed, general=general)
    results = {"model": model, "kb": kb, "predictions": predictions,
               "suites": [{"name": s.name, "path": str(s.path), "config": s.config.model_dump(mode="json")} for s in suites],
               **results}
    if judge:
        results["judge"] = judge
    if usage is not None:
        results["density"] = density(results["overall"].get("score", 0.0), usage, info)
        results["model_info"] = info
    return results, records


def _judge(suites: list[Suite], items: list[dict], preds: dict[str, dict], batch_size: int) -> dict | None:
    """Judge ``generation`` outputs with the (first) judge a suite pins; returns what to record about it."""
    spec = next((s.config.judge for s in suites if s.config.judge), None)
    if spec is None or not any(i["type"] == "generation" for i in items):
        return None
    from domainlm.evals.runner import judge_generations
    from domainlm.models import load_model

    judge_lm = load_model(spec.model)
    try:
        judge_generations(judge_lm, items, preds, spec.prompt, batch_size=batch_size)
    finally:
        judge_lm.close()
    return {"model": spec.model, "prompt": spec.prompt, "judge_info": dict(getattr(judge_lm, "info", {}) or {})}


def _accepts_batch_size(spec: str | None) -> bool:
    from domainlm.models import parse_spec

    return parse_spec(spec).kind in ("tiny", "hf")


def _write_run(out: Path, results: dict, records: list[dict], run=None) -> None:
    def path(name):
        return run.output(name) if run is not None else out / name

    write_jsonl(path("predictions.jsonl"), records)
    write_json(path("results.json"), results)
    write_text(path("report.html"), build_report(results))


def evaluate(config: EvalConfig, out: str | Path, *, force: bool = False) -> dict:
    """Run the eval stage; returns ``results.json``'s content (cached when inputs and config are unchanged)."""
    out = Path(out)
    if not config.suites:
        raise DomainlmError("no suite given: pass --suite PATH (a folder of task JSONL files)")
    if config.predictions and config.variants:
        raise DomainlmError("--predictions re-scores one stored run; it cannot be combined with --variants")
    if config.model and config.variants:
        raise DomainlmError("--model and --variants together: name every model in --variants (e.g. base=tiny)")
    if not config.predictions and not config.model and not config.variants:
        raise DomainlmError("nothing to evaluate: pass --model M, --variants NAME=M..., or --predictions P")
    suites = [load_suite(p) for p in config.suites]
    # --general names suites (by path or suite name) whose tasks form the general-ability panel.
    by_key = {str(Path(s.path).resolve()): s.name for s in suites} | {s.name: s.name for s in suites}
    general = set()
    for g in config.general:
        name = by_key.get(str(Path(g).resolve())) or by_key.get(g)
        if name is None:
            raise DomainlmError(f"--general '{g}' is not one of the --suite paths")
        general.add(name)
    inputs = list(config.suites) + [p for p in (config.predictions, config.kb) if p]
    inputs += [Path(parse_variant(v)[2]) for v in config.variants if parse_variant(v)[2]]
    inputs += [p for p in [config.model, *(parse_variant(v)[1] for v in config.variants)] if p and Path(p).exists()]
    created = not out.exists()
    try:
        results = _run_stage(config, out, suites, general, inputs, force)
    except BaseException:
        # A failed run leaves no empty output folder behind; rmdir refuses a folder with anything in it,
        # so outputs already written (an earlier variant's) and a folder that existed before stay.
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return results


def _run_stage(config: EvalConfig, out: Path, suites: list[Suite], general: set[str], inputs: list, force: bool) -> dict:
    """The cached part of :func:`evaluate`: run every model or variant and write the outputs."""
    with stage_run("eval", out, inputs=inputs, config=config, seed=config.seed, force=force) as run:
        if run.skipped:
            from domainlm.io import read_json

            return read_json(out / "results.json")
        common = {"general": general, "seed": config.seed, "batch_size": config.batch_size, "kb_k": config.kb_k,
                  "limit": config.limit}
        if not config.variants:
            results, records = run_once(suites, model=config.model, kb=config.kb, predictions=config.predictions, **common)
            _write_run(out, results, records, run)
        else:
            variants = {}
            for text in config.variants:
                name, model, kb = parse_variant(text)
                if name in variants:
                    raise DomainlmError(f"--variants: name '{name}' is used twice")
                results, records = run_once(suites, model=model, kb=kb, label=name, **common)
                _write_run(out / name, results, records)
                run.outputs.extend(f"{name}/{f}" for f in ("predictions.jsonl", "results.json", "report.html"))
                variants[name] = results
            results = {"variants": variants, "suites": variants[next(iter(variants))]["suites"]}
            write_json(run.output("results.json"), results)
            write_text(run.output("report.html"), build_report(results))
        overall = results.get("overall") or {}
        run.metrics.update({"score": overall.get("score"), "n": overall.get("n")} if overall else
                           {name: v["overall"]["score"] for name, v in results["variants"].items()})
    return results
