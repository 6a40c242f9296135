"""The feedback flywheel: new feedback → train from the serving model → gate → promote only if better.

A model registry is a folder::

    REGISTRY/versions/v0001/ ...   every model that has served (kept for rollback)
    REGISTRY/current               symlink to the serving version (serve it: --model REGISTRY/current)
    REGISTRY/registry.json         {"current": "v0002", "history": [{"version", "time", "run", "score"}, ...]}
    REGISTRY/runs/run-0003/        feedback.jsonl (rows trained on), replay.jsonl, heldout/ (the held-back
                                   feedback as an eval suite), model/ (candidate), eval-current/,
                                   eval-candidate/, decision.json, report.md, report.json, manifest.json
    REGISTRY/flywheel.jsonl        every step of every run, appended as it happens
    REGISTRY/versions.jsonl        the version ledger (:mod:`domainlm.pipeline.versions`): each version's
                                   parameters, compute per token, gate scores and knowledge density, keyed by
                                   the version id registry.json's history uses

The gate (:func:`promotion_verdict`) promotes a candidate only when it beats the serving model overall by
more than ``min_gain`` *and* is worse on no category beyond its paired-bootstrap interval, with outputs
that say something: :func:`domainlm.evals.compare_per_category`, the comparison the compression gate makes.

The gate also asks what users asked: a seeded share (``holdback``) of the new feedback rows that carry a target
(a correction, a preferred or upvoted answer) is not trained on but written as an eval suite and scored by both
models beside the gate suites, as its own category, ``feedback-heldout``. A candidate that learned the
corrections it was shown but not the ones held back is memorising, and that category refuses it.

Every run folder gets a report (:mod:`domainlm.serve.flywheel_report`): what users flagged, what changed,
which categories moved, the verdict and which of its numbers cannot be trusted.

Each run uses the feedback the previous runs have not seen (a high-water mark in the feedback store),
whether or not its candidate is promoted: feedback that produced a worse model stays in that run's
folder for review instead of poisoning every later run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

from pydantic import Field

from domainlm.errors import DomainlmError
from domainlm.evals import GateSettings, Scores, compare_per_category, degenerate_reason, score
from domainlm.io import dumps, read_json, write_json, write_jsonl, write_text
from domainlm.manifest import stage_run
from domainlm.models import resolve_hf_dir
from domainlm.parsing import extract_tool_call
from domainlm.pipeline import LEDGER, append_versions, latest, read_ledger, version_record
from domainlm.prompts import render_answer
from domainlm.serve.export import feedback_rows
from domainlm.serve.failures import failure_report
from domainlm.serve.flywheel_report import build_report, write_report
from domainlm.serve.store import FeedbackStore
from domainlm.train import TrainConfig, load_records, train

HELDOUT = "feedback-heldout"  # the held-back slice's category in the gate comparison
# Below this many questions with a target, holding one back leaves too little to train on and tests nothing
# a reader could trust: the gate then judges on its suites alone, and the decision says so.
MIN_HOLDBACK = 5


class FlywheelConfig(TrainConfig, GateSettings):
    """One turn of the flywheel: the registry, the feedback store, the gate, and how the candidate is trained.

    It *is* a :class:`~domainlm.train.TrainConfig` (batch size, sequence length, seed … mean what they mean
    for ``domainlm train``). Only what differs for a turn is set here: the stages feedback can feed, and
    defaults for a handful of rows — a short fixed run at a higher rate, no warm-up, nothing held out."""

    registry: str = Field(description="Model registry folder.")
    db: str = Field("sqlite:///artifacts/feedback.db", description="Feedback store URL.")
    gate: list[str] = Field(min_length=1, description="Gate suites (task folders/files) both models are scored on.")
    min_rows: int = Field(1, ge=1, description="Fewer new training rows than this: skip the run.")
    min_gain: float = Field(0.0, ge=0, description="Promote only when candidate score > current + min_gain.")
    holdback: float = Field(0.2, ge=0, lt=1, description="Share of the new feedback questions with a target (corrections, "
                            "preferred or upvoted answers) held back from training and scored by both models as the "
                            f"gate's '{HELDOUT}' category (seeded; none with fewer than {MIN_HOLDBACK} such questions).")
    # the per-category check is GateSettings' (domainlm.evals.compare_per_category), as the compression gate's
    gate_min_retention: float = Field(1.0, ge=0, le=1, description="Candidate / current score each group must keep "
                                      "(the upper end of its interval must reach it); 1.0: no loss beyond noise.")
    # Not TrainConfig's replay/replay_ratio (general text mixed into cpt): these mix the line's own sft data into a turn.
    replay_data: list[str] = Field(default_factory=list, description="The original fine-tuning data (files or folders, as "
                              "`domainlm train --data` reads them), sampled into every sft turn so the model keeps what "
                              "it knew; in a workspace, default: the line's own sft data.")
    replay_per_row: float = Field(4.0, ge=0, description="Replay rows per feedback row (0: feedback alone; the model "
                                "then drifts towards the few corrected answers).")
    # narrower than TrainConfig's: feedback has no raw documents (cpt), and a turn runs where serving does (no qlora)
    stage: str = Field("sft", pattern="^(sft|dpo|kto)$", description="sft (corrections) | dpo (pairs) | kto (thumbs)")
    method: str = Field("full", pattern="^(full|lora)$")
    max_steps: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    eval_fraction: float = Field(0.0, ge=0, lt=1)

    def train_config(self) -> TrainConfig:
        """The candidate's training settings: this config without the flywheel's own keys."""
        return TrainConfig.model_validate(self.model_dump(include=set(TrainConfig.model_fields)))


def replay_rows(cfg: FlywheelConfig, feedback_rows: int) -> list[dict]:
    """A deterministic sample of the original fine-tuning data: ``replay_per_row`` rows per feedback row, as chat
    rows ``{"messages", "tools"?}`` (task items rendered as the train stage renders them). Replay feeds sft only:
    preference rows (dpo, kto) have no counterpart in the original data."""
    if cfg.stage != "sft" or not cfg.replay_data or cfg.replay_per_row <= 0 or feedback_rows <= 0:
        return []
    loaded = load_records(cfg.replay_data, "sft")
    if not loaded.records:
        raise DomainlmError(f"flywheel replay: no usable sft rows in {', '.join(map(str, cfg.replay_data))}")
    want = min(len(loaded.records), max(1, round(cfg.replay_per_row * feedback_rows)))
    picked = random.Random(cfg.seed).sample(loaded.records, want)
    return [{key: r[key] for key in ("messages", "tools", "prompt", "completion", "text") if r.get(key)} for r in picked]


# ---------------------------------------------------------------------------------------------------
# The held-back slice of feedback
# ---------------------------------------------------------------------------------------------------
def _row_question(row: dict) -> str | None:
    """The last user turn of an exported row (kto/dpo rows keep only that, as a string)."""
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    turns = row.get("messages") or row.get("prompt") or []
    users = [m.get("content") for m in turns if m.get("role") == "user" and isinstance(m.get("content"), str)]
    return users[-1] if users else None


def heldout_item(row: dict, stage: str) -> dict | None:
    """The eval item a feedback row becomes when held back, or None when it has no target the eval can ask for.

    The target is what the user wanted: the correction (sft), the preferred answer (dpo), an upvoted answer
    (kto). The eval asks one question with no history, so an sft row qualifies only when its conversation is
    a single user turn (kto/dpo rows are that already). A target that is a tool call becomes a ``tool_call``
    item with the row's tools; any other a ``qa`` item scored by character F1 against it. A target that
    says nothing (empty, punctuation, a loop) is no target."""
    tools = row.get("tools") or None
    if stage == "sft":
        messages = row.get("messages") or []
        if len(messages) != 2 or messages[0].get("role") != "user" or messages[1].get("role") != "assistant":
            return None
        question, answer = messages[0].get("content"), messages[1]
        calls = answer.get("tool_calls") or []
        if len(calls) > 1:  # the tool_call scorer checks one call
            return None
        target = ({"name": calls[0]["function"]["name"], "arguments": calls[0]["function"]["arguments"]} if calls
                  else answer.get("content"))
    elif stage == "dpo":
        question, target = row.get("prompt"), row.get("chosen")
    elif stage == "kto":
        question, target = row.get("prompt"), row.get("completion") if row.get("label") is True else None
    else:
        raise DomainlmError(f"flywheel holdback: unknown stage '{stage}'")
    if isinstance(target, str) and tools:  # kto/dpo keep a call as its JSON text
        target = extract_tool_call(target, tools) or target
    if not isinstance(question, str) or not question.strip() or target is None:
        return None
    if isinstance(target, dict):
        if not tools or not target.get("name") or not isinstance(target.get("arguments"), dict):
            return None
        return {"type": "tool_call", "question": question, "answer": target, "tools": tools}
    if not isinstance(target, str) or degenerate_reason(target):
        return None
    return {"type": "qa", "question": question, "answer": target}


def holdback_split(rows: list[dict], stage: str, fraction: float, seed: int) -> tuple[list[dict], list[dict], dict]:
    """``(rows to train on, held-back eval items, what was done)``: a seeded ``fraction`` of the questions
    that have a target, at least one when there are ``MIN_HOLDBACK`` or more, none when fewer.

    A question is held back whole: every row asking it leaves the training data (a question corrected twice
    must not be trained on once and tested once), and its item takes the latest row's target."""
    usable: dict[str, dict] = {}  # question → its latest row's item, in order of first appearance
    for row in rows:
        item = heldout_item(row, stage)
        if item is not None:
            usable[item["question"].strip()] = item
    note = None
    want = 0
    if fraction <= 0:
        note = "holdback 0: no feedback held back; the gate judges on its suites alone"
    elif len(usable) < MIN_HOLDBACK:
        note = (f"only {len(usable)} new {stage} questions with a target the eval can ask (< {MIN_HOLDBACK}): "
                "none held back; the gate judges on its suites alone")
    else:
        # never all of them: a turn must train on something
        want = min(max(1, round(fraction * len(usable))), len(usable) - 1)
    picked = set(random.Random(f"{seed}:holdback").sample(sorted(usable), want))
    train_rows = [row for row in rows if (_row_question(row) or "").strip() not in picked]
    items = []
    for question, item in usable.items():
        if question in picked:
            kind = item["type"]
            items.append({"id": f"{HELDOUT}-{len(items) + 1:04d}", "task": f"{HELDOUT}-{kind}", "category": HELDOUT,
                          "subcategory": kind, **item})
    info = {"fraction": fraction, "usable": len(usable), "questions": len(items),
            "rows": len(rows) - len(train_rows), "note": note}
    return train_rows, items, info


