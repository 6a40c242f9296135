"""The line: clean → kb → synth → train (cpt, sft) → compress → eval (variants) → report.

A build is a list of steps and a loop over it, as datatrove runs a pipeline. Every step calls its stage's
own function (the same one the stage's command calls), each cached by its manifest, and gets back a
:class:`~domainlm.manifest.StageResult`: whether it ran or was cached, its metrics and its named outputs.
The step only maps the workspace (settings and :class:`~domainlm.workspace.Layout`) onto the stage's
arguments. A stage this build does not run (``--from``) is read from the result it left on disk.

A build whose ``train.base`` differs from the one the line was built on is a rebase: the old line is moved
into a snapshot first, put back if the build fails, and compared with the new one in the report
(:mod:`domainlm.pipeline.rebase`). ``domainlm rebase NEW`` is that build plus the accepted flywheel feedback,
and ``domainlm.yaml`` moved to NEW once it succeeded (:func:`rebase`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from domainlm.compress import GateRefused, compress
from domainlm.config import CONFIG_FILE, find_config
from domainlm.data import clean
from domainlm.errors import DomainlmError
from domainlm.evals import Variant, evaluate, load_suite
from domainlm.io import write_text
from domainlm.kb import build_stage as build_kb_stage
from domainlm.manifest import StageResult
from domainlm.models.spec import parse_spec
from domainlm.pipeline.extractive import extractive_eval
from domainlm.pipeline.rebase import (
    abort_rebase,
    accepted_feedback,
    active_snapshot,
    begin_rebase,
    built_base,
    feedback_dir,
    finish_rebase,
    is_feedback_dir,
    keep_old_line,
    read_state,
    same_base,
    updated_config_text,
    write_comparison,
)
from domainlm.pipeline.report import write_line_report
from domainlm.sandbox import recommendation_path
from domainlm.synth import synth_stage
from domainlm.train import train
from domainlm.workspace import Workspace, check_workspace, load_workspace

STAGES = ("clean", "kb", "synth", "train", "compress", "eval", "report")
TRAINABLE = ("cpt", "sft")


@dataclass
class StageOutcome:
    name: str
    status: str  # ran | cached | off
    seconds: float
    detail: str = ""


@dataclass
class BuildResult:
    root: Path
    outcomes: list[StageOutcome] = field(default_factory=list)
    report: Path | None = None
    rebase: Path | None = None  # the snapshot of the old line when this build changed the base


@dataclass
class StepResult:
    """What one step of the line did: the results of the stage runs it made, and a one-line summary."""

    results: list[StageResult]
    detail: str

    @property
    def ran(self) -> bool:
        return any(not r.skipped for r in self.results)


def variants(ws: Workspace) -> list[Variant]:
    """Every model the line made, named: base, tuned, tuned+kb and one per promoted compression target."""
    kb = str(ws.layout.kb)
    base = ws.config.train.base
    if not ws.config.train.stages:
        return [Variant(name="base", model=base), Variant(name="base+kb", model=base, kb=kb)]
    tuned = str(ws.tuned_model())
    out = [Variant(name="base", model=ws.base_model()), Variant(name="tuned", model=tuned),
           Variant(name="tuned+kb", model=tuned, kb=kb)]
    for target in ws.config.compress.targets:
        artifact = ws.compressed_artifact(target)
        if artifact:
            out.append(Variant(name=target, model=str(artifact)))
    return out


# --------------------------------------------------------------------------------------------------
# Steps: the workspace's settings and layout → the stage's arguments.
# --------------------------------------------------------------------------------------------------


def run_clean(ws: Workspace, force: bool) -> StepResult:
    result = clean([ws.path(s) for s in ws.config.sources], ws.layout.clean, ws.config.clean, force=force)
    m = result.metrics
    return StepResult([result], f"kept {m.get('kept')}, rejected {m.get('rejected')}, duplicates {m.get('duplicates')}")


def run_kb(ws: Workspace, force: bool) -> StepResult:
    result = build_kb_stage([ws.layout.clean_jsonl], ws.layout.kb, ws.config.kb, force=force)
    m = result.metrics
    return StepResult([result], f"{m.get('documents')} documents, {m.get('chunks')} chunks")


def run_synth(ws: Workspace, force: bool) -> StepResult:
    config = ws.config.synth.stage_config(seed=ws.config.seed, reading_passages=ws.config.retrieval.training_passages)
    result = synth_stage(ws.layout.kb, ws.layout.synth, config, force=force)
    m = result.metrics
    detail = (f"{m.get('facts', 0)} facts: train qa {m.get('train/synth_knowledge_qa', 0)}, "
              f"eval qa {m.get('eval/synth_knowledge_qa', 0)}, refusals "
              f"{m.get('train/synth_unanswerable', 0) + m.get('eval/synth_unanswerable', 0)}, "
              f"reading {m.get('train/synth_reading', 0)} (see {result.outputs.get('quality')})")
    return StepResult([result], detail + "".join(f"\n  warning: {w}" for w in m.get("warnings", [])))


def run_train(ws: Workspace, force: bool) -> StepResult:
    section, retrieval = ws.config.train, ws.config.retrieval
    base, details, results = section.base, [], []
    for stage in section.stages:
        if stage not in TRAINABLE:
            raise DomainlmError(f"{CONFIG_FILE}: train.stages: '{stage}' is not cpt or sft (dpo/kto come from feedback)")
        data = [ws.layout.clean_jsonl] if stage == "cpt" else ws.sft_data()
        if not data:
            # Nothing to fine-tune on is a result, not a failure: the report says so, the line goes on.
            details.append(f"{stage} skipped: no task files and no synthesized items to train on")
            continue
        # Retrieval-augmented sft: the model learns to read the passages the tuned+kb variant is given.
        kb = str(ws.layout.kb) if stage == "sft" and retrieval.train else None
        cfg = section.stage_config(stage, seed=ws.config.seed, kb=kb, kb_k=retrieval.k)
        if cfg.lr == "auto" and cfg.sandbox is None:
            # the workspace's own sandbox fit: `domainlm sandbox fit SWEEP --out ARTIFACTS/sandbox/fit`
            cfg.sandbox = str(recommendation_path(None, ws.layout.artifacts))
        result = train(base, data, ws.layout.model(stage), cfg, force=force)
        m = result.metrics
        loss = m.get("eval_loss_end") if m.get("eval_loss_end") is not None else m.get("train_loss")
        details.append(f"{stage} {m.get('steps')} steps" + (f", loss {loss:.3f}" if isinstance(loss, float) else ""))
        if "sandbox_predicted_loss" in m:
            actual = m.get("actual_eval_loss_per_byte")
            details.append(f"{stage} sandbox-predicted loss {m['sandbox_predicted_loss']:.3f} nats/byte, actual "
                           + (f"{actual:.3f}" if actual is not None else f"not comparable ({m['sandbox_not_comparable']})"))
        results.append(result)
        base = str(result.outputs["model"])
    return StepResult(results, "; ".join(details))


def speed_prompts(suites: list[str], n: int = 4) -> list[list[dict]]:
    """Conversations the compression gate times decoding on: the first questions of the workspace's own
    eval suites, so tokens/s is measured on the prompts this model will be asked."""
    questions = [item["question"] for suite in suites for item in load_suite(suite).items if item.get("question")]
    return [[{"role": "user", "content": q}] for q in questions[:n]]


def run_compress(ws: Workspace, force: bool) -> StepResult:
    suites = [str(s) for s in ws.eval_suites()]
    if not suites:
        return StepResult([], "skipped: no eval items for the quality gate")
    c = ws.config
    data = [str(p) for p in ws.sft_data()]
    prompts = speed_prompts(suites)
    details, results = [], []
    for target in c.compress.targets:
        cfg = c.compress.stage_config(target, seed=c.seed, suites=suites, data=data, batch_size=c.eval.batch_size,
                                      eval_limit=c.eval.limit)
        try:
            result = compress(str(ws.tuned_model()), ws.layout.compressed(target), cfg, force=force,
                              speed_prompts=prompts)
        except GateRefused as refused:
            # A refusal is a result of the line, not a failure of it: the artifact stays aside, gate.json
            # says why, the report shows it, and eval goes on without that variant. With no manifest
            # written, the next build tries the target again.
            details.append(f"{target} refused by the quality gate (see {refused.gate})")
            continue
        retention = result.metrics.get("retention")
        details.append(f"{target} retention {retention:.3f}" if isinstance(retention, float) else target)
        results.append(result)
    return StepResult(results, "; ".join(details))


def run_eval(ws: Workspace, force: bool) -> StepResult:
    suites = [str(s) for s in ws.eval_suites()]
    if not suites:
        return StepResult([], "skipped: nothing to evaluate (no task files, and synth made no eval items)")
    e = ws.config.eval
    config = e.stage_config(suites=suites, variants=variants(ws), kb_k=ws.config.retrieval.k)
    models = evaluate(config, ws.layout.eval, force=force)
    reader = extractive_eval(ws.layout.kb, suites, ws.layout.eval_extractive, seed=e.seed, limit=e.limit, force=force)
    scores = {**models.metrics["scores"], "kb-extractive": reader.metrics["score"]}
    return StepResult([models, reader], ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))


def run_report(ws: Workspace, force: bool) -> StepResult:
    # After a change of base, old vs new first: the line report shows it as one of its sections.
    snapshot = active_snapshot(ws)
    comparison = write_comparison(ws, snapshot, force=force) if snapshot else None
    result = write_line_report(ws, force=force, rebase=comparison)
    return StepResult([result], str(result.outputs["report"]))


STEPS: dict[str, Callable[[Workspace, bool], StepResult]] = {
    "clean": run_clean,
    "kb": run_kb,
    "synth": run_synth,
    "train": run_train,
    "compress": run_compress,
    "eval": run_eval,
    "report": run_report,
}


def enabled(ws: Workspace, stage: str) -> bool:
    if stage == "synth":
        return ws.config.synth.enabled
    if stage == "train":
        return bool(ws.config.train.stages)
    if stage == "compress":
        return bool(ws.config.compress.targets) and bool(ws.config.train.stages)
    return True


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------


def build(
    config_path: str | Path | None = None,
    overrides: list[str] | tuple = (),
    *,
    until: str | None = None,
    from_: str | None = None,
    force: bool = False,
    console: Console | None = None,
    feedback: dict | None = None,
) -> BuildResult:
    """Run the line on a workspace. ``from_``/``until`` bound the stages run; earlier stages' artifacts
    must exist. A failure stops the line with the stage named; finished artifacts stay as they are, except
    after a change of base, when the old line is put back (``feedback``: what :func:`rebase` added, recorded
    in the snapshot)."""
    console = console or Console(stderr=True)
    ws = load_workspace(config_path, overrides)
    for name, value in (("--from", from_), ("--until", until)):
        if value is not None and value not in STAGES:
            raise DomainlmError(f"{name} '{value}': expected one of {', '.join(STAGES)}")
    first = STAGES.index(from_) if from_ else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    if first > last:
        raise DomainlmError(f"--from {from_} comes after --until {until}")
    problems, notes = check_workspace(ws)
    if problems:
        more = f" (and {len(problems) - 1} more; run `domainlm config`)" if len(problems) > 1 else ""
        raise DomainlmError(f"{CONFIG_FILE}: {problems[0]}{more}")
    chosen = STAGES[first : last + 1]
    console.print(f"[bold]domainlm build[/] {ws.root}: {' → '.join(s for s in chosen if enabled(ws, s))}")
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    result = BuildResult(root=ws.root)
    if "train" in chosen and enabled(ws, "train"):
        result.rebase = begin_rebase(ws, feedback)
        if result.rebase is not None:
            console.print(f"new base {ws.config.train.base}: the line built on {read_state(result.rebase)['old_base']} "
                          f"is kept in {result.rebase / 'old'}", highlight=False)
    try:
        _run_stages(ws, chosen, force, console, result)
    except BaseException as exc:  # Ctrl-C included: the old line must not stay half replaced
        if result.rebase is not None:
            abort_rebase(ws, result.rebase, str(exc))
            console.print(f"the line built on the old base is back in place; the partial new one is in "
                          f"{result.rebase / 'failed'}", highlight=False)
        raise
    if result.rebase is not None:
        finish_rebase(result.rebase)
    return result


def _run_stages(ws: Workspace, chosen: tuple[str, ...], force: bool, console: Console, result: BuildResult) -> None:
    for index, stage in enumerate(chosen, start=1):
        if not enabled(ws, stage):
            result.outcomes.append(StageOutcome(stage, "off", 0.0))
            continue
        started = time.perf_counter()
        with console.status(f"[{index}/{len(chosen)}] {stage} …"):
            try:
                step = STEPS[stage](ws, force)
            except DomainlmError as exc:
                raise DomainlmError(f"build stopped at stage '{stage}': {exc}", exc.exit_code) from None
            except Exception as exc:  # a bug or a library error: still name the stage, keep the cause
                raise DomainlmError(f"build stopped at stage '{stage}': {type(exc).__name__}: {exc}", 1) from exc
        outcome = StageOutcome(stage, "ran" if step.ran else "cached", time.perf_counter() - started, step.detail)
        result.outcomes.append(outcome)
        console.print(f"[{index}/{len(chosen)}] {stage:<9} {outcome.status:<6} {outcome.seconds:7.1f}s  {step.detail}")
        if stage == "report":
            result.report = Path(step.detail)


# --------------------------------------------------------------------------------------------------
# Rebase: the same line on a new base model
# --------------------------------------------------------------------------------------------------


@dataclass
class RebaseResult:
    build: BuildResult
    snapshot: Path
    comparison: Path | None  # rebase.json (None when the build stopped before its report)
    config_written: bool  # domainlm.yaml now names the new base
    comments_kept: bool = True


def rebase(
    config_path: str | Path | None,
    new_base: str,
    overrides: list[str] | tuple = (),
    *,
    registry: str | Path | None = None,
    keep_old: bool = False,
    force: bool = False,
    console: Console | None = None,
) -> RebaseResult:
    """Rebuild the line on ``new_base`` with the same data, suites and seeds (plus, with ``registry``, the
    feedback the serving model's promoted flywheel turns trained on), and compare old and new.

    Everything is checked before anything moves: a bad spec, the same base, a line never built are one line
    each, and the workspace is untouched. On success ``domainlm.yaml`` is moved to ``new_base`` (and to the
    feedback folder) — written only then, so a failed rebase leaves a workspace that still says, and is,
    the old line. ``keep_old`` builds and compares but keeps the workspace on the old line (the new one is
    kept in the snapshot's ``new/``)."""
    console = console or Console(stderr=True)
    path = Path(config_path) if config_path else find_config()
    ws = load_workspace(path, overrides)
    path = ws.root / CONFIG_FILE
    try:
        parse_spec(new_base)
    except DomainlmError as exc:
        raise DomainlmError(f"rebase: {exc}") from None
    old = built_base(ws)
    if old is None or not ws.config.train.stages:
        raise DomainlmError(f"rebase: {ws.root} has no trained line to rebase; run `domainlm build` first")
    if same_base(old, new_base):
        raise DomainlmError(f"rebase: the line is already built on {new_base}")
    changes: dict[tuple[str, ...], object] = {("train", "base"): new_base}
    problems, _ = check_workspace(load_workspace(path, [*overrides, _override(changes)[0]]))
    if problems:  # what build would refuse, refused before the registry is read or anything written
        raise DomainlmError(f"rebase: {CONFIG_FILE}: {problems[0]}")
    feedback, written = None, None
    if registry is not None:
        written = feedback_dir(ws.layout, time.strftime("%Y%m%d-%H%M%S"))
        feedback = accepted_feedback(registry, written)
        if feedback["rows"]:
            # the new folder replaces the one an earlier rebase added: a promoted turn's rows appear once
            kept = [t for t in ws.config.tasks.train if not is_feedback_dir(ws.layout, ws.path(t))]
            changes[("tasks", "train")] = [*kept, _relative(written, ws.root)]
    try:
        result = build(path, [*overrides, *_override(changes)], force=force, console=console, feedback=feedback)
    except BaseException:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)  # nothing half written: the rows go with the failed build
        raise
    if result.rebase is None:  # begin() saw no change of base: cannot happen after the checks above
        raise DomainlmError(f"rebase: no snapshot was taken of the line built on {old}")
    comparison = result.rebase / "rebase.json"
    comparison = comparison if comparison.is_file() else None
    if keep_old:
        keep_old_line(ws, result.rebase)
        console.print(f"--keep-old: the workspace stays on {old}; the line built on {new_base} is in "
                      f"{result.rebase / 'new'}", highlight=False)
        return RebaseResult(result, result.rebase, comparison, config_written=False)
    before = path.read_text(encoding="utf-8")
    text, kept = updated_config_text(before, changes)
    write_text(result.rebase / "domainlm.yaml.before", before)
    write_text(path, text)
    console.print(f"{path}: train.base is now {new_base}" + ("" if kept else " (rewritten without its comments; the "
                  f"previous file is {result.rebase / 'domainlm.yaml.before'})"), highlight=False)
    return RebaseResult(result, result.rebase, comparison, config_written=True, comments_kept=kept)


def _override(changes: dict[tuple[str, ...], object]) -> list[str]:
    # JSON values are YAML values: a spec like `openai:http://h/v1#m` or `2025` stays one string.
    return [f"{'.'.join(key)}={json.dumps(value, ensure_ascii=False)}" for key, value in changes.items()]


def _relative(folder: Path, root: Path) -> str:
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
