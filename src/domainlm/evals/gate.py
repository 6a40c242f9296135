"""Candidate vs reference, category by category: the one comparison both gates make.

The compression gate (result vs source) and the flywheel (candidate vs the serving model) ask the same
question: is the candidate worse anywhere that matters? An overall score hides a category the candidate
lost (better on intent, worse on every refusal), so both gates compare each group of items (category,
task or subcategory: ``levels``) with a paired bootstrap interval and refuse a candidate that is worse on
any of them beyond its interval, whatever its overall score says.

The rules, and why:

- *Worse beyond the interval*: the upper end of the group's retention interval (candidate / reference over
  paired resamples, two-sided at ``confidence``) is below ``min_retention``. Paired resamples draw the
  same items for both sides, so item difficulty cancels out and the interval is as narrow as the data
  allows. The compression gate's ``min_retention`` allows a small loss; the flywheel's default 1.0 none.
- *Retention is undefined where the reference scores 0*: there is nothing to keep, so no ratio; the
  candidate cannot be worse there, and the report says "retention undefined" instead of 1.0 or 0.
- *Too few items*: below ``min_items`` a group's interval is too wide to clear or condemn anything. The
  report says its comparison cannot be trusted, and ``few_items`` decides: ``point`` (default) judges the
  point estimate (retention below ``min_retention`` refuses: strict, since "cannot tell" must not pass a
  loss), ``interval`` lets the wide interval decide (lenient), ``refuse`` refuses the candidate outright.
- *Empty and degenerate outputs are wrong*: every verdict whose output says nothing (empty, whitespace,
  punctuation, a loop; :mod:`domainlm.evals.degenerate`) or is missing is voided here by its scorer,
  whatever the records claim, so predictions scored before that rule (where "" counted as a correct
  refusal) cannot carry a candidate through. A candidate more than ``max_silent_share`` of whose outputs
  say nothing is refused whatever its scores; one that says nothing at all, always.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from domainlm.config import Section
from domainlm.errors import DomainlmError
from domainlm.evals.aggregate import task_counts
from domainlm.evals.degenerate import degenerate_reason
from domainlm.evals.scorers import SCORERS
from domainlm.evals.stats import FEW_ITEMS, TaskCounts, interval, paired_bootstrap, paired_ratios, percentile_bounds

LEVELS = ("task", "category", "subcategory")
FEW_ITEMS_RULES = ("point", "interval", "refuse")
# A candidate more than half of whose outputs are empty, punctuation or loops is broken whatever its
# scores: its few real answers cannot stand for the model (an int8 that answered "" to 33 of 34 questions
# "retained 1.083" of its source).
MAX_SILENT_SHARE = 0.5


class GateSettings(Section):
    """How a gate compares a candidate with its reference group by group; shared by the compression gate
    (``compress:``) and the flywheel's promotion, which add their own overall minimum retention."""

    gate_by: list[str] = Field(default_factory=lambda: ["category"], min_length=1,
                               description="Groups compared one by one (" + " | ".join(LEVELS) + "): a candidate "
                               "worse on any of them beyond its interval is refused, however much better overall.")
    gate_confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of each group's paired-bootstrap interval.")
    gate_min_items: int = Field(FEW_ITEMS, ge=1, description="A group with fewer items has an interval too wide to "
                                "trust; gate_few_items decides it.")
    gate_few_items: str = Field("point", pattern="^(" + "|".join(FEW_ITEMS_RULES) + ")$",
                                description="How a group below gate_min_items is decided: point (its point retention "
                                "must reach the minimum retention) | interval (its wide interval decides) | refuse.")
    max_degenerate_share: float = Field(MAX_SILENT_SHARE, ge=0, le=1, description="Refuse a candidate more than this "
                                        "share of whose outputs are empty or degenerate (all of them: always refused).")

    @field_validator("gate_by")
    @classmethod
    def _known_levels(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in LEVELS]
        if unknown:
            raise ValueError(f"unknown group {', '.join(unknown)}; use {' | '.join(LEVELS)}")
        return value

    def group_rule(self, min_retention: float) -> dict:
        """These settings as :func:`compare_per_category` takes them."""
        return {"levels": list(self.gate_by), "min_retention": min_retention, "confidence": self.gate_confidence,
                "min_items": self.gate_min_items, "few_items": self.gate_few_items,
                "max_silent_share": self.max_degenerate_share}
