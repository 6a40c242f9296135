"""The flywheel's report on one turn: what users flagged, what changed, which categories moved, the verdict.

A promotion decision is only as good as the reader's grasp of it, so every run folder gets ``report.md``
(for people) and ``report.json`` (the same data, for tools), built from the run's decision record and
:func:`domainlm.serve.failures.failure_report` of the feedback the turn used:

- *What users flagged*: downvoted and corrected answers grouped by task / intent / subcategory (or by tool,
  with how the call failed), each group with a few PII-redacted examples.
- *What changed*: rows trained from feedback and from replay, questions held back for the gate, training
  steps and loss.
- *Which categories moved*: each gate group, serving model → candidate with the difference's interval, and
  ``up`` / ``down`` only when the interval excludes 0 (else ``flat``: the data cannot tell).
- *The verdict* with every reason, and a plain list of the numbers that cannot be trusted: too few held-back
  questions or gate items for an interval to mean anything, outputs that said nothing, a handful of ratings.

Functions take the decision (a dict) and return data or text; nothing here runs a model.
"""

from __future__ import annotations

import math
from pathlib import Path

from domainlm.io import write_json, write_text

# Below this many rated exchanges the failure rates are anecdotes (as `domainlm feedback failures` says).
MIN_EXCHANGES = 20
EXAMPLE_CHARS = 160


def category_moves(groups: list[dict]) -> list[dict]:
    """Each gate group's move: serving → candidate, the difference with its paired-bootstrap interval, and
    ``up``/``down`` when the interval lies wholly above/below 0, ``flat`` when it straddles 0."""
    moves = []
    for g in groups:
        lo, hi = g["difference_ci"]
        move = "up" if lo > 0 else "down" if hi < 0 else "flat"
        moves.append({"level": g["level"], "name": g["name"], "n": g["n"], "current": g["reference"],
                      "candidate": g["candidate"], "difference": g["difference"], "difference_ci": [lo, hi],
                      "retention": g["retention"], "move": move, "trusted": g["trusted"], "worse": g["worse"]})
    return moves


def trust_warnings(decision: dict, flagged: dict, *, min_items: int) -> list[str]:
    """Plain sentences, one per number in this run that should not be trusted, and why."""
    warnings = []
    gate = decision.get("gate")
    held = decision.get("heldout") or {}
    questions = held.get("questions", 0)
    if gate is not None:
        if not questions:
            warnings.append(f"the gate did not test the new feedback itself ({held.get('note') or 'nothing held back'})")
        elif questions < min_items:
            warnings.append(f"only {questions} held-back question{'s' if questions != 1 else ''} (< {min_items}): "
                            f"one answer moves that score by {1 / questions:.0%}; its interval is too wide to trust")
        silent = gate["silent"]
        n_gate = silent["n"] - questions
        if n_gate < min_items:
            warnings.append(f"only {n_gate} gate suite items (< {min_items}): the overall comparison is noise-level")
        for side in ("current", "candidate"):
            if silent.get(side):
                warnings.append(f"{silent[side]} of {silent['n']} {side} outputs were empty or degenerate "
                                "(scored as wrong)")
        few = [g for g in gate["groups"] if not g["trusted"]]
        if few:
            warnings.append(f"{len(few)} of {len(gate['groups'])} gate groups have fewer than {min_items} items "
                            f"({', '.join(repr(g['name']) for g in few)}): decided by their point estimate, "
                            "not an interval")
    loss = (decision.get("training") or {}).get("train_loss")
    if isinstance(loss, float) and not math.isfinite(loss):
        warnings.append(f"the training loss is {loss}: the candidate's training diverged")
    if flagged["exchanges"] < MIN_EXCHANGES:
        warnings.append(f"only {flagged['exchanges']} rated or corrected answers: the failure rates below are "
                        "anecdotes, not statistics")
    return warnings


def build_report(decision: dict, flagged: dict, *, min_items: int) -> dict:
    """The report's data: ``decision`` (run_flywheel's record) and ``flagged`` (failure_report's groups)."""
    gate = decision.get("gate")
    held = decision.get("heldout") or {}
    changed = {"stage": decision["stage"], "new_rows": decision["rows"], "feedback_rows": decision.get("feedback_rows"),
               "replay_rows": decision.get("replay_rows", 0), "heldout_questions": held.get("questions", 0),
               "heldout_rows": held.get("rows", 0), "questions_with_target": held.get("usable", 0),
               "heldout_note": held.get("note"), "training": decision.get("training")}
    return {
        "run": decision["run"], "current": decision["current"], "decision": decision["decision"],
        "version": decision.get("version"),
        "reasons": gate["refusals"] if gate is not None else [decision["reason"]] if decision.get("reason") else [],
        "scores": ({"current": decision["current_score"], "candidate": decision["candidate_score"],
                    "difference_ci": gate["difference_ci"]} if gate is not None else None),
        "flagged": flagged,
        "changed": changed,
        "moves": category_moves(gate["groups"]) if gate is not None else [],
        "heldout": held.get("groups", []),
        "gate_warnings": gate["warnings"] if gate is not None else [],
        "warnings": trust_warnings(decision, flagged, min_items=min_items),
    }


