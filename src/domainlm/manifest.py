"""Manifests and the stage cache: what a stage did, and whether it must run again.

A stage records what it did in ``manifest.json`` beside its outputs: the stage name, every input file
with its sha256, the config, package versions, the seed, metrics, named outputs and wall time. When a
stage is asked to run again with the same inputs and config, :func:`stage_run` says it is up to date and
the stage skips. Every stage returns a :class:`StageResult` built from its run handle, so callers (the
CLI, the line) learn what ran, what was cached and where the outputs are from the return value, never by
reading manifests or file times.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domainlm import __version__
from domainlm.errors import DomainlmError
from domainlm.io import expand_inputs, read_json, sha256_file, sha256_text, write_json

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 2  # 2: named outputs, so a cached stage returns the paths the next stage needs

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
    format: int = Field(1, description="Manifest format; 2 added named_outputs (older manifests re-run once).")
    domainlm_version: str = __version__
    inputs: dict[str, str] = Field(default_factory=dict, description="input path -> sha256")
    config: Any = None
    config_hash: str = ""
    seed: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    named_outputs: dict[str, str] = Field(default_factory=dict, description="name -> path (relative to the stage folder "
                                          "when inside it)")
    metrics: dict[str, Any] = Field(default_factory=dict)
    started: str = ""
    wall_time_s: float = 0.0
    command: list[str] = Field(default_factory=list)


def config_hash(config: Any) -> str:
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
class StageResult:
    """What every stage returns: where it wrote, whether it was cached, its metrics, and its named outputs
    (``outputs["model"]``, ``outputs["artifact"]``, ``outputs["clean"]`` …) so the next stage is handed paths,
    not told to look for them."""

    stage: str
    out_dir: Path
    skipped: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)


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
    named: dict[str, str] = field(default_factory=dict)
    discarded: bool = False

    def discard(self) -> None:
        """End the run without a manifest: its outputs are not a finished stage (e.g. training stopped
        before its last step), so the next call runs it again."""
        self.discarded = True

    def output(self, name: str, *, key: str | None = None) -> Path:
        """Path of an output file in the stage's folder, recorded in the manifest (and named ``key``)."""
        if name not in self.outputs:
            self.outputs.append(name)
        if key is not None:
            self.named[key] = name
        return self.out_dir / name

    def name_output(self, key: str, path: str | Path) -> Path:
        """Name an output the next stage needs (a path inside the stage folder, or anywhere for an artifact
        the stage points to); it is kept in the manifest, so a cached run returns it too."""
        path = Path(path)
        try:
            stored = str(path.relative_to(self.out_dir)) if path.is_absolute() else str(path)
        except ValueError:
            stored = str(path)
        self.named[key] = stored
        return self.resolve(stored)

    def resolve(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.out_dir / path

    def result(self) -> StageResult:
        """The stage's return value; for a cached run, the metrics and outputs its manifest recorded."""
        if self.skipped and self.previous is not None:
            metrics, named = dict(self.previous.metrics), self.previous.named_outputs
        else:
            metrics, named = dict(self.metrics), self.named
        return StageResult(stage=self.stage, out_dir=self.out_dir, skipped=self.skipped, metrics=metrics,
                           outputs={key: self.resolve(value) for key, value in named.items()})


def read_result(out_dir: str | Path) -> StageResult | None:
    """The result a finished stage left in ``out_dir`` (its manifest's metrics and named outputs), or None.

    This is how a caller that did not run a stage in this process (``build --from eval``) learns where its
    outputs are: through the same StageResult the stage returns, never by parsing manifest fields itself.
    A manifest written before named outputs existed is not read (the next build re-runs that stage)."""
    previous = read_manifest(out_dir)
    if previous is None or previous.format < MANIFEST_FORMAT:
        return None
    run = StageRun(stage=previous.stage, out_dir=Path(out_dir), inputs=previous.inputs, config=previous.config,
                   seed=previous.seed, skipped=True, previous=previous)
    return run.result()


def is_up_to_date(out_dir: str | Path, stage: str, inputs: dict[str, str], config: Any) -> Manifest | None:
    """The previous manifest when it was written by the same stage, inputs and config; else None."""
    previous = read_manifest(out_dir)
    if previous is None or previous.stage != stage or previous.format < MANIFEST_FORMAT:
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
    write: bool = True,
) -> Iterator[StageRun]:
    """Run a stage with caching::

        with stage_run("clean", out, inputs=paths, config=cfg) as run:
            if not run.skipped:
                ...write run.output("clean.jsonl", key="clean")...
                run.metrics["kept"] = n
        return run.result()

    On normal exit the manifest is written atomically (last, so a manifest means a finished stage).
    On an exception nothing is written and any previous manifest is removed, because the outputs it
    describes may have been partly replaced. ``run.discard()`` ends the run without a manifest too.
    ``write=False`` decides skipping the same way but touches nothing on disk: the other processes of a
    multi-process run, whose files are rank 0's to write.
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
    if not write:
        yield run
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_FILE
    if manifest_path.exists():
        manifest_path.unlink()
    started = time.time()
    yield run
    if run.discarded:
        return
    manifest = Manifest(
        stage=stage,
        format=MANIFEST_FORMAT,
        inputs=input_hashes,
        config=jsonable,
        config_hash=config_hash(jsonable),
        seed=seed,
        versions=package_versions(),
        outputs=sorted(run.outputs),
        named_outputs=run.named,
        metrics=run.metrics,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        wall_time_s=round(time.time() - started, 3),
        command=list(sys.argv),
    )
    write_json(manifest_path, manifest.model_dump(mode="json"))