def write_heldout_suite(folder: Path, items: list[dict]) -> Path:
    """The held-back items as a suite ``domainlm eval`` reads: asked exactly as users asked them in chat (no
    added instruction, tools through the chat template), with room for the longest target."""
    longest = max(len(render_answer(item)) for item in items)
    write_jsonl(folder / f"{HELDOUT}.jsonl", items)
    config = {"name": HELDOUT, "templates": {"qa": "{question}", "tool_call": "{question}"},
              # ~1 token per CJK character (more per English word): the target plus slack, bounded
              "max_new_tokens": min(512, max(32, longest + 16))}
    write_text(folder / "suite.yaml", json.dumps(config, ensure_ascii=False) + "\n")  # JSON is YAML
    return folder


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------
def _registry_file(registry: Path) -> Path:
    return registry / "registry.json"


def read_registry(registry: str | Path) -> dict:
    registry = Path(registry)
    if not _registry_file(registry).is_file():
        raise DomainlmError(f"{registry}: not a model registry (no registry.json); create one with --init-model M")
    return read_json(_registry_file(registry))


def _point_current(registry: Path, version: str) -> None:
    """Switch ``current`` to ``versions/<version>`` atomically (a new symlink renamed over the old one)."""
    tmp = registry / ".current.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(Path("versions") / version, tmp)
    os.replace(tmp, registry / "current")


