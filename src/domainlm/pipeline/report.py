"""One ``report.html`` for the whole line, plus ``summary.json`` with every number the page shows.

The numbers are read from the stages' own artifacts (manifests, ``results.json``, ``gate.json``), never
recomputed, so the page and the artifacts cannot disagree.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from domainlm.errors import DomainlmError
from domainlm.evals import FEW_ITEMS, MOSTLY_SILENT
from domainlm.io import read_json, read_jsonl, sha256_text, write_json, write_text
from domainlm.manifest import MANIFEST_FILE, StageResult, stage_run
from domainlm.pipeline.versions import PLOT, line_ledger, plot_versions, table_rows, workspace_versions
from domainlm.report import bar_plot, escape, html_page, scatter_plot, table
from domainlm.workspace import Workspace


def _manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    return read_json(path) if path.is_file() else {}


def _results(folder: Path) -> dict:
    path = folder / "results.json"
    return read_json(path) if path.is_file() else {}


def _png(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{escape(alt)}</figcaption></figure>'


def _refusal_rows(results: dict) -> dict[str, Any]:
    """Refusal behaviour over every refusal-type task of one run."""
    tasks = [t for t in results.get("tasks", {}).values() if t.get("type") == "refusal"]
    if not tasks:
        return {}
    n = sum(t["n"] for t in tasks)
    recall = sum(t["metrics"].get("refusal_recall", 0.0) * t["n"] for t in tasks) / n
    return {"refusal_accuracy": round(sum(t["score"] * t["n"] for t in tasks) / n, 6), "refusal_recall": round(recall, 6), "n": n}


def collect(ws: Workspace, rebase: Path | None = None) -> dict[str, Any]:
    """Every number of the line report, from the artifacts (``rebase``: the old-vs-new ``rebase.json`` when
    this line was rebuilt on a new base)."""
    layout = ws.layout
    summary: dict[str, Any] = {"workspace": str(ws.root), "name": ws.config.name, "stages": {}}
    folders = {"clean": layout.clean, "kb": layout.kb, "synth": layout.synth}
    folders |= {f"train-{s}": layout.model(s) for s in ws.config.train.stages}
    folders |= {f"compress-{t}": layout.compressed(t) for t in ws.config.compress.targets}
    folders |= {"eval": layout.eval, "eval-kb-extractive": layout.eval_extractive}
    for name, folder in folders.items():
        manifest = _manifest(folder)
        if manifest:
            summary["stages"][name] = {"wall_time_s": manifest.get("wall_time_s"), "metrics": manifest.get("metrics", {})}

    variants: dict[str, dict] = dict(_results(layout.eval).get("variants", {}))
    extractive = _results(layout.eval_extractive)
    if extractive:
        variants = {"kb-extractive": extractive, **variants}
    folders_of = {name: layout.eval / name for name in variants} | {"kb-extractive": layout.eval_extractive}
    questions = _questions(ws)
    summary["variants"] = {
        name: {
            "overall": r.get("overall", {}).get("score"),
            "ci95": r.get("overall", {}).get("ci95"),
            "n": r.get("overall", {}).get("n"),
            "empty": r.get("overall", {}).get("empty", 0),
            "degenerate": r.get("overall", {}).get("degenerate", 0),
            "categories": {c: v.get("score") for c, v in r.get("categories", {}).items()},
            "category_ci95": {c: v.get("ci95") for c, v in r.get("categories", {}).items()},
            "tasks": {t: v.get("score") for t, v in r.get("tasks", {}).items()},
            "task_n": {t: v.get("n") for t, v in r.get("tasks", {}).items()},
            "refusal": _refusal_rows(r),
            "density": r.get("density", {}),
            "examples": _examples(folders_of[name] / "predictions.jsonl", questions),
        }
        for name, r in variants.items()
    }
    gates = {}
    for target in ws.config.compress.targets:
        gate_path = layout.compressed(target) / "gate.json"
        if gate_path.is_file():
            gates[target] = read_json(gate_path)
    summary["compression"] = gates
    summary["rebase"] = read_json(rebase) if rebase is not None and rebase.is_file() else None
    summary["warnings"] = warnings(ws, summary)
    summary["headline"] = headline(ws, summary)
    return summary


# Below this, a number is shown but flagged: a tiny model barely moves in fewer optimizer steps.
FEW_STEPS = 50


def _questions(ws: Workspace) -> dict[str, dict]:
    """Eval items by id (question and gold), read from the suites the eval stage used."""
    items: dict[str, dict] = {}
    for folder in ws.eval_suites():
        for path in sorted(folder.glob("*.jsonl")):
            try:
                records = read_jsonl(path)
            except DomainlmError:
                continue  # the eval stage already reported a broken file; the report shows what it can
            items.update({r["id"]: r for r in records if isinstance(r, dict) and "id" in r})
    return items


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _examples(path: Path, questions: dict[str, dict], per_kind: int = 2) -> list[dict]:
    """A few real predictions: right ones, wrong ones and empty/degenerate ones, chosen the same way every run."""
    if not path.is_file():
        return []
    records = sorted(read_jsonl(path), key=lambda r: sha256_text(str(r.get("id"))))
    picked: dict[str, list[dict]] = {"right": [], "wrong": [], "empty or degenerate": []}
    for record in records:
        if record.get("degenerate") or not str(record.get("output") or "").strip():
            kind = "empty or degenerate"
        else:
            kind = "right" if (record.get("score") or 0.0) >= 0.5 else "wrong"
        if len(picked[kind]) < per_kind:
            item = questions.get(record.get("id"), {})
            picked[kind].append({"kind": kind, "task": record.get("task"), "question": _short(item.get("question", "")),
                                 "output": _short(record.get("output") or ""), "gold": _short(record.get("gold", item.get("answer"))),
                                 "score": record.get("score")})
    return [e for group in picked.values() for e in group]


def warnings(ws, summary: dict) -> list[str]:
    """What undermines the numbers, said plainly (shown at the top of the report)."""
    out: list[str] = []
    synth = summary["stages"].get("synth", {}).get("metrics", {})
    out += [f"synth: {w}" for w in synth.get("warnings", [])]
    for stage in ws.config.train.stages:
        info = summary["stages"].get(f"train-{stage}")
        if info is None:
            out.append(f"train {stage}: did not run (no data to train on, or the build stopped before it); "
                       "the tuned variants are the model before it")
            continue
        steps = info["metrics"].get("steps")
        if isinstance(steps, int) and steps < FEW_STEPS:
            out.append(f"train {stage}: only {steps} optimizer steps (fewer than {FEW_STEPS}): the model has barely "
                       "moved from its base; add data or raise train.min_steps / epochs")
    variants = summary["variants"]
    if not variants:
        out.append("no evaluation ran: there are no task files and synth made no eval items, so no score below "
                   "says anything about the model")
    for name, v in variants.items():
        n = v.get("n") or 0
        silent = v.get("degenerate") or 0  # empty outputs are among the degenerate ones (count_silent)
        if n and silent / n > MOSTLY_SILENT:
            out.append(f"{name}: {silent} of {n} outputs are empty or degenerate (repeated tokens, punctuation only); "
                       "they score 0, and the model needs more training or a longer generation budget")
    task_n = next(iter(variants.values()), {}).get("task_n", {}) if variants else {}
    few = sorted(t for t, n in task_n.items() if isinstance(n, int) and n < FEW_ITEMS)
    if few:
        out.append(f"{len(few)} task(s) have fewer than {FEW_ITEMS} eval items ({', '.join(few[:5])}"
                   f"{', …' if len(few) > 5 else ''}): their scores carry wide 95% intervals")
    categories = sorted({c for v in variants.values() for c in v["categories"]})
    for category in categories:
        scores = [v["categories"].get(category) for v in variants.values() if category in v["categories"]]
        if scores and all((s or 0.0) == 0.0 for s in scores):
            out.append(f"category '{category}': every variant scores 0 — check the examples below: the items may need a "
                       "model that can follow the task's output format, or their gold answers may be unreachable")
    out += [f"rebase: {w}" for w in (summary.get("rebase") or {}).get("warnings", [])]
    for target, gate in summary.get("compression", {}).items():
        ci = gate.get("retention_ci95")
        retention = gate.get("retention")
        if isinstance(retention, (int, float)) and retention > 1 and ci and ci[0] <= 1:
            out.append(f"compression {target}: retention {retention:.3f} is within noise of 1 (95% interval "
                       f"{ci[0]:.3f}–{ci[1]:.3f}), not a gain")
    return out


def headline(ws, summary: dict) -> str:
    """One paragraph: what was built, from what, and the best variant with its interval."""
    clean = summary["stages"].get("clean", {}).get("metrics", {})
    kb = summary["stages"].get("kb", {}).get("metrics", {})
    parts = [f"{summary['name']}: built from {clean.get('kept', '?')} documents ({kb.get('chunks', '?')} chunks) "
             f"on base model {ws.config.train.base}."]
    scored = {n: v for n, v in summary["variants"].items() if isinstance(v.get("overall"), (int, float))}
    if scored:
        best = max(scored, key=lambda n: scored[n]["overall"])
        v = scored[best]
        ci = v.get("ci95") or [None, None]
        interval = f" (95% interval {ci[0]:.3f}–{ci[1]:.3f})" if None not in ci else ""
        parts.append(f"Best variant: {best}, score {v['overall']:.3f}{interval} over {v.get('n')} items.")
    else:
        parts.append("No variant was evaluated.")
    if summary["warnings"]:
        parts.append(f"{len(summary['warnings'])} warning(s) below say what limits these numbers.")
    return " ".join(parts)


def _with_ci(score: Any, ci: Any) -> str | None:
    if not isinstance(score, (int, float)):
        return None
    if ci and None not in ci:
        return f"{score:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{score:.3f}"


def _stage_table(summary: dict) -> str:
    rows = []
    for name, info in summary["stages"].items():
        metrics = info["metrics"]
        shown = ", ".join(f"{k}={v}" for k, v in list(metrics.items())[:6] if not isinstance(v, (dict, list)))
        rows.append({"stage": name, "wall time (s)": info["wall_time_s"], "metrics": shown})
    return table(rows)


def _variant_sections(summary: dict) -> list[tuple[str, str]]:
    variants = summary["variants"]
    if not variants:
        return [("Evaluation", '<p class="note">No evaluation has run yet.</p>')]
    names = list(variants)
    categories = sorted({c for v in variants.values() for c in v["categories"]})
    rows = [{"variant": n, "overall [95% CI]": _with_ci(variants[n]["overall"], variants[n]["ci95"]),
             "items": variants[n].get("n"), "empty / degenerate": f"{variants[n].get('empty', 0)} / {variants[n].get('degenerate', 0)}",
             **{c: _with_ci(variants[n]["categories"].get(c), variants[n]["category_ci95"].get(c)) for c in categories}}
            for n in names]
    tasks = sorted({t for v in variants.values() for t in v["tasks"]})
    task_rows = [{"task": t, **{n: variants[n]["tasks"].get(t) for n in names}} for t in tasks]
    plot = bar_plot(categories, {n: [variants[n]["categories"].get(c) or 0.0 for c in categories] for n in names},
                    title="Score by category", ylabel="score")
    refusal_rows = [{"variant": n, **variants[n]["refusal"]} for n in names if variants[n]["refusal"]]
    density_points = [(v["density"].get("tflops_per_item") or v["density"].get("tflops", 0.0), v["overall"] or 0.0, n)
                      for n, v in variants.items() if v["density"]]
    density_rows = [{"variant": n, **{k: val for k, val in v["density"].items() if not isinstance(val, (dict, list))}}
                    for n, v in variants.items() if v["density"]]
    note = ('<p class="note">kb-extractive: no model; the knowledge base\'s extractive reader answers knowledge and '
            "unanswerable questions only, so other task types score 0 for it.</p>")
    sections = [
        ("Variants by category", note + table(rows) + plot),
        ("Variants by task", table(task_rows)),
        ("Hallucination: refusal of unanswerable questions", table(refusal_rows)),
    ]
    example_rows = [{"variant": n, **e} for n in names for e in variants[n].get("examples", [])]
    sections.append(("Examples: real questions, outputs and gold answers",
                     '<p class="note">Chosen the same way every run: up to two right, two wrong and two empty or '
                     "degenerate outputs per variant.</p>" + table(example_rows)))
    if density_rows:
        scatter = scatter_plot(density_points, title="Score vs inference compute", xlabel="TFLOPs", ylabel="score") if density_points else ""
        sections.append(("Knowledge density", table(density_rows) + scatter))
    return sections


def _gate_groups(gates: dict) -> str:
    """Each target's per-category comparison (the gate refuses on any worse group) and its warnings."""
    rows = []
    for target, gate in gates.items():
        for g in gate.get("groups") or []:
            rows.append({"target": target, g.get("level", "group"): g.get("name"), "items": g.get("n"),
                         "source": g.get("reference"), "candidate": g.get("candidate"),
                         "retention": g.get("retention") if g.get("retention") is not None else "undefined",
                         "interval": "–".join(f"{x:.2f}" for x in g.get("retention_ci") or []),
                         "trusted": g.get("trusted"), "worse": g.get("worse")})
    notes = [f"{t}: {w}" for t, g in gates.items() for w in (g.get("refusals") or []) + (g.get("warnings") or [])]
    out = table(rows) if rows else ""
    if notes:
        out += "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
    return out