MIN_ITEMS = FEW_ITEMS


def silenced(items: list[dict], records: list[dict]) -> list[dict]:
    """The records with every silent verdict voided by its scorer (no credit of any kind, refusals included).

    A verdict is silent when its record says so (``degenerate``), when the output says nothing by
    :func:`~domainlm.evals.degenerate.degenerate_reason`, or when there was no prediction (``missing``).
    Voiding is idempotent: verdicts from the current scorers come back unchanged."""
    out = []
    for item, record in zip(items, records, strict=True):
        # a missing prediction has output None, which degenerate_reason calls empty
        reason = record.get("degenerate") or degenerate_reason(record.get("output"))
        scorer = SCORERS.get(record.get("type") or item["type"], SCORERS["mcq"])
        out.append(scorer.void(record, reason) if reason else record)
    return out


def macro_score(tasks: TaskCounts) -> float:
    """The mean over tasks of each task's main score (every task weighs the same), as ``results.json``."""
    return float(np.mean([float(main(counts.sum(axis=0))) for counts, main in tasks.values()])) if tasks else 0.0


def group_indices(items: list[dict], levels: tuple[str, ...] | list[str]) -> dict[tuple[str, str], list[int]]:
    """(level, name) → indices of the items in that group, in order of first appearance. Subcategory names
    are prefixed with their category ("knowledge/deposit"): two categories may share a subcategory name."""
    groups: dict[tuple[str, str], list[int]] = {}
    for level in levels:
        for index, item in enumerate(items):
            name = f"{item.get('category')}/{item.get('subcategory')}" if level == "subcategory" else str(item.get(level))
            groups.setdefault((level, name), []).append(index)
    return groups


def _rounded(bounds: tuple[float, float]) -> list[float | None]:
    # JSON has no infinity: an unbounded end (the reference scored 0 in many resamples) is None.
    return [round(b, 4) if math.isfinite(b) else None for b in bounds]


def paired_comparison(tasks_ref: TaskCounts, tasks_cand: TaskCounts, *, confidence: float, seed: int) -> dict:
    """Scores of both sides on the same items, their difference and the candidate's retention, each with
    its paired-bootstrap interval (``retention`` and its interval are None where the reference scores 0)."""
    ref, cand = macro_score(tasks_ref), macro_score(tasks_cand)
    samples_ref, samples_cand = paired_bootstrap(tasks_ref, tasks_cand, seed=seed)
    ratios = paired_ratios(samples_ref, samples_cand)
    kept = cand / ref if ref > 0 else None
    bounds = percentile_bounds(ratios, confidence) if kept is not None else None
    return {"reference": round(ref, 6), "candidate": round(cand, 6), "difference": round(cand - ref, 6),
            "difference_ci": interval(samples_cand - samples_ref, confidence),
            "retention": round(kept, 4) if kept is not None else None,
            "retention_ci": _rounded(bounds) if bounds is not None else None,
            "_upper": bounds[1] if bounds is not None else None}


def _ci(bounds: list[float | None] | None, label: str, signed: bool = False) -> str:
    if bounds is None:
        return ""
    text = [("unbounded" if b is None else f"{b:+.3f}" if signed else f"{b:.3f}") for b in bounds]
    return f" ({label} {text[0]} to {text[1]})"


