"""Scoring one model on suites: :func:`score`, the one entry point every caller uses.

The eval stage, the compression gate and the feedback flywheel all need "this model's score on these
suites"; they get it here, so a number means the same thing wherever it is printed (as lm-eval's
``simple_evaluate`` is the one way into that harness). :func:`score` selects the items (``limit`` per task,
seeded), asks the model (or reads stored predictions), lets a pinned judge grade generations, and
aggregates the verdicts into ``results.json``'s body.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from domainlm.errors import DomainlmError
from domainlm.evals.aggregate import all_items, read_predictions, score_predictions, summarize
from domainlm.evals.density import density
from domainlm.evals.report import build_report
from domainlm.evals.runner import judge_generations, run_model
from domainlm.evals.tasks import Suite, load_suite
from domainlm.io import write_json, write_jsonl, write_text
from domainlm.models import LanguageModel, load_model, load_scoring_model
from domainlm.progress import counting_bar


@dataclass
class Scores:
    """One model's scores on the suites.

    ``results`` is ``results.json``'s body for this model (``model``, ``kb``, ``predictions``, ``suites``,
    ``n``, ``overall``, ``tasks``, ``categories``, ``ci``; ``general``/``domain``, ``judge``, ``density`` and
    ``model_info`` when they apply); ``records`` is ``predictions.jsonl`` (one verdict per item, in item
    order); ``items`` the items scored; ``usage`` the tokens, FLOPs and wall time a live model spent (None
    when stored predictions were re-scored)."""

    results: dict
    records: list[dict]
    items: list[dict]
    usage: dict | None = None

    @property
    def score(self) -> float | None:
        """The overall score (the macro mean over tasks); None when there was nothing to score."""
        return (self.results.get("overall") or {}).get("score")

    @property
    def n(self) -> int | None:
        return (self.results.get("overall") or {}).get("n")

    def write(self, folder: str | Path) -> dict[str, Path]:
        """``predictions.jsonl``, ``results.json`` and ``report.html`` in ``folder``, by name."""
        folder = Path(folder)
        paths = {"predictions": folder / "predictions.jsonl", "results": folder / "results.json",
                 "report": folder / "report.html"}
        write_jsonl(paths["predictions"], self.records)
        write_json(paths["results"], self.results)
        write_text(paths["report"], build_report(self.results))
        return paths


def limit_items(items: list[dict], limit: int, seed: int) -> list[dict]:
    """At most ``limit`` items per task, drawn with ``seed``, in their original order (0 keeps all).
    Like lm-eval's --limit, but per task, so every task of the suite stays in the table."""
    if not limit:
        return items
    by_task: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_task.setdefault(item["task"], []).append(index)
    keep: set[int] = set()
    for task, indexes in sorted(by_task.items()):
        keep.update(indexes if len(indexes) <= limit else random.Random(f"{seed}:{task}").sample(indexes, limit))
    return [item for index, item in enumerate(items) if index in keep]


def load_suites(suites: Sequence[Suite | str | Path]) -> list[Suite]:
    return [s if isinstance(s, Suite) else load_suite(s) for s in suites]


def select_items(suites: Sequence[Suite | str | Path], *, limit: int = 0, seed: int = 0) -> list[dict]:
    """The items :func:`score` scores for this ``limit`` and ``seed``, in order: what a caller answers when it
    writes predictions itself (the knowledge base's extractive reader)."""
    return limit_items(all_items(load_suites(suites)), limit, seed)


def _progress() -> Progress:
    return counting_bar()


def score(
    model: str | Path | LanguageModel | None,
    suites: Sequence[Suite | str | Path],
    *,
    kb: str | Path | None = None,
    kb_k: int = 3,
    limit: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    device: str | None = None,
    predictions: str | Path | None = None,
    general: set[str] = frozenset(),
    label: str = "",
    show_progress: bool = False,
) -> Scores:
    """Score one model on the suites, or re-score stored ``predictions`` (then ``model`` is None).

    ``model`` is a spec (loaded with ``batch_size`` and ``device``, and closed afterwards) or a model the
    caller loaded and closes (the gate times its loading and its decoding). ``kb`` adds ``kb_k`` retrieved
    passages to the prompts that have room for them; ``limit`` keeps that many items per task (seeded);
    ``general`` names suites that form the general-ability panel. Greedy decoding: the numbers do not
    depend on ``batch_size``."""
    loaded = load_suites(suites)
    every = all_items(loaded)
    items = limit_items(every, limit, seed)
    usage, info, judge = None, {}, None
    given_spec = isinstance(model, (str, Path))
    spec = str(model) if given_spec else (model.info.get("spec") if model is not None else None)
    kb = str(kb) if kb is not None else None
    predictions = str(predictions) if predictions is not None else None
    if not predictions and model is None:
        raise DomainlmError("nothing to score: pass a model or stored predictions")
    if predictions:
        preds = read_predictions(predictions, {i["id"]: i for i in every})
    else:
        lm = load_scoring_model(spec, batch_size=batch_size, device=device) if given_spec else model
        try:
            info = dict(getattr(lm, "info", {}) or {})
            configs = {s.name: s.config for s in loaded}
            with _progress() if show_progress else contextlib.nullcontext() as progress:
                advance = None
                if progress is not None:
                    bar = progress.add_task(f"eval {label or spec}", total=len(items))
                    advance = lambda k: progress.advance(bar, k)  # noqa: E731
                preds, usage = run_model(lm, items, configs, kb=kb, kb_k=kb_k, batch_size=batch_size, seed=seed,
                                         progress=advance)
        finally:
            if given_spec:  # a model the caller loaded is the caller's to close
                lm.close()
        judge = _judge(loaded, items, preds, batch_size)
    records = score_predictions(items, preds)
    results = summarize(items, records, seed=seed, general=general)
    results = {"model": spec, "kb": kb, "predictions": predictions,
               "suites": [{"name": s.name, "path": str(s.path), "config": s.config.model_dump(mode="json")} for s in loaded],
               **results}
    if judge:
        results["judge"] = judge
    if usage is not None:
        results["density"] = density(results["overall"].get("score", 0.0), usage, info)
        results["model_info"] = info
    return Scores(results=results, records=records, items=items, usage=usage)


def _judge(suites: list[Suite], items: list[dict], preds: dict[str, dict], batch_size: int) -> dict | None:
    """Judge ``generation`` outputs with the (first) judge a suite pins; returns what to record about it."""
    spec = next((s.config.judge for s in suites if s.config.judge), None)
    if spec is None or not any(i["type"] == "generation" for i in items):
        return None
    judge_lm = load_model(spec.model)
    try:
        judge_generations(judge_lm, items, preds, spec.prompt, batch_size=batch_size)
    finally:
        judge_lm.close()
    return {"model": spec.model, "prompt": spec.prompt, "judge_info": dict(getattr(judge_lm, "info", {}) or {})}