def _rebase_section(comparison: dict) -> str:
    """Old base vs new base, per variant, suite and category, with the paired difference's interval."""
    rows = []
    for r in comparison["rows"]:
        lo, hi = r["difference_ci"]
        rows.append({"variant": r["variant"], "suite": r["suite"], "category": r["category"], "items": r["n"],
                     "old": r["old"], "new": r["new"], "difference [95% CI]": f"{r['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]",
                     "verdict": r["verdict"] + ("" if r["trusted"] else " (too few items)")})
    intro = (f'<p>Rebuilt on <strong>{escape(comparison["new_base"])}</strong> (was {escape(comparison["old_base"])}) with '
             f'the same data, suites and seeds. The old line is kept in {escape(comparison["snapshot"])}/old; '
             "rebase.md beside it has the same tables.</p>"
             '<p class="note">better / worse: the 95% interval of the paired difference (new − old) excludes 0; '
             "no clear difference: it does not.</p>")
    examples = [{k: e[k] for k in ("variant", "kind", "task", "question", "gold", "old", "new")}
                for e in comparison["examples"]]
    return intro + table(rows) + (table(examples) if examples else "")


def _versions_section(ws: Workspace, rows: list[dict]) -> str:
    """Every model this workspace's line has made (the version ledger), with the density plot."""
    intro = (f'<p class="note">From {escape(line_ledger(ws.layout))}: one row per model version the line has made, '
             "kept across rebuilds and rebases (`domainlm versions` prints it). Parameters are counted from the weight "
             "files; compute is 2 × (parameters − untied input embedding) FLOPs per token; density is score per "
             "billion parameters and per GFLOP of a token. A trust note marks a score resting on too few items or "
             "on mostly empty or degenerate outputs.</p>")
    return intro + table(rows) + _png(ws.layout.report / PLOT, "knowledge density across versions; score vs compute")