def _judge_group(level: str, name: str, n: int, tasks: list[str], comparison: dict, *, min_retention: float,
                 confidence: float, min_items: int, few_items: str) -> dict:
    """One group's verdict: whether the candidate is worse there, decided by which rule, in words."""
    label = f"{confidence:.0%} CI"
    upper = comparison.pop("_upper")
    kept = comparison["retention"]
    trusted = n >= min_items
    words = (f"{level} '{name}' ({n} items): {comparison['reference']:.3f} -> {comparison['candidate']:.3f}, "
             f"difference {comparison['difference']:+.3f}{_ci(comparison['difference_ci'], label, signed=True)}")
    if kept is None:
        words += ", retention undefined (the reference scores 0 here: nothing to keep, so no ratio)"
    else:
        words += f", retention {kept:.3f}{_ci(comparison['retention_ci'], label)}"
    decided_by = "interval" if trusted else few_items
    if not trusted:
        words += (f"; only {n} items (< min_items {min_items}): the comparison cannot be trusted, "
                  f"decided by few_items={few_items}")
    if decided_by == "refuse":
        worse = True
        why = "too few items to compare"
    elif kept is None:
        worse, why = False, ""  # nothing to lose: the candidate cannot score below 0
    elif decided_by == "point":
        worse = kept < min_retention
        why = f"retention {kept:.3f} < min_retention {min_retention}" if worse else ""
    else:
        worse = upper < min_retention
        why = (f"worse beyond the interval (upper end {upper:.3f} < min_retention {min_retention})" if worse else "")
    return {"level": level, "name": name, "n": n, "tasks": tasks, **comparison, "trusted": trusted,
            "decided_by": decided_by, "worse": worse, "summary": words + (f": {why}" if why else "")}


def compare_per_category(items: list[dict], reference: list[dict], candidate: list[dict], *,
                         levels: tuple[str, ...] | list[str] = ("category",), min_retention: float = 1.0,
                         confidence: float = 0.95, min_items: int = MIN_ITEMS, few_items: str = "point",
                         max_silent_share: float = MAX_SILENT_SHARE, names: tuple[str, str] = ("reference", "candidate"),
                         seed: int = 0) -> dict:
    """Compare ``candidate`` with ``reference`` (both sides' verdicts on the same ``items``, in order) overall
    and per group; ``names`` are what the two sides are called in the sentences ("source", "result").

    Returns ``passed``, ``refusals`` (one sentence per reason: which groups, by how much, with intervals),
    ``warnings`` (untrusted and undefined comparisons), ``overall`` and ``groups`` (scores, difference and
    retention with intervals, the rule that decided), ``silent`` (outputs that said nothing) and the
    settings used."""
    if [r["id"] for r in reference] != [r["id"] for r in candidate] or len(reference) != len(items):
        raise DomainlmError("gate: the two models were not scored on the same items")
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        raise DomainlmError(f"gate: levels must be among {', '.join(LEVELS)} (got {', '.join(unknown) or 'none'})")
    if few_items not in FEW_ITEMS_RULES:
        raise DomainlmError(f"gate: few_items must be one of {', '.join(FEW_ITEMS_RULES)} (got '{few_items}')")
    reference, candidate = silenced(items, reference), silenced(items, candidate)
    overall = paired_comparison(task_counts(items, reference), task_counts(items, candidate),
                                confidence=confidence, seed=seed)
    overall.pop("_upper")
    groups = []
    for (level, name), indices in group_indices(items, levels).items():
        sub_items = [items[i] for i in indices]
        tasks_ref = task_counts(sub_items, [reference[i] for i in indices])
        tasks_cand = task_counts(sub_items, [candidate[i] for i in indices])
        comparison = paired_comparison(tasks_ref, tasks_cand, confidence=confidence, seed=seed)
        groups.append(_judge_group(level, name, len(indices), list(tasks_ref), comparison, min_retention=min_retention,
                                   confidence=confidence, min_items=min_items, few_items=few_items))
    n = len(items)
    silent = {names[0]: sum(1 for r in reference if r.get("degenerate")),
              names[1]: sum(1 for r in candidate if r.get("degenerate")), "n": n}
    refusals = []
    if n and (silent[names[1]] == n or silent[names[1]] / n > max_silent_share):
        refusals.append(f"{silent[names[1]]} of {n} {names[1]} outputs are empty or degenerate "
                        f"({names[0]}: {silent[names[0]]} of {n})")
    refusals += [g["summary"] for g in groups if g["worse"]]
    warnings = [g["summary"] for g in groups if not g["worse"] and (not g["trusted"] or g["retention"] is None)]
    return {"passed": not refusals, "refusals": refusals, "warnings": warnings, "overall": overall, "groups": groups,
            "silent": silent, "levels": list(levels), "min_retention": min_retention, "confidence": confidence,
            "min_items": min_items, "few_items": few_items, "max_silent_share": max_silent_share}
