"""``report.html`` for an eval run: tables, per-subcategory bars with CIs, variant comparison, density scatter.

Every score in a table carries its 95% interval, and every run shows how many of its outputs said nothing
(empty, or degenerate: punctuation only, a loop); those score 0, and a reader must see how many there were."""

from __future__ import annotations

import json

from domainlm.evals.stats import FEW_ITEMS
from domainlm.report import bar_plot, escape, html_page, scatter_plot, table


def _ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _score_ci(body: dict | None) -> str | None:
    """"0.512 [0.430, 0.600]": a score with its interval in one cell (comparison tables)."""
    if not body or body.get("score") is None:
        return None
    return f"{body['score']:.3f} {_ci(body.get('ci95'))}".strip()


def _silent(body: dict) -> dict:
    """The empty and degenerate counts of a task or group (results from before they existed show blanks)."""
    return {"empty": body.get("empty"), "degenerate": body.get("degenerate")}


def _category_rows(results: dict) -> list[dict]:
    rows = []
    for cat, body in results.get("categories", {}).items():
        rows.append({"category": cat, "subcategory": "(all)", "n": body["n"], "score": body["score"],
                     "95% CI": _ci(body["ci95"]), "unparseable": body["unparseable"], **_silent(body)})
        for sub, sb in body["subcategories"].items():
            rows.append({"category": cat, "subcategory": sub, "n": sb["n"], "score": sb["score"],
                         "95% CI": _ci(sb["ci95"]), "unparseable": sb["unparseable"], **_silent(sb)})
    return rows


def _task_rows(results: dict) -> list[dict]:
    return [{"task": t, "type": i["type"], "category": i["category"], "subcategory": i["subcategory"], "n": i["n"],
             "score": i["score"], "95% CI": _ci(i["ci95"]), "unparseable": i["unparseable"], **_silent(i),
             "metrics": ", ".join(f"{k}={v:.3f}" for k, v in i["metrics"].items())}
            for t, i in results.get("tasks", {}).items()]


def _explained(rows: list[dict]) -> str:
    """A task's metrics beside real items (✗ fails it, ✓ passes it), and a warning naming those that stand
    on too few items to trust."""
    few = [f"{r['metric']} (n={r['n']})" for r in rows if not r["trusted"]]
    warning = (f'<p class="note"><b>Too few items to trust</b> (fewer than {FEW_ITEMS}): {escape(", ".join(few))}.</p>'
               if few else "")
    return warning + table([{"metric": r["metric"], "value": r["value"], "n": r["n"],
                             "trusted": "yes" if r["trusted"] else "NO", "examples": " · ".join(r["examples"])}
                            for r in rows])


def _silence_warning(name: str, results: dict) -> str:
    """A warning line when a run's outputs were empty or degenerate, else ""."""
    overall = results.get("overall") or {}
    bad, n = overall.get("degenerate") or 0, overall.get("n") or 0
    if not bad:
        return ""
    empty = overall.get("empty") or 0
    return (f'<p class="note"><b>Warning:</b> {escape(name)}: {bad} of {n} outputs said nothing '
            f"({empty} empty or whitespace, {bad - empty} punctuation only or a repeated loop); each scores 0, "
            "refusals included.</p>")


def _density_row(name: str, d: dict) -> dict:
    def fmt(x, spec):
        return format(x, spec) if isinstance(x, (int, float)) else "n/a"

    return {"run": name, "params": fmt(d.get("params"), ","), "tokens in": d.get("tokens_in"),
            "tokens out": d.get("tokens_out"), "TFLOPs/item": fmt(d.get("tflops_per_item"), ".3g"),
            "wall s": d.get("wall_s"), "tokens/s": fmt(d.get("tokens_per_s"), ".1f"), "score": d.get("score"),
            "score / B params": fmt(d.get("score_per_bparam"), ".4g"), "score / TFLOP": fmt(d.get("score_per_tflop"), ".4g")}


