"""The ``clean`` stage: inputs → ingest → recipe steps per document (workers) → dedup (in order) →
``clean.jsonl``, ``rejected.jsonl``, ``trace.jsonl``, ``datacard.md``/``.html``, ``manifest.json``.

Per-document work is independent, so it runs in worker processes (or Ray tasks); results come back in
input order and dedup runs in the main process, so the outputs are byte-identical whatever the number
of workers or the engine. Everything is streamed: one document at a time is held per worker, plus one
MinHash signature per kept document for dedup.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from domainlm.config import validate
from domainlm.data.config import CleanConfig
from domainlm.data.datacard import DataCard
from domainlm.data.dedup import Deduplicator
from domainlm.data.dedup import signature as minhash
from domainlm.data.ingest import Rejected, Unit, check_inputs, iter_units, read_unit
from domainlm.data.recipe import Recipe, load_recipe
from domainlm.errors import DomainlmError
from domainlm.io import atomic_write, dumps
from domainlm.manifest import StageResult, StageRun, stage_run


@dataclass
class Outcome:
    """What a worker sends back for one unit."""

    id: str
    source: str
    text: str | None  # None when rejected
    meta: dict
    trace: dict
    reject_reason: str | None = None
    reject_stage: str | None = None
    signature: object = None
    input_chars: int = 0
    rejected_text: str | None = None  # the text when a step dropped it: examples for a learned scorer


# --- Per-document processing (runs in workers) ----------------------------------------------------


def _mask(text: str) -> str:
    """The trace must not re-publish the PII it redacted: keep only the ends."""
    return text[:2] + "*" * max(0, len(text) - 4) + text[-2:] if len(text) > 4 else "*" * len(text)


def process_unit(unit: Unit, recipe: Recipe, text_field: str = "text", ocr=None) -> Outcome:
    """Ingest one unit and run the recipe's per-document steps on it. Never raises for bad data.
    ``ocr`` (an OcrConfig; default settings when None) is how scans and images are read."""
    trace: dict = {"id": unit.id, "source": unit.source, "ops": []}
    try:
        text, meta = read_unit(unit, text_field, ocr)
    except Exception as exc:  # Rejected, or a reader library failing on a malformed file
        reason = str(exc) if isinstance(exc, Rejected) else f"unreadable file ({type(exc).__name__}: {exc})"
        trace.update(decision="rejected", reason=reason, stage="ingest")
        return Outcome(unit.id, unit.source, None, {}, trace, reason, "ingest")
    input_chars = len(text)
    trace["chars_in"] = input_chars
    for step in recipe.doc_steps:
        try:
            result = step.run(text)
        except Exception as exc:  # a bug or bad parameter on one document must not kill the batch
            reason = f"{step.op} failed: {type(exc).__name__}: {exc}"
            trace.update(decision="rejected", reason=reason, stage=step.op)
            return Outcome(unit.id, unit.source, None, meta, trace, reason, step.op, input_chars=input_chars)
        entry: dict = {"op": step.op, "chars_delta": len(result.text) - len(text)}
        if result.changes:
            changes = result.changes
            if step.op == "redact_pii":
                changes = [{**c, "old": _mask(c["old"])} for c in changes]
            entry["changes"] = changes
        if result.flags:
            entry["flags"] = result.flags
        if result.score is not None:
            entry["score"] = result.score
        if result.meta:
            entry["meta"] = result.meta
            meta.update(result.meta)
        entry["decision"] = "drop" if result.drop else "keep"
        trace["ops"].append(entry)
        text = result.text
        if result.drop:
            trace.update(decision="rejected", reason=result.drop, stage=step.op)
            return Outcome(
                unit.id,
                unit.source,
                None,
                meta,
                trace,
                result.drop,
                step.op,
                input_chars=input_chars,
                rejected_text=text,
            )
    if not text.strip():
        trace.update(decision="rejected", reason="empty after cleaning", stage="clean")
        return Outcome(
            unit.id, unit.source, None, meta, trace, "empty after cleaning", "clean", input_chars=input_chars
        )
    signature = None
    dedup = recipe.dedup
    if dedup is not None and dedup.params.get("near", True):

        signature = minhash(text, dedup.params.get("num_perm", 128), dedup.params.get("ngram", 3))
    trace["chars_out"] = len(text)
    return Outcome(unit.id, unit.source, text, meta, trace, signature=signature, input_chars=input_chars)


# Worker-process state: the recipe is loaded once per worker, not pickled with every unit.
_WORKER: dict = {}


def _init_worker(recipe_source: str, text_field: str, ocr=None) -> None:
    _WORKER["recipe"] = load_recipe(recipe_source)
    _WORKER["text_field"] = text_field
    _WORKER["ocr"] = ocr


def _work(unit: Unit) -> Outcome:
    return process_unit(unit, _WORKER["recipe"], _WORKER["text_field"], _WORKER.get("ocr"))


def run_local(units: Iterable[Unit], recipe: Recipe, text_field: str, workers: int, ocr=None) -> Iterator[Outcome]:
    """Outcomes in input order; ``workers`` > 1 uses a process pool (imap keeps the order)."""
    if workers <= 1:
        for unit in units:
            yield process_unit(unit, recipe, text_field, ocr)
        return
    import multiprocessing

    context = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    units = iter(units)
    with context.Pool(workers, initializer=_init_worker, initargs=(recipe.source, text_field, ocr)) as pool:
        # Pool.imap would read the whole input into its task queue; windows keep memory flat on inputs
        # larger than RAM (at most `window` documents in flight).
        window = workers * 128
        while batch := list(itertools.islice(units, window)):
            yield from pool.imap(_work, batch, chunksize=8)


# --- The stage ------------------------------------------------------------------------------------


def _config(config: CleanConfig | BaseModel | dict | None) -> CleanConfig:
    if config is None:
        return CleanConfig()
    if isinstance(config, BaseModel):
        config = config.model_dump()
    return validate(CleanConfig, config, "clean")


def clean(
    inputs: list[str | Path] | str | Path,
    out_dir: str | Path,
    config: CleanConfig | BaseModel | dict | None = None,
    *,
    force: bool = False,
    progress: bool = False,
) -> StageResult:
    """Clean ``inputs`` (files or folders) into ``out_dir``. Skips when inputs and config are unchanged."""
    cfg = _config(config)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not inputs:
        raise DomainlmError("clean: no inputs given")
    check_inputs(inputs)
    recipe = load_recipe(cfg.recipe)
    workers = cfg.workers or os.cpu_count() or 1
    out_dir = Path(out_dir)
    # The resolved recipe is part of the cached config: editing a recipe file re-runs the stage.
    stage_config = {**cfg.model_dump(), "workers": None, "recipe_steps": recipe.to_dict()}
    with stage_run("clean", out_dir, inputs=inputs, config=stage_config, force=force) as run:
        if not run.skipped:
            _clean(inputs, cfg, recipe, workers, run, progress)
    return run.result()


def _clean(inputs: list, cfg: CleanConfig, recipe: Recipe, workers: int, run: StageRun, progress: bool) -> None:
    """The stage's work: every unit through the recipe, then dedup in input order, then the data card."""
    out_dir = run.out_dir
    dedup = Deduplicator.from_params(recipe.dedup.params) if recipe.dedup is not None else None
    card = DataCard(recipe)
    units = iter_units(inputs, cfg.text_field)
    if cfg.engine == "ray":
        from domainlm.data.ray_engine import run_ray

        outcomes = run_ray(units, recipe, cfg.text_field, workers, cfg.ocr)
    else:
        outcomes = run_local(units, recipe, cfg.text_field, workers, cfg.ocr)
    unread: list[tuple[str, str]] = []  # inputs that could not become documents, for the warning lines
    with contextlib.ExitStack() as stack:
        clean_f = stack.enter_context(atomic_write(run.output("clean.jsonl", key="clean")))
        rejected_f = stack.enter_context(atomic_write(run.output("rejected.jsonl", key="rejected")))
        trace_f = stack.enter_context(atomic_write(run.output("trace.jsonl")))
        for outcome in _progress(outcomes, progress):
            if outcome.text is not None and dedup is not None:
                rejected_text = outcome.text
                if _dedup(outcome, dedup):
                    rejected_f.write(dumps(_rejected_record(outcome, rejected_text)) + "\n")
            card.add(outcome)
            if outcome.text is not None:
                outcome.trace["decision"] = "keep"
                clean_f.write(
                    dumps(
                        {
                            "id": outcome.id,
                            "text": outcome.text,
                            "source": outcome.source,
                            "meta": outcome.meta,
                        }
                    )
                    + "\n"
                )
            elif outcome.reject_stage != "dedup":
                rejected_f.write(dumps(_rejected_record(outcome, outcome.rejected_text)) + "\n")
                if outcome.reject_stage == "ingest":
                    unread.append((outcome.source, outcome.reject_reason))
            trace_f.write(dumps(outcome.trace) + "\n")
    _warn_unread(unread, run.out_dir / "rejected.jsonl")
    if dedup is not None:
        card.clusters = dedup.clusters
    card.write(run.output("datacard.md", key="datacard"), run.output("datacard.html"), out_dir)
    run.outputs.extend(n for n in card.extra_outputs if n not in run.outputs)
    run.metrics.update(card.summary())


