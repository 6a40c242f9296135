"""Rebasing the line onto a new base model: the old line kept aside, the new one built in its place with the
same data, feedback, suites and seeds, and the two compared category by category.

Each new general model makes last year's industry model obsolete, so a workspace must be able to move to a
new base and show what that did. A change of ``train.base`` since the last build (``domainlm build
train.base=NEW`` or ``domainlm rebase NEW``) goes through one path, run by :func:`domainlm.pipeline.line.build`:

1. :func:`begin_rebase` moves everything the old base made (``models/*``, ``compressed/*``, ``eval/``) into a
   snapshot, ``artifacts/rebase/<time>-<old base>/old/``, and copies the old report there. A move, not a
   delete: the old model folders are kept whole until someone removes them, and a failed build puts them
   back. clean, kb, synth and the extractive reader do not depend on the base and stay where they are, so
   the new line trains and is scored on exactly the same data and items.
2. The line runs as usual; the new models land where the old ones were, so ``serve`` and the flywheel find
   them by name.
3. :func:`write_comparison` (the report step) re-scores the old and the new predictions on the same items
   and compares them per suite and category with :func:`domainlm.evals.compare_per_category`, the paired
   bootstrap both gates use: ``rebase.json`` and ``rebase.md`` in the snapshot, and a section of the line
   report.
4. On failure, :func:`abort_rebase` moves the half-built new artifacts to ``failed/`` and the old ones back.

Accepted feedback: the flywheel trains turns on feedback in its own registry, which ``build`` never reads.
:func:`accepted_feedback` collects the rows the promoted sft turns trained on so ``domainlm rebase
--registry`` can give them to the new line's sft stage (see :func:`domainlm.pipeline.line.rebase`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import yaml

from domainlm.errors import DomainlmError
from domainlm.evals import FEW_ITEMS, MOSTLY_SILENT, Scores, compare_per_category, score
from domainlm.io import dumps, read_json, read_jsonl, sha256_text, write_json, write_jsonl, write_text
from domainlm.manifest import read_manifest, stage_run
from domainlm.workspace import Layout, Workspace

SNAPSHOT_FILE = "snapshot.json"
TRAINABLE = ("cpt", "sft")  # the line's training stages, in order (as line.TRAINABLE)
EXAMPLES = 6


def rebase_root(layout: Layout) -> Path:
    return layout.rebase


FEEDBACK_PREFIX = "feedback-"


def feedback_dir(layout: Layout, stamp: str) -> Path:
    """Where one rebase keeps the accepted flywheel feedback it gives the sft stage. A new folder per rebase:
    domainlm.yaml names it in ``tasks.train`` from then on (so later builds train on the same rows), and the
    folder the old line trained on is never rewritten."""
    return rebase_root(layout) / f"{FEEDBACK_PREFIX}{stamp}"


def is_feedback_dir(layout: Layout, folder: Path) -> bool:
    return folder.parent == rebase_root(layout) and folder.name.startswith(FEEDBACK_PREFIX)


# ---------------------------------------------------------------------------------------------------
# Which base the line was built on
# ---------------------------------------------------------------------------------------------------
def built_base(ws: Workspace) -> str | None:
    """The base spec the line's models were trained from (the first trained stage's manifest), or None when
    nothing has been trained in this workspace."""
    for stage in TRAINABLE:
        manifest = read_manifest(ws.layout.model(stage))
        if manifest is not None and isinstance(manifest.config, dict) and manifest.config.get("base"):
            return str(manifest.config["base"])
    return None


def same_base(a: str, b: str) -> bool:
    """Two specs name the same model: the same text, or the same model folder written two ways."""
    if a.strip() == b.strip():
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def _slug(spec: str) -> str:
    name = Path(spec.rstrip("/")).name if "://" not in spec else spec.rsplit("#", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:40] or "base"


def _base_dependent(layout: Layout) -> list[Path]:
    """Folders whose contents depend on the base model: every trained model, compressed artifact and the
    eval of them. (The extractive reader's eval uses no model; clean, kb and synth none either.)"""
    found = [p for p in sorted((layout.artifacts / "models").glob("*")) if p.is_dir()]
    found += [p for p in sorted((layout.artifacts / "compressed").glob("*")) if p.is_dir()]
    return found + ([layout.eval] if layout.eval.is_dir() else [])


def _write_state(snapshot: Path, **changes) -> dict:
    state = {**read_json(snapshot / SNAPSHOT_FILE), **changes}
    write_json(snapshot / SNAPSHOT_FILE, state)
    return state


def read_state(snapshot: Path) -> dict:
    return read_json(snapshot / SNAPSHOT_FILE)


# ---------------------------------------------------------------------------------------------------
# Snapshot, restore
# ---------------------------------------------------------------------------------------------------
def begin_rebase(ws: Workspace, feedback: dict | None = None) -> Path | None:
    """When ``train.base`` differs from the base the line was built on, move the old line aside and return
    the snapshot folder; None when the base is unchanged or nothing was built yet. ``feedback``: the accepted
    flywheel feedback a rebase added to the sft data (:func:`accepted_feedback`), recorded for the report."""
    old = built_base(ws)
    new = ws.config.train.base
    if old is None or same_base(old, new):
        return None
    layout = ws.layout
    stamp = time.strftime("%Y%m%d-%H%M%S")
    snapshot = rebase_root(layout) / f"{stamp}-{_slug(old)}"
    number = 1
    while snapshot.exists():  # two rebases in one second
        number += 1
        snapshot = rebase_root(layout) / f"{stamp}-{_slug(old)}-{number}"
    (snapshot / "old").mkdir(parents=True)
    moved = [str(p.relative_to(layout.artifacts)) for p in _base_dependent(layout)]
    eval_manifest = read_manifest(layout.eval)
    state = {"old_base": old, "new_base": new, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "state": "building",
             "moved": moved, "feedback": feedback, "old_config": ws.config.model_dump(mode="json"),
             "old_eval_config": eval_manifest.config if eval_manifest is not None else None}
    write_json(snapshot / SNAPSHOT_FILE, state)
    for relative in moved:
        target = snapshot / "old" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # A rename on the same disk: instant, and the old weights are never rewritten.
        (layout.artifacts / relative).rename(target)
    if layout.report.is_dir():
        shutil.copytree(layout.report, snapshot / "old" / "report")
    return snapshot


def _put_back(ws: Workspace, snapshot: Path, keep_as: str) -> None:
    """Move what the new base made to ``snapshot/keep_as`` and the old line back in place (report included)."""
    layout = ws.layout
    state = read_state(snapshot)
    new_parts = [str(p.relative_to(layout.artifacts)) for p in _base_dependent(layout)]
    if layout.report.is_dir():
        new_parts.append(str(layout.report.relative_to(layout.artifacts)))
    for relative in new_parts:
        target = snapshot / keep_as / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        (layout.artifacts / relative).rename(target)
    for relative in [*state["moved"], "report"]:
        source = snapshot / "old" / relative
        if not source.exists():
            continue
        (layout.artifacts / relative).parent.mkdir(parents=True, exist_ok=True)
        if relative == "report":  # the old report was copied, so the snapshot keeps its own copy
            shutil.copytree(source, layout.artifacts / relative)
        else:
            source.rename(layout.artifacts / relative)


def abort_rebase(ws: Workspace, snapshot: Path, reason: str) -> None:
    """A build on the new base failed: its partial artifacts go to ``failed/``, the old line comes back."""
    _put_back(ws, snapshot, "failed")
    _write_state(snapshot, state="failed", reason=reason)


def keep_old_line(ws: Workspace, snapshot: Path) -> None:
    """``rebase --keep-old``: the new line was built and compared; it goes to ``new/`` and the old one back."""
    _put_back(ws, snapshot, "new")
    _write_state(snapshot, state="kept-old")


def finish_rebase(snapshot: Path) -> None:
    _write_state(snapshot, state="built")


def active_snapshot(ws: Workspace) -> Path | None:
    """The latest snapshot taken for a move to the base the workspace is on now (built, or being built)."""
    root = rebase_root(ws.layout)
    if not root.is_dir():
        return None
    for folder in sorted((p for p in root.iterdir() if (p / SNAPSHOT_FILE).is_file()), reverse=True):
        state = read_state(folder)
        if state.get("state") in ("building", "built") and same_base(state["new_base"], ws.config.train.base):
            return folder
    return None


# ---------------------------------------------------------------------------------------------------
# Old vs new
# ---------------------------------------------------------------------------------------------------
def _verdict(ci: list[float]) -> str:
    lo, hi = ci
    return "better" if lo > 0 else "worse" if hi < 0 else "no clear difference"


def _rescore(folder: Path, suites: list[str], limit: int, seed: int) -> Scores:
    """Stored predictions scored again by today's scorers on the same items (so a scorer fixed since the old
    build judges both sides alike)."""
    return score(None, suites, predictions=folder / "predictions.jsonl", limit=limit, seed=seed)


def _answered(path: Path) -> set[str]:
    return {str(r["id"]) for r in read_jsonl(path)}


def _rows(variant: str, suite: str, comparison: dict) -> list[dict]:
    overall = comparison["overall"]
    rows = [{"variant": variant, "suite": suite, "category": "(all)", "n": comparison["silent"]["n"],
             "old": overall["reference"], "new": overall["candidate"], "difference": overall["difference"],
             "difference_ci": overall["difference_ci"], "verdict": _verdict(overall["difference_ci"]),
             "trusted": comparison["silent"]["n"] >= FEW_ITEMS}]
    for g in comparison["groups"]:
        rows.append({"variant": variant, "suite": suite, "category": g["name"], "n": g["n"], "old": g["reference"],
                     "new": g["candidate"], "difference": g["difference"], "difference_ci": g["difference_ci"],
                     "verdict": _verdict(g["difference_ci"]), "trusted": g["trusted"]})
    return rows


def _short(value, limit: int = 160) -> str:
    if value is None or value == "":
        return "(empty)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _examples(variant: str, items: list[dict], old: list[dict], new: list[dict]) -> list[dict]:
    """Real answers side by side, chosen the same way every run: where the new model gained, where it lost,
    then where both agree."""
    order = sorted(range(len(items)), key=lambda i: sha256_text(str(items[i]["id"])))
    kinds = {"new right, old wrong": [], "old right, new wrong": [], "same verdict": []}
    for i in order:
        o, n = (old[i].get("score") or 0.0) >= 0.5, (new[i].get("score") or 0.0) >= 0.5
        kind = "new right, old wrong" if n and not o else "old right, new wrong" if o and not n else "same verdict"
        if len(kinds[kind]) < EXAMPLES // 3:
            kinds[kind].append({"variant": variant, "kind": kind, "task": items[i]["task"],
                                "question": _short(items[i].get("question")),
                                # an unanswerable item's gold is a refusal, whatever its answer field holds
                                "gold": "(a refusal)" if items[i]["type"] == "refusal" else _short(items[i].get("answer")),
                                "old": _short(old[i].get("output")), "new": _short(new[i].get("output")),
                                "old_score": old[i].get("score"), "new_score": new[i].get("score")})
    return [e for group in kinds.values() for e in group]


def compare_lines(ws: Workspace, snapshot: Path) -> dict:
    """Old vs new, per variant, suite and category: scores, the paired difference with its 95% interval, a
    verdict, real examples and the reasons a number cannot be trusted."""
    state = read_state(snapshot)
    e = ws.config.eval
    suites = [str(s) for s in ws.eval_suites()]
    old_eval, new_eval = snapshot / "old" / "eval", ws.layout.eval
    warnings: list[str] = []
    old_limit = ((state.get("old_eval_config") or {}).get("limit"))
    if old_limit is not None and old_limit != e.limit:
        warnings.append(f"eval.limit changed ({old_limit} → {e.limit}): only the items both builds answered are "
                        "compared")
    old_variants = (read_json(old_eval / "results.json").get("variants", {}) if (old_eval / "results.json").is_file()
                    else {})
    new_variants = (read_json(new_eval / "results.json").get("variants", {}) if (new_eval / "results.json").is_file()
                    else {})
    if not old_variants:
        warnings.append("the old line left no eval results: there is nothing to compare the new base with")
    if not new_variants:
        warnings.append("the new line has no eval results yet (the build stopped before eval)")
    rows, examples, silent = [], [], {}
    compared = [v for v in new_variants if v in old_variants]
    # Examples from one variant, the one closest to what is served (tuned with the KB, else tuned): the tables
    # cover every variant, and the same questions repeated per variant would say little more.
    shown = next((v for v in ("tuned+kb", "tuned") if v in compared), compared[0] if compared else None)
    for variant in compared:
        try:
            old, new = _rescore(old_eval / variant, suites, e.limit, e.seed), _rescore(new_eval / variant, suites,
                                                                                       e.limit, e.seed)
        except DomainlmError as exc:  # the suites changed since the old build: its ids are gone
            warnings.append(f"{variant}: the old predictions do not fit today's suites ({exc}); not compared")
            continue
        both = _answered(old_eval / variant / "predictions.jsonl") & _answered(new_eval / variant / "predictions.jsonl")
        keep = [i for i, item in enumerate(old.items) if item["id"] in both]
        if not keep:
            warnings.append(f"{variant}: no item was answered by both builds; not compared")
            continue
        items = [old.items[i] for i in keep]
        old_records, new_records = [old.records[i] for i in keep], [new.records[i] for i in keep]
        for suite in dict.fromkeys(item["_suite"] for item in items):
            idx = [i for i, item in enumerate(items) if item["_suite"] == suite]
            result = compare_per_category([items[i] for i in idx], [old_records[i] for i in idx],
                                          [new_records[i] for i in idx], levels=("category",), min_items=FEW_ITEMS,
                                          few_items="interval", names=("old", "new"), seed=e.seed)
            rows += _rows(variant, suite, result)
            for side in ("old", "new"):
                silent.setdefault(variant, {"n": 0, "old": 0, "new": 0})[side] += result["silent"][side]
            silent[variant]["n"] += result["silent"]["n"]
        if variant == shown:
            examples = _examples(variant, items, old_records, new_records)
    for variant, s in silent.items():
        for side in ("old", "new"):
            if s["n"] and s[side] / s["n"] > MOSTLY_SILENT:
                warnings.append(f"{variant}: {s[side]} of {s['n']} {side} outputs are empty or degenerate; they "
                                "score 0, so this side's numbers say more about its output than its knowledge")
    few = sorted({f"{r['suite']}/{r['category']}" for r in rows if not r["trusted"]})
    if few:
        warnings.append(f"{len(few)} group(s) have fewer than {FEW_ITEMS} items ({', '.join(few[:6])}"
                        f"{', …' if len(few) > 6 else ''}): their intervals are wide, so 'no clear difference' there "
                        "means the data cannot tell, not that the bases are equal")
    feedback = state.get("feedback") or {}
    for run in feedback.get("not_retrained", []):
        warnings.append(f"flywheel {run['run']}: {run['rows']} {run['stage']} rows the serving model was tuned on are "
                        "not in the new line (the line trains cpt and sft only); run the flywheel on the new model")
    return {"old_base": state["old_base"], "new_base": state["new_base"], "snapshot": str(snapshot),
            "created": state["created"], "feedback": state.get("feedback"), "confidence": 0.95, "rows": rows,
            "silent": silent, "examples": examples, "warnings": warnings}


def render_markdown(comparison: dict) -> str:
    c = comparison
    lines = [f"# Rebase: {c['old_base']} → {c['new_base']}", "",
             f"Same data, suites and seeds; the old line is kept in `{c['snapshot']}/old`.", ""]
    feedback = c.get("feedback")
    if feedback:
        lines += [f"Accepted flywheel feedback trained into the new line: {feedback.get('rows', 0)} sft rows from "
                  f"{len(feedback.get('runs', []))} promoted run(s) of {feedback.get('registry')}.", ""]
    if c["warnings"]:
        lines += ["## Numbers that cannot be trusted", ""] + [f"- {w}" for w in c["warnings"]] + [""]
    lines += ["## Old vs new by suite and category", "",
              "`better`/`worse`: the 95% interval of the paired difference (new − old) lies above/below 0; "
              "`no clear difference`: it contains 0. Empty or degenerate outputs score 0.", "",
              "| variant | suite | category | items | old | new | difference (95% CI) | verdict |",
              "|---|---|---|---:|---:|---:|---|---|"]
    for r in c["rows"]:
        lo, hi = r["difference_ci"]
        verdict = r["verdict"] + ("" if r["trusted"] else " (too few items)")
        lines.append(f"| {r['variant']} | {r['suite']} | {r['category']} | {r['n']} | {r['old']:.3f} | {r['new']:.3f} "
                     f"| {r['difference']:+.3f} ({lo:+.3f} to {hi:+.3f}) | {verdict} |")
    lines.append("")
    if c["examples"]:
        lines += ["## Examples: the same questions, old and new answers", "",
                  "| variant | kind | task | question | gold | old | new |", "|---|---|---|---|---|---|---|"]
        for ex in c["examples"]:
            cells = [ex[k] for k in ("variant", "kind", "task", "question", "gold", "old", "new")]
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(ws: Workspace, snapshot: Path, *, force: bool = False) -> Path:
    """``rebase.json`` and ``rebase.md`` in the snapshot (cached on both builds' predictions); returns the json."""
    old_eval, new_eval = snapshot / "old" / "eval", ws.layout.eval
    inputs = sorted([*old_eval.glob("*/predictions.jsonl"), *new_eval.glob("*/predictions.jsonl")])
    inputs += ws.eval_suites()
    state = read_state(snapshot)
    # the snapshot's own state changes as the build goes on; only what the comparison reads is its config
    config = {"limit": ws.config.eval.limit, "seed": ws.config.eval.seed, "old_base": state["old_base"],
              "new_base": state["new_base"], "feedback": state.get("feedback")}
    with stage_run("rebase", snapshot, inputs=inputs, config=config, force=force) as run:
        if not run.skipped:
            comparison = compare_lines(ws, snapshot)
            write_json(run.output("rebase.json", key="comparison"), comparison)
            write_text(run.output("rebase.md", key="report"), render_markdown(comparison))
    return snapshot / "rebase.json"


# ---------------------------------------------------------------------------------------------------
# Accepted feedback and domainlm.yaml
# ---------------------------------------------------------------------------------------------------
def accepted_feedback(registry: str | Path, out: Path) -> dict:
    """The rows the serving model's promoted flywheel turns trained on (sft turns: chat rows), written to
    ``out/flywheel-sft.jsonl``. A rolled-back turn's rows are left out (the serving model no longer has
    them); preference turns (dpo, kto) are counted but not written: the line has no preference stage, so
    the report says they were not retrained."""
    registry = Path(registry)
    # registry.json read here rather than through serve.flywheel.read_registry, which would make the line
    # import the feedback store (sqlalchemy, the [serve] extra) just to read one JSON file
    if not (registry / "registry.json").is_file():
        raise DomainlmError(f"--registry {registry}: not a model registry (no registry.json)")
    state = read_json(registry / "registry.json")
    rows: list[dict] = []
    seen: set[str] = set()
    runs, skipped = [], []
    for entry in state["history"]:
        run = entry.get("run")
        if not run:
            continue
        folder = registry / "runs" / run
        decision = read_json(folder / "decision.json")
        trained = read_jsonl(folder / "feedback.jsonl") if (folder / "feedback.jsonl").is_file() else []
        if decision.get("stage") != "sft":
            skipped.append({"run": run, "stage": decision.get("stage"), "rows": len(trained)})
            continue
        runs.append(run)
        for row in trained:
            key = dumps(row)
            if key not in seen:  # a question corrected in two turns is trained on once
                seen.add(key)
                rows.append(row)
    if rows:
        write_jsonl(out / "flywheel-sft.jsonl", rows)
    return {"registry": str(registry), "runs": runs, "rows": len(rows), "not_retrained": skipped}


def updated_config_text(text: str, values: dict[tuple[str, ...], object]) -> tuple[str, bool]:
    """``domainlm.yaml``'s text with ``values`` (key path → value) set, keeping its comments and layout when
    every key is already written in the file: only each value's own characters are replaced (with JSON, which
    YAML reads). Returns (text, comments_kept); when a key is missing the file is dumped again from its data."""
    root = yaml.compose(text)
    spans = []
    for path, value in values.items():
        node = root
        for key in path:
            node = next((v for k, v in node.value if k.value == key), None) if isinstance(node, yaml.MappingNode) \
                else None
            if node is None:
                break
        if node is None:
            spans = None
            break
        spans.append((node.start_mark.index, node.end_mark.index, json.dumps(value, ensure_ascii=False)))
    if spans is not None:
        for start, end, replacement in sorted(spans, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text, True
    data = yaml.safe_load(text) or {}
    for path, value in values.items():
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False), False