def _log(registry: Path, record: dict) -> None:
    # An append-only log (not rewritten): each line is flushed and fsynced before the step continues.
    with (registry / "flywheel.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def init_registry(registry: str | Path, model: str) -> dict:
    """A registry whose v0001 is a copy of ``model`` (an HF folder or ``tiny``)."""
    registry = Path(registry)
    if _registry_file(registry).exists():
        raise DomainlmError(f"{registry}: already a model registry")
    source = resolve_hf_dir(model)
    (registry / "versions").mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, registry / "versions" / "v0001", dirs_exist_ok=False)
    state = {"current": "v0001", "history": [{"version": "v0001", "time": time.time(), "run": None, "source": str(model)}]}
    write_json(_registry_file(registry), state)
    _point_current(registry, "v0001")
    # unscored until a gate scores it (the first turn records its scores)
    append_versions(registry / LEDGER, [version_record("v0001", source="flywheel", model=registry / "versions" / "v0001",
                                                       name="init", base=str(model))])
    _log(registry, {"step": "init", "version": "v0001", "source": str(model)})
    return state


def rollback(registry: str | Path) -> dict:
    """Serve the version that was current before the current one."""
    registry = Path(registry)
    state = read_registry(registry)
    history = state["history"]
    if len(history) < 2:
        raise DomainlmError(f"{registry}: nothing to roll back to (only {state['current']} has served)")
    gone = history.pop()
    state["current"] = history[-1]["version"]
    state.setdefault("rolled_back", []).append({**gone, "rolled_back_at": time.time()})
    _point_current(registry, state["current"])
    write_json(_registry_file(registry), state)
    _log(registry, {"step": "rollback", "from": gone["version"], "to": state["current"]})
    return state