def _sandbox_section(summary: dict) -> str:
    """Each train stage that took its lr from the sandbox (``train.lr: auto``): the loss the sandbox
    predicted, with its interval, beside the held-out loss per byte the run reached (cpt only)."""
    rows = []
    for name, info in summary["stages"].items():
        m = info["metrics"]
        if not name.startswith("train-") or "sandbox_predicted_loss" not in m:
            continue
        actual = m.get("actual_eval_loss_per_byte")
        rows.append({"stage": name.removeprefix("train-"), "lr (sandbox)": m.get("sandbox_lr"),
                     "predicted (nats/byte)": _with_ci(m["sandbox_predicted_loss"],
                                                       [m.get("sandbox_predicted_low"), m.get("sandbox_predicted_high")]),
                     "actual (nats/byte)": round(actual, 3) if isinstance(actual, float) else
                     f"not comparable: {m.get('sandbox_not_comparable', 'no held-out loss')}",
                     "within interval": m.get("sandbox_within_interval"),
                     "recommendation trusted": m.get("sandbox_trusted")})
    if not rows:
        return ""
    note = ('<p class="note">The sandbox predicts a byte-level muP proxy\'s held-out loss after one pass over '
            "raw text; a real model, tokenizer and a small corpus trained for many epochs differ from that, so a "
            "miss is a finding, not a bug (docs/sandbox.md).</p>")
    return note + table(rows)