def _run_sections(results: dict, prefix: str = "") -> list[tuple[str, str]]:
    sections = []
    overall = results.get("overall") or {}
    summary = [{"model": results.get("model") or "(stored predictions)", "kb": results.get("kb") or "",
                "suites": ", ".join(s["name"] for s in results.get("suites", [])), "n": overall.get("n"),
                "score": overall.get("score"), "95% CI": _ci(overall.get("ci95")),
                "unparseable": overall.get("unparseable"), **_silent(overall)}]
    sections.append((prefix + "Summary", _silence_warning(results.get("model") or "this run", results) + table(summary)
                     + '<p class="note">Scores are in [0, 1]; a group\'s score is the mean of its tasks\' scores. '
                     "95% CIs: percentile bootstrap over items. empty / degenerate: outputs that were empty or "
                     "whitespace / that said nothing at all (empty, punctuation only, or a loop repeated until the "
                     "output ended); they score 0.</p>"))
    panel = [{"panel": name, "n": results[name]["n"], "score": results[name]["score"], "95% CI": _ci(results[name]["ci95"]),
              **_silent(results[name])} for name in ("domain", "general") if name in results]
    if panel:
        sections.append((prefix + "General ability kept", table(panel)))
    sections.append((prefix + "By category and subcategory", table(_category_rows(results))))
    subs = [(f"{cat} / {sub}", sb) for cat, body in results.get("categories", {}).items()
            for sub, sb in body["subcategories"].items()]
    if subs:
        sections.append((prefix + "Per-subcategory scores", bar_plot(
            [s[0] for s in subs], {"score": [s[1]["score"] for s in subs]},
            errors={"score": [tuple(s[1]["ci95"]) for s in subs]}, title="score by subcategory (95% CI)")))
    sections.append((prefix + "By task", table(_task_rows(results))))
    for task, info in results.get("tasks", {}).items():
        if info.get("explained"):
            sections.append((prefix + f"Metrics with examples: {task}", _explained(info["explained"])))
    if results.get("density"):
        sections.append((prefix + "Knowledge density", table([_density_row(results.get("model") or "run", results["density"])])))
    if results.get("judge"):
        sections.append((prefix + "Judge", f"<pre>{escape(json.dumps(results['judge'], ensure_ascii=False, indent=2))}</pre>"))
    return sections


def build_report(results: dict) -> str:
    """The whole page for one run, or for a variants comparison (``results["variants"]``)."""
    variants = results.get("variants")
    if not variants:
        return html_page("domainlm eval report", _run_sections(results))
    names = list(variants)
    sections = []
    rows = [{"variant": n, "model": v.get("model"), "kb": v.get("kb") or "", "n": v["overall"].get("n"),
             "score": v["overall"]["score"], "95% CI": _ci(v["overall"]["ci95"]), **_silent(v["overall"]),
             **({"general": _score_ci(v["general"])} if v.get("general") else {})}
            for n, v in variants.items()]
    warnings = "".join(_silence_warning(n, v) for n, v in variants.items())
    sections.append(("Variants", warnings + table(rows) + '<p class="note">empty / degenerate: how many of the '
                     "variant's outputs were empty or whitespace / said nothing at all (empty, punctuation only, or "
                     "a loop repeated until the output ended); they score 0. Cells below: score [95% CI].</p>"))
    cats = list(dict.fromkeys(c for v in variants.values() for c in v.get("categories", {})))
    cat_rows = [{"category": c, **{n: _score_ci(variants[n]["categories"].get(c)) for n in names}} for c in cats]
    sections.append(("Variants by category", table(cat_rows, ["category", *names])))
    tasks = list(dict.fromkeys(t for v in variants.values() for t in v.get("tasks", {})))
    task_rows = [{"task": t, **{n: _score_ci(variants[n]["tasks"].get(t)) for n in names}} for t in tasks]
    sections.append(("Variants by task", table(task_rows, ["task", *names])))
    sections.append(("Variant comparison", bar_plot(
        cats, {n: [variants[n]["categories"].get(c, {}).get("score", 0.0) for c in cats] for n in names},
        title="score by category and variant")))
    dens = [(n, v["density"]) for n, v in variants.items() if v.get("density")]
    if dens:
        sections.append(("Knowledge density", table([_density_row(n, d) for n, d in dens])))
        points = [(d["tflops_per_item"], d["score"], n) for n, d in dens if d.get("tflops_per_item")]
        if points:
            sections.append(("Density scatter", scatter_plot(points, title="score vs inference compute",
                                                             xlabel="TFLOPs per item", ylabel="score", logx=True)))
    for n, v in variants.items():
        sections.extend(_run_sections(v, prefix=f"[{n}] "))
    return html_page("domainlm eval report: variants", sections)
