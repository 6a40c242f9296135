"""One ``report.html`` for the whole line, plus ``summary.json`` with every number the page shows.

The numbers are read from the stages' own artifacts (manifests, ``results.json``, ``gate.json``), never
recomputed, so the page and the artifacts cannot disagree.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from domainlm.io import read_json, write_json, write_text
from domainlm.report import bar_plot, escape, html_page, scatter_plot, table
from domainlm.workspace import MANIFEST_FILE, stage_run


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


def collect(ws) -> dict[str, Any]:
    """Every number of the line report, from the artifacts."""
    from domainlm.pipeline.line import compressed_dir, model_dir

    artifacts = ws.artifacts
    summary: dict[str, Any] = {"workspace": str(ws.root), "name": ws.config.name, "stages": {}}
    folders = {"clean": artifacts / "clean", "kb": artifacts / "kb", "synth": artifacts / "synth"}
    folders |= {f"train-{s}": model_dir(ws, s) for s in ws.config.train.stages}
    folders |= {f"compress-{t}": compressed_dir(ws, t) for t in ws.config.compress.targets}
    folders |= {"eval": artifacts / "eval", "eval-kb-extractive": artifacts / "eval-kb-extractive"}
    for name, folder in folders.items():
        manifest = _manifest(folder)
        if manifest:
            summary["stages"][name] = {"wall_time_s": manifest.get("wall_time_s"), "metrics": manifest.get("metrics", {})}

    variants: dict[str, dict] = dict(_results(artifacts / "eval").get("variants", {}))
    extractive = _results(artifacts / "eval-kb-extractive")
    if extractive:
        variants = {"kb-extractive": extractive, **variants}
    summary["variants"] = {
        name: {
            "overall": r.get("overall", {}).get("score"),
            "ci95": r.get("overall", {}).get("ci95"),
            "categories": {c: v.get("score") for c, v in r.get("categories", {}).items()},
            "tasks": {t: v.get("score") for t, v in r.get("tasks", {}).items()},
            "refusal": _refusal_rows(r),
            "density": r.get("density", {}),
        }
        for name, r in variants.items()
    }
    gates = {}
    for target in ws.config.compress.targets:
        gate_path = compressed_dir(ws, target) / "gate.json"
        if gate_path.is_file():
            gates[target] = read_json(gate_path)
    summary["compression"] = gates
    return summary


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
    rows = [{"variant": n, "overall": variants[n]["overall"], **{c: variants[n]["categories"].get(c) for c in categories}} for n in names]
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
    if density_rows:
        scatter = scatter_plot(density_points, title="Score vs inference compute", xlabel="TFLOPs", ylabel="score") if density_points else ""
        sections.append(("Knowledge density", table(density_rows) + scatter))
    return sections


def render(ws, summary: dict) -> str:
    from domainlm.pipeline.line import model_dir

    sections = [("Stages", _stage_table(summary))]
    clean = summary["stages"].get("clean", {}).get("metrics", {})
    if clean:
        link = '<p><a href="../clean/datacard.html">Open the full data card</a></p>'
        sections.append(("Data governance", table([{k: v for k, v in clean.items() if not isinstance(v, (dict, list))}]) + link))
    kb = summary["stages"].get("kb", {}).get("metrics", {})
    if kb:
        sections.append(("Knowledge base", table([kb])))
    curves = "".join(_png(model_dir(ws, s) / "loss.png", f"{s} loss") for s in ws.config.train.stages)
    if curves:
        sections.append(("Training", curves))
    sections += _variant_sections(summary)
    if summary["compression"]:
        rows = [{"target": t, **{k: v for k, v in g.items() if not isinstance(v, (dict, list))}} for t, g in summary["compression"].items()]
        sections.append(("Compression retention", table(rows)))
    return html_page(f"domainlm line report: {summary['name']}", sections, intro=f"Workspace {summary['workspace']}")


def write_line_report(ws, *, force: bool = False) -> Path:
    """Write ``artifacts/report/report.html`` and ``summary.json``; cached on the stages' manifests."""
    from domainlm.pipeline.line import compressed_dir

    out = ws.artifacts / "report"
    inputs = sorted(p for p in ws.artifacts.rglob(MANIFEST_FILE) if p.parent != out)
    inputs += sorted(p for p in ws.artifacts.rglob("results.json"))
    # A refused compression target leaves gate.json but no manifest: the report must still show it.
    inputs += [p for p in (compressed_dir(ws, t) / "gate.json" for t in ws.config.compress.targets) if p.is_file()]
    config = {"name": ws.config.name, "targets": ws.config.compress.targets}
    with stage_run("report", out, inputs=inputs, config=config, force=force) as run:
        if run.skipped:
            return out / "report.html"
        summary = collect(ws)
        write_json(run.output("summary.json"), summary)
        write_text(run.output("report.html"), render(ws, summary))
    return out / "report.html"