def promote(registry: str | Path, version: str) -> dict:
    """Serve ``version``, a folder of ``versions/`` that is not serving (one rolled back earlier, say): the
    operator's promotion, without a run or a gate. It joins the history, so a rollback returns to the version
    that served before it."""
    registry = Path(registry)
    state = read_registry(registry)
    versions = sorted(p.name for p in (registry / "versions").iterdir() if p.is_dir())
    if version not in versions:
        raise DomainlmError(f"{registry}: no version '{version}' (versions: {', '.join(versions)})")
    if version == state["current"]:
        raise DomainlmError(f"{registry}: {version} is already serving")
    previous = state["current"]
    state["current"] = version
    state["history"].append({"version": version, "time": time.time(), "run": None, "previous": previous})
    _point_current(registry, version)
    write_json(_registry_file(registry), state)
    _log(registry, {"step": "promote", "from": previous, "to": version})
    return state


# ---------------------------------------------------------------------------------------------------
# One turn of the flywheel
# ---------------------------------------------------------------------------------------------------
def _gate_score(model_dir: Path, gate: list[str], out: Path) -> Scores:
    """The model's scores on the gate; its predictions, results and report are kept in ``out`` for review."""
    scores = score(str(model_dir), gate, label=out.name, show_progress=True)
    scores.write(out)
    return scores


def promotion_verdict(current: Scores, candidate: Scores, cfg: FlywheelConfig) -> dict:
    """Promote or refuse, with every reason: the candidate must beat ``current`` overall by more than
    ``min_gain``, be worse on no ``gate_by`` group beyond its interval (few-item groups decided by
    ``gate_few_items``), and not be mostly (or all) silent. Empty and degenerate outputs score 0."""
    comparison = compare_per_category(current.items, current.records, candidate.records,
                                      **cfg.group_rule(cfg.gate_min_retention), names=("current", "candidate"),
                                      seed=cfg.seed)
    overall = comparison["overall"]
    cur, cand = overall["reference"], overall["candidate"]
    lo, hi = overall["difference_ci"]
    reasons = []
    if not cand > cur + cfg.min_gain:
        reasons.append(f"candidate is not better than the serving model on the gate: {cand:.4f} vs {cur:.4f} "
                       f"+ min_gain {cfg.min_gain} (difference {cand - cur:+.4f}, "
                       f"{cfg.gate_confidence:.0%} CI {lo:+.4f} to {hi:+.4f})")
    reasons += comparison["refusals"]
    return {"passed": not reasons, "reason": "; ".join(reasons) or None, "refusals": reasons,
            "warnings": comparison["warnings"], "current_score": cur, "candidate_score": cand,
            "difference_ci": overall["difference_ci"], "groups": comparison["groups"], "silent": comparison["silent"],
            "rule": {k: comparison[k] for k in ("levels", "min_retention", "confidence", "min_items", "few_items",
                                                "max_silent_share")}}