def _dedup(outcome: Outcome, dedup: Deduplicator) -> bool:
    """Check a kept document against those kept before it; a duplicate becomes a rejected outcome."""
    evidence = dedup.check(outcome.id, outcome.text, outcome.signature)
    outcome.trace["ops"].append(
        {"op": "dedup", **({"duplicate": evidence} if evidence else {}), "decision": "drop" if evidence else "keep"})
    if not evidence:
        return False
    reason = f"{evidence['type']} duplicate of {evidence['duplicate_of']} (jaccard {evidence['jaccard']})"
    outcome.trace.update(decision="rejected", reason=reason, stage="dedup")
    outcome.reject_reason, outcome.reject_stage = reason, "dedup"
    outcome.meta["duplicate_of"] = evidence["duplicate_of"]
    outcome.text = None
    return True


def _warn_unread(unread: list[tuple[str, str]], rejected_path: Path, show: int = 5) -> None:
    """A warning line for each input that could not be read (the first few, then a count): an unreadable
    file or folder must not pass unnoticed, though the run goes on and rejected.jsonl holds every one."""
    if not unread:
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)
    for source, reason in unread[:show]:
        console.print(f"[yellow]skipped[/] {escape(source)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if len(unread) > show:
        console.print(f"[yellow]skipped[/] {len(unread) - show} more (see {escape(str(rejected_path))})", highlight=False, soft_wrap=True)


def _rejected_record(outcome: Outcome, text: str | None) -> dict:
    record = {
        "id": outcome.id,
        "source": outcome.source,
        "stage": outcome.reject_stage,
        "reason": outcome.reject_reason,
    }
    if text is not None:
        record["text"] = text
    if outcome.meta:
        record["meta"] = outcome.meta
    return record


def _progress(outcomes: Iterator[Outcome], show: bool) -> Iterator[Outcome]:
    if not show:
        yield from outcomes
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("cleaning"),
        BarColumn(),
        TextColumn("{task.completed} docs"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("clean", total=None)
        for outcome in outcomes:
            yield outcome
            bar.advance(task)