def render(ws: Workspace, summary: dict) -> str:
    warning_list = "".join(f"<li>{escape(w)}</li>" for w in summary["warnings"])
    top = f'<p><strong>{escape(summary["headline"])}</strong></p>'
    top += f'<ul class="warnings">{warning_list}</ul>' if warning_list else '<p class="note">No warnings.</p>'
    sections = [("Summary", top), ("Stages", _stage_table(summary))]
    clean = summary["stages"].get("clean", {}).get("metrics", {})
    if clean:
        link = '<p><a href="../clean/datacard.html">Open the full data card</a></p>'
        sections.append(("Data governance", table([{k: v for k, v in clean.items() if not isinstance(v, (dict, list))}]) + link))
    kb = summary["stages"].get("kb", {}).get("metrics", {})
    if kb:
        sections.append(("Knowledge base", table([kb])))
    curves = "".join(_png(ws.layout.model(s) / "loss.png", f"{s} loss") for s in ws.config.train.stages)
    if curves:
        sections.append(("Training", curves))
    sandbox = _sandbox_section(summary)
    if sandbox:
        sections.append(("Sandbox: predicted vs actual loss", sandbox))
    if summary.get("rebase"):
        sections.append(("Old base vs new base", _rebase_section(summary["rebase"])))
    sections += _variant_sections(summary)
    if summary.get("versions"):
        sections.append(("Versions: knowledge density across models", _versions_section(ws, summary["versions"])))
    if summary["compression"]:
        rows = [{"target": t, **{k: v for k, v in g.items() if not isinstance(v, (dict, list))}} for t, g in summary["compression"].items()]
        sections.append(("Compression retention", table(rows) + _gate_groups(summary["compression"])))
    return html_page(f"domainlm line report: {summary['name']}", sections, intro=f"Workspace {summary['workspace']}")