TRAINING_KEYS = ("steps", "records", "tokens", "first_loss", "train_loss", "eval_loss_start", "eval_loss_end", "wall_s")


def run_flywheel(cfg: FlywheelConfig, *, console=None) -> dict:
    """One turn; returns the decision record (also written to the run folder and flywheel.jsonl), with
    the run's report (``report.md``, ``report.json``) written beside it."""
    say = console.print if console is not None else (lambda *a, **k: None)
    registry = Path(cfg.registry).resolve()
    state = read_registry(registry)
    read_ledger(registry / LEDGER)  # a broken ledger line is an error now, not after a turn's training
    for suite in cfg.gate:
        if not Path(suite).exists():
            raise DomainlmError(f"{suite}: no such gate suite")
    current = state["current"]
    current_dir = registry / "versions" / current
    number = 1 + max([int(p.name.split("-")[1]) for p in (registry / "runs").glob("run-*")] or [0])
    run_dir = registry / "runs" / f"run-{number:04d}"
    mark = f"flywheel:{registry}"
    store = FeedbackStore(cfg.db)
    try:
        with stage_run("flywheel", run_dir, inputs=cfg.gate, config=cfg, seed=cfg.seed, force=True) as run:
            since = store.export_mark(mark)
            records = list(store.iter_feedback(since_id=since))
            rows = feedback_rows(records, cfg.stage)
            train_rows, held_items, held = holdback_split(rows, cfg.stage, cfg.holdback, cfg.seed)
            write_jsonl(run.output("feedback.jsonl"), train_rows)
            exported = {"format": cfg.stage, "feedback": len(records), "rows": len(rows), "trained": len(train_rows),
                        "heldout": held["rows"], "last_id": records[-1].id if records else since}
            _log(registry, {"run": run_dir.name, "step": "export", "stage": cfg.stage, "since": since, **exported})
            say(f"{run_dir.name}: {len(rows)} {cfg.stage} rows from {len(records)} new feedback records")
            heldout_dir = None
            if held_items:
                heldout_dir = write_heldout_suite(run.output("heldout"), held_items)
                held["suite"] = str(heldout_dir)
                say(f"{run_dir.name}: {held['questions']} of {held['usable']} questions with a target held back "
                    f"from training ({held['rows']} row{'s' if held['rows'] != 1 else ''}), scored as the gate's '{HELDOUT}' "
                    "category")
            else:
                say(f"{run_dir.name}: {held['note']}")
            _log(registry, {"run": run_dir.name, "step": "holdback", **held})
            # what users flagged, grouped by the nearest gate item: for the report, whatever the verdict
            flagged = failure_report(records, cfg.gate)
            decision = {"run": run_dir.name, "current": current, "stage": cfg.stage, "rows": len(rows),
                        "feedback_rows": len(train_rows), "heldout": held}
            if len(train_rows) < cfg.min_rows:
                decision.update(decision="skipped", reason=f"{len(train_rows)} new rows to train on"
                                + (f" ({held['rows']} more held back)" if held["rows"] else "")
                                + f" < min_rows {cfg.min_rows}")
            else:
                data = [run_dir / "feedback.jsonl"]
                replayed = replay_rows(cfg, len(train_rows))
                if replayed:
                    write_jsonl(run.output("replay.jsonl"), replayed)
                    data.append(run_dir / "replay.jsonl")
                decision["replay_rows"] = len(replayed)
                _log(registry, {"run": run_dir.name, "step": "replay", "rows": len(replayed), "from": cfg.replay_data})
                if replayed:
                    say(f"{run_dir.name}: + {len(replayed)} replayed rows of the original training data")
                trained = train(str(current_dir), data, run_dir / "model", cfg.train_config(), console=console)
                run.outputs.append("model")
                decision["training"] = {k: trained.metrics[k] for k in TRAINING_KEYS if k in trained.metrics}
                _log(registry, {"run": run_dir.name, "step": "train", "base": current,
                                "metrics": {k: v for k, v in trained.metrics.items() if isinstance(v, (int, float, str))}})
                suites = [*cfg.gate, *([str(heldout_dir)] if heldout_dir else [])]
                cur = _gate_score(current_dir, suites, run_dir / "eval-current")
                cand = _gate_score(run_dir / "model", suites, run_dir / "eval-candidate")
                verdict = promotion_verdict(cur, cand, cfg)
                held["groups"] = [g for g in verdict["groups"] if g["name"].startswith(HELDOUT)]
                _log(registry, {"run": run_dir.name, "step": "gate", "current": {"score": cur.score, "n": cur.n},
                                "candidate": {"score": cand.score, "n": cand.n}, "passed": verdict["passed"],
                                "refusals": verdict["refusals"], "warnings": verdict["warnings"]})
                say(f"{run_dir.name}: gate score current {current} {cur.score:.4f}, candidate {cand.score:.4f}")
                for group in held["groups"]:
                    say(f"{run_dir.name}: held-back feedback ({group['level']} '{group['name']}', {group['n']} items): "
                        f"current {group['reference']:.4f}, candidate {group['candidate']:.4f}")
                for line in verdict["refusals"] + verdict["warnings"]:
                    say(f"{run_dir.name}: gate: {line}")
                decision.update(current_score=cur.score, candidate_score=cand.score, min_gain=cfg.min_gain,
                                gate=verdict)
                served = {r["version"]: r for r in latest(read_ledger(registry / LEDGER))}
                if not (served.get(current) or {}).get("scores"):
                    # the serving version's first scores: its ledger line from init (or none, in a registry
                    # older than the ledger) is superseded by one that the gate scored
                    append_versions(registry / LEDGER, [version_record(current, source="flywheel", model=current_dir,
                                                                       results=cur.results, run=run_dir.name,
                                                                       name=(served.get(current) or {}).get("name"))])
                if verdict["passed"]:
                    version = f"v{int(current[1:]) + 1:04d}"
                    while (registry / "versions" / version).exists():  # a rolled-back version keeps its number
                        version = f"v{int(version[1:]) + 1:04d}"
                    shutil.copytree(run_dir / "model", registry / "versions" / version)
                    state["current"] = version
                    state["history"].append({"version": version, "time": time.time(), "run": run_dir.name,
                                             "score": cand.score, "previous": current})
                    _point_current(registry, version)
                    write_json(_registry_file(registry), state)
                    append_versions(registry / LEDGER, [version_record(
                        version, source="flywheel", model=registry / "versions" / version, results=cand.results,
                        reference=cur.results, run=run_dir.name, name="promoted", previous=current)])
                    decision.update(decision="promoted", version=version)
                else:
                    decision.update(decision="refused", reason=verdict["reason"])
            store.set_export_mark(mark, exported["last_id"])
            report = build_report(decision, flagged, min_items=cfg.gate_min_items)
            paths = write_report(run_dir, report)
            run.outputs.extend(["report.md", "report.json"])
            decision["report"] = {"markdown": str(paths["markdown"]), "data": str(paths["data"]),
                                  "warnings": report["warnings"]}
            write_json(run.output("decision.json"), decision)
            run.metrics.update({k: v for k, v in decision.items() if isinstance(v, (int, float, str))})
    finally:
        store.close()
    _log(registry, {"step": "decision", **decision})
    say(f"{run_dir.name}: {decision['decision']}" + (f" → serving {decision['version']}" if "version" in decision else ""))
    for line in report["warnings"]:
        say(f"{run_dir.name}: cannot be trusted: {line}")
    say(f"{run_dir.name}: report {paths['markdown']}")
    return decision


def serving_dir(registry: str | Path) -> Path:
    """The folder ``current`` points at (what ``domainlm serve --model REGISTRY/current`` loads)."""
    return (Path(registry) / "current").resolve()


def flywheel_log(registry: str | Path) -> list[dict]:
    path = Path(registry) / "flywheel.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.exists() else []