def _cell(text) -> str:
    """Text safe inside a Markdown table cell or list item: one line, no column breaks, bounded."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ci(bounds) -> str:
    lo, hi = bounds
    return f"{lo:+.3f} to {hi:+.3f}"


def render_markdown(report: dict) -> str:
    """``report.md``: the verdict first, then what cannot be trusted, then the evidence."""
    verdict = report["decision"] + (f" → serving {report['version']}" if report.get("version") else "")
    lines = [f"# Flywheel {report['run']}: {verdict}", "", f"Serving model before this run: {report['current']}.", ""]
    scores = report["scores"]
    if scores is not None:
        lines += [f"Gate score (macro over tasks, held-back feedback included): current {scores['current']:.4f} → "
                  f"candidate {scores['candidate']:.4f} (difference 95% CI {_ci(scores['difference_ci'])}).", ""]
    lines += [f"## Verdict: {report['decision']}", ""]
    lines += [f"- {' '.join(r.split())}" for r in report["reasons"]] or \
        ["- the candidate beat the serving model overall and was worse on no group beyond its interval"]
    lines.append("")
    if report["warnings"]:
        lines += ["## Numbers that cannot be trusted", ""] + [f"- {w}" for w in report["warnings"]] + [""]

    flagged = report["flagged"]
    lines += ["## What users flagged", "",
              f"{flagged['failures']} of {flagged['exchanges']} rated or corrected answers failed.", ""]
    if flagged["groups"]:
        lines += ["| group | failed | of | rate | how |", "|---|---:|---:|---:|---|"]
        for g in flagged["groups"]:
            how = ", ".join(f"{k} {v}" for k, v in g["how"].items())
            lines.append(f"| {_cell(g['group'])} | {g['failures']} | {g['exchanges']} | {g['failure_rate']:.0%} | "
                         f"{_cell(how) or '-'} |")
        lines.append("")
        for g in flagged["groups"]:
            lines += [f"### {g['group']}", ""]
            for ex in g["examples"]:
                lines.append(f"- Q: {_cell(ex['question'])}")
                lines.append(f"  A ({ex['verdict']}): {_cell(ex['answer'])}")
                if ex.get("correction"):
                    lines.append(f"  → corrected: {_cell(ex['correction'])}")
            lines.append("")

    changed = report["changed"]
    training = changed["training"] or {}
    held = (f"{changed['heldout_questions']} of {changed['questions_with_target']} questions with a target "
            f"({changed['heldout_rows']} row{'s' if changed['heldout_rows'] != 1 else ''})") if changed["heldout_questions"] else (changed["heldout_note"] or "none")
    lines += ["## What changed", "", "| | |", "|---|---|",
              f"| stage | {changed['stage']} |",
              f"| new feedback rows | {changed['new_rows']} |",
              f"| trained: feedback rows | {changed['feedback_rows']} |",
              f"| trained: replayed rows of the original data | {changed['replay_rows']} |",
              f"| held back from training, scored by the gate | {_cell(held)} |"]
    if training:
        lines.append(f"| training steps | {training.get('steps', '-')} |")
        loss = training.get("train_loss")
        first = training.get("first_loss")
        if loss is not None:
            lines.append(f"| training loss | {(f'{first:.4f} → ' if first is not None else '')}{loss:.4f} |")
        if training.get("eval_loss_start") is not None and training.get("eval_loss_end") is not None:
            lines.append(f"| held-out loss | {training['eval_loss_start']:.4f} → {training['eval_loss_end']:.4f} |")
    else:
        lines.append("| training | no candidate was trained |")
    lines.append("")

    if report["moves"]:
        lines += ["## Which categories moved", "",
                  "`up`/`down`: the 95% interval of the difference excludes 0; `flat`: it does not (no change the "
                  "data can show).", "",
                  "| group | items | current | candidate | difference (95% CI) | move | gate |",
                  "|---|---:|---:|---:|---|---|---|"]
        for m in report["moves"]:
            gate = "worse: refused" if m["worse"] else "ok" if m["trusted"] else "ok (too few items to trust)"
            lines.append(f"| {m['level']} {_cell(m['name'])} | {m['n']} | {_num(m['current'])} | {_num(m['candidate'])} "
                         f"| {m['difference']:+.3f} ({_ci(m['difference_ci'])}) | {m['move']} | {gate} |")
        lines.append("")
    if report["gate_warnings"]:
        lines += ["## Gate notes", ""] + [f"- {w}" for w in report["gate_warnings"]] + [""]
    return "\n".join(lines)


def write_report(folder: str | Path, report: dict) -> dict[str, Path]:
    """``report.md`` and ``report.json`` in ``folder`` (each written atomically), by name."""
    folder = Path(folder)
    paths = {"markdown": folder / "report.md", "data": folder / "report.json"}
    write_json(paths["data"], report)
    write_text(paths["markdown"], render_markdown(report))
    return paths