def write_line_report(ws: Workspace, *, force: bool = False, rebase: Path | None = None) -> StageResult:
    """Write ``report.html`` and ``summary.json`` (outputs ``report``, ``summary``); cached on the stages'
    manifests. ``rebase``: the old-vs-new comparison to show (``rebase.json``), after a change of base."""
    layout = ws.layout
    out = layout.report
    inputs = sorted(p for p in layout.artifacts.rglob(MANIFEST_FILE) if p.parent != out)
    inputs += sorted(p for p in layout.artifacts.rglob("results.json"))
    # A refused compression target leaves gate.json but no manifest: the report must still show it.
    inputs += [p for p in (layout.compressed(t) / "gate.json" for t in ws.config.compress.targets) if p.is_file()]
    inputs += [rebase] if rebase is not None and rebase.is_file() else []
    config = {"name": ws.config.name, "targets": ws.config.compress.targets, "rebase": str(rebase) if rebase else None}
    with stage_run("report", out, inputs=inputs, config=config, force=force) as run:
        if not run.skipped:
            # Every model the eval scored joins the version ledger (once: a rerun with the same weights and
            # scores adds nothing), and the report plots density across all of them.
            versions = workspace_versions(ws)
            if plot_versions(versions, layout.report / PLOT) is not None:
                run.output(PLOT, key="versions_plot")
            summary = collect(ws, rebase)
            summary["versions"] = table_rows(versions)
            write_json(run.output("summary.json", key="summary"), summary)
            write_text(run.output("report.html", key="report"), render(ws, summary))
    return run.result()
