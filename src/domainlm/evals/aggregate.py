"""Aggregation: model outputs → per-item verdicts (``predictions.jsonl``) → ``results.json``.

Per item the scorers decide (:mod:`domainlm.evals.scorers`); this module gathers the suites' items, turns
outputs into verdicts and sums verdicts into task, category and overall scores with their intervals. It
needs no model: ``domainlm eval --predictions P`` runs only this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from domainlm.errors import DomainlmError
from domainlm.evals.degenerate import NOTHING
from domainlm.evals.scorers import SCORERS, score_item
from domainlm.evals.stats import N_RESAMPLES, TaskCounts, bootstrap_task, interval
from domainlm.evals.tasks import Suite
from domainlm.io import numbered_jsonl

# Fields of a stored prediction that a re-run must keep (the raw output and what the runner measured).
_KEEP = ("output", "judge_score", "judge_output", "loglikelihoods", "retrieved", "prompt_tokens", "output_tokens",
         "trajectory", "steps", "exhausted", "final_state")


def read_predictions(path: str | Path, items: dict[str, dict]) -> dict[str, dict]:
    """``{"id", "output", ...}`` lines keyed by id; an id the suites do not have is an error naming file:line."""
    out: dict[str, dict] = {}
    for line_no, record in numbered_jsonl(path, required=["id"]):
        where = f"{path}:{line_no}"
        if "output" not in record:
            raise DomainlmError(f"{where}: prediction '{record['id']}' has no 'output'")
        if record["id"] not in items:
            raise DomainlmError(f"{where}: id '{record['id']}' is not in the suite(s)")
        if record["id"] in out:
            raise DomainlmError(f"{where}: duplicate prediction for id '{record['id']}'")
        out[record["id"]] = record
    return out


def all_items(suites: list[Suite]) -> list[dict]:
    items, task_suite = [], {}
    for suite in suites:
        for item in suite.items:
            other = task_suite.setdefault(item["task"], suite.name)
            if other != suite.name:
                raise DomainlmError(f"{item['_where']}: task '{item['task']}' is also in suite '{other}'; rename one")
            items.append({**item, "_suite": suite.name})
    return items


def score_predictions(items: list[dict], predictions: dict[str, dict]) -> list[dict]:
    """One prediction record per item, in suite order. Items without a prediction score as empty output."""
    records = []
    for item in items:
        pred = predictions.get(item["id"])
        output = None if pred is None else pred.get("output")
        if output is not None and not isinstance(output, str):
            output = json.dumps(output, ensure_ascii=False)
        verdict = score_item(item, output, judge_score=(pred or {}).get("judge_score"),
                             trajectory=(pred or {}).get("trajectory"))
        record = {"id": item["id"], "task": item["task"], "type": item["type"], "category": item["category"],
                  "subcategory": item["subcategory"]}
        if pred is not None:
            record.update({k: pred[k] for k in _KEEP if k in pred})
        else:
            record["output"] = None
            record["missing"] = True
        record.update(verdict)
        records.append(record)
    return records


def task_counts(items: list[dict], records: list[dict]) -> TaskCounts:
    """Per task, in order of first appearance: (the items' additive counts, shape (items, k); the function
    that turns summed counts into the task's main score). The bootstraps resample rows of these."""
    by_task: dict[str, list[tuple[dict, dict]]] = {}
    for item, record in zip(items, records, strict=True):
        by_task.setdefault(item["task"], []).append((item, record))
    out = {}
    for task, pairs in by_task.items():
        kinds = {item["type"] for item, _ in pairs}
        if len(kinds) == 1:
            scorer = SCORERS[next(iter(kinds))]
            counts = [scorer.counts(record) for _, record in pairs]
        else:  # a task mixing types (rare) is scored per item and averaged
            scorer = SCORERS["mcq"]
            counts = [[record["score"], 1.0] for _, record in pairs]
        out[task] = (np.array(counts, dtype=float), scorer.main)
    return out


def count_silent(verdicts: list[dict]) -> dict[str, int]:
    """How many outputs said nothing: ``degenerate`` (any reason) and, among them, ``empty`` (nothing, or
    only whitespace). An item with no prediction at all is counted in ``missing`` instead: the kb-extractive
    variant answers only some types on purpose, and that is no failure of the model to speak."""
    reasons = [v.get("degenerate") for v in verdicts if not v.get("missing")]
    return {"degenerate": sum(1 for r in reasons if r), "empty": sum(1 for r in reasons if r in NOTHING)}


def _group_summary(task_names: list[str], tasks: dict[str, dict], boots: dict[str, np.ndarray]) -> dict:
    """Macro mean over tasks: every task weighs the same, whatever its size."""
    n = sum(tasks[t]["n"] for t in task_names)
    scores = [tasks[t]["score"] for t in task_names]
    samples = np.mean([boots[t] for t in task_names], axis=0)
    unparseable = sum(tasks[t]["unparseable"] * tasks[t]["n"] for t in task_names) / n if n else 0.0
    return {"n": n, "score": round(sum(scores) / len(scores), 6), "ci95": interval(samples),
            "unparseable": round(unparseable, 6), "degenerate": sum(tasks[t]["degenerate"] for t in task_names),
            "empty": sum(tasks[t]["empty"] for t in task_names), "missing": sum(tasks[t]["missing"] for t in task_names),
            "tasks": task_names}


def summarize(items: list[dict], records: list[dict], *, seed: int = 0, general: set[str] = frozenset()) -> dict:
    """``results.json`` body: per task, per category / subcategory, overall, general-ability panel."""
    by_task: dict[str, list[tuple[dict, dict]]] = {}
    for item, record in zip(items, records, strict=True):
        by_task.setdefault(item["task"], []).append((item, record))
    counted = task_counts(items, records)
    tasks: dict[str, dict] = {}
    boots: dict[str, np.ndarray] = {}
    for index, (task, pairs) in enumerate(by_task.items()):
        task_items = [p[0] for p in pairs]
        verdicts = [p[1] for p in pairs]
        kinds = {i["type"] for i in task_items}
        counts, main_of = counted[task]
        main = float(main_of(counts.sum(axis=0)))
        boots[task] = bootstrap_task(counts, main_of, seed=seed + index)
        scorer = SCORERS[task_items[0]["type"]] if len(kinds) == 1 else None
        metrics = scorer.metrics(task_items, verdicts) if scorer else {}
        # A scorer that can put real items beside its numbers (agent: which item invented which amount)
        # does; each row says how many items it stands on and whether that is too few to trust.
        explain = getattr(scorer, "explain", None)
        first = task_items[0]
        tasks[task] = {
            "n": len(pairs),
            "score": round(main, 6),
            "ci95": interval(boots[task]),
            "metrics": {k: round(v, 6) for k, v in metrics.items()},
            "unparseable": round(sum(1 for v in verdicts if v["unparseable"]) / len(verdicts), 6),
            # counts, not shares: "12 of 34 outputs were empty" is what a reader needs to see
            **count_silent(verdicts),
            "missing": sum(1 for v in verdicts if v.get("missing")),
            "type": first["type"] if len(kinds) == 1 else "mixed",
            "category": first["category"],
            "subcategory": first["subcategory"],
            "suite": first.get("_suite", ""),
        }
        if explain is not None:
            tasks[task]["explained"] = explain(task_items, verdicts)
    categories: dict[str, dict] = {}
    for task, info in tasks.items():
        cat = categories.setdefault(info["category"], {"subs": {}})
        cat["subs"].setdefault(info["subcategory"], []).append(task)
    category_out = {}
    for cat, body in categories.items():
        names = [t for sub in body["subs"].values() for t in sub]
        summary = _group_summary(names, tasks, boots)
        summary["subcategories"] = {sub: _group_summary(ts, tasks, boots) for sub, ts in body["subs"].items()}
        category_out[cat] = summary
    results: dict[str, Any] = {
        "n": len(records),
        "overall": _group_summary(list(tasks), tasks, boots) if tasks else {},
        "tasks": tasks,
        "categories": category_out,
        "ci": {"method": "percentile bootstrap over items within each task", "resamples": N_RESAMPLES, "seed": seed},
    }
    general_tasks = [t for t, info in tasks.items() if info["suite"] in general]
    if general_tasks:
        domain_tasks = [t for t in tasks if t not in general_tasks]
        results["general"] = _group_summary(general_tasks, tasks, boots)
        if domain_tasks:
            results["domain"] = _group_summary(domain_tasks, tasks, boots)
    return results
