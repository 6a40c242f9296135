"""Sweeps: a search space over run configs, run in parallel worker processes, resumable, tabulated.

``SWEEP.yaml``::

    data:
      sources:                       # name -> where the text is and its default mix weight
        industry: {path: sample, weight: 0.8}
        general: {path: ../shared/benchmarks/cmrc2018/cmrc2018_dev.json, weight: 0.2}
    base: {depth: 2, base_width: 64, tokens: 500000, seq_len: 64}   # RunConfig defaults for every run
    search:
      method: grid                   # grid | random | bayes (optuna TPE)
      space:
        lr: [0.003, 0.01, 0.03]
        width: [64, 128]
        mix.industry: [0.5, 0.8]     # mix weights are swept as mix.<source>
    workers: 2

Each run's result is ``runs/<run_id>.json`` (id = hash of its full config), written atomically when the run
ends, so an interrupted sweep re-run skips every finished run. Workers are separate processes (``spawn``:
safe with CUDA); on one GPU they are packed side by side on the same device.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from domainlm.config import load_config, validate
from domainlm.errors import DomainlmError
from domainlm.io import read_json, write_json, write_jsonl, write_text
from domainlm.sandbox.trainer import RunConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Model):
    path: str
    weight: float = Field(1.0, ge=0)


class DataSpec(_Model):
    sources: dict[str, SourceSpec] = Field(..., min_length=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    max_chars: int = Field(0, ge=0, description="Keep at most this many characters per source (0: all).")


class Range(_Model):
    low: float
    high: float
    log: bool = True
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SearchSpec(_Model):
    method: Literal["grid", "random", "bayes"] = "grid"
    trials: int = Field(16, ge=1, description="Runs for random/bayes search (grid runs every point).")
    seed: int = 0
    space: dict[str, list[Any] | Range] = Field(default_factory=dict)


class SweepConfig(_Model):
    name: str = "sweep"
    data: DataSpec
    base: dict[str, Any] = Field(default_factory=dict, description="RunConfig fields shared by every run.")
    search: SearchSpec = Field(default_factory=SearchSpec)
    workers: int = Field(0, ge=0, description="Parallel runs; 0: one per CPU core, or 4 packed on one GPU.")
    threads: int = Field(0, ge=0, description="torch CPU threads per run; 0: cores / workers.")
    device: str = Field("auto", pattern="^(auto|cpu|cuda(:[0-9]+)?)$")

    @model_validator(mode="after")
    def _check_keys(self):
        run_fields = set(RunConfig.model_fields)
        for key in list(self.base) + list(self.search.space):
            if key.startswith("mix."):
                if key[4:] not in self.data.sources:
                    raise ValueError(f"'{key}': no data source named '{key[4:]}'")
            elif key not in run_fields:
                raise ValueError(f"'{key}' is not a run setting (one of {sorted(run_fields)} or mix.<source>)")
        if self.search.method == "grid":
            for key, values in self.search.space.items():
                if isinstance(values, Range):
                    raise ValueError(f"search.space.{key}: grid search needs a list of values, not a range")
        return self


def load_sweep_config(path: str | Path, overrides=()) -> SweepConfig:
    return load_config(path, overrides, model=SweepConfig)


def make_run(cfg: SweepConfig, point: dict[str, Any]) -> RunConfig:
    """The RunConfig of one point of the space: base settings, then the point's values."""
    settings = {k: v for k, v in cfg.base.items() if not k.startswith("mix.")}
    mix = {name: src.weight for name, src in cfg.data.sources.items()}
    for key, value in {**cfg.base, **point}.items():
        if key.startswith("mix."):
            mix[key[4:]] = float(value)
    settings.update({k: v for k, v in point.items() if not k.startswith("mix.")})
    settings["mix"] = mix
    return validate(RunConfig, settings, f"run {point}")


def grid_points(space: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]


def random_points(space: dict[str, list | Range], trials: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(trials):
        point = {}
        for key, spec in space.items():
            if isinstance(spec, Range):
                value = (np.exp(rng.uniform(np.log(spec.low), np.log(spec.high))) if spec.log
                         else rng.uniform(spec.low, spec.high))
                point[key] = int(round(value)) if spec.integer else float(f"{value:.4g}")
            else:
                point[key] = spec[int(rng.integers(len(spec)))]
        points.append(point)
    return points


# ---------------------------------------------------------------------------------------------------
# Running: one function per run (in a worker process), the pool, resumption.
# ---------------------------------------------------------------------------------------------------

FINISHED = ("ok", "diverged")  # a "failed" run (an exception) is retried by the next sweep


def run_one(run_json: dict, point: dict, data_dir: str, device: str, threads: int, out_path: str) -> dict:
    """Worker entry point: train one run and write its result file atomically."""
    import torch

    from domainlm.sandbox.data import load_prepared
    from domainlm.sandbox.trainer import pick_device, train_run

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    cfg = RunConfig.model_validate(run_json)
    record = {"id": cfg.run_id(), "point": point, "config": cfg.model_dump(mode="json")}
    try:
        streams = load_prepared(data_dir, sorted(cfg.mix))
        record.update(train_run(cfg, streams, device=pick_device(device)))
    except Exception as exc:  # one bad run never kills the sweep; it is recorded and retried next time
        record.update({"status": "failed", "val_loss": None, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        torch.set_num_threads(previous_threads)  # in-process runs must not change the caller's setting
    write_json(out_path, record)
    return record


def _finished(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except DomainlmError:
        return None
    return record if record.get("status") in FINISHED else None


def _default_workers(device: str) -> int:
    if device.startswith("cuda") or (device == "auto" and _cuda_available()):
        return 4
    return max(1, os.cpu_count() or 1)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class _Pool:
    """Runs batches of runs in spawn-ed worker processes (or in-process for one worker)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.executor = None
        if workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def map(self, jobs: list[tuple], on_done: Callable[[dict], None]) -> list[dict]:
        if self.executor is None:
            results = []
            for job in jobs:
                results.append(run_one(*job))
                on_done(results[-1])
            return results
        from concurrent.futures import as_completed

        futures = {self.executor.submit(run_one, *job): i for i, job in enumerate(jobs)}
        results: list[dict] = [{}] * len(jobs)
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            on_done(results[futures[future]])
        return results

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | Path,
    *,
    config_dir: str | Path = ".",
    force: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Run every point of the sweep that has no finished result yet; return all results, best first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from domainlm.sandbox.data import prepare_sources

    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, src in cfg.data.sources.items():
        path = Path(src.path)
        sources[name] = path if path.is_absolute() else Path(config_dir) / path
    data_stats = prepare_sources(sources, out_dir / "data", cfg.data.val_fraction, cfg.data.max_chars)
    write_json(out_dir / "data" / "sources.json", data_stats)

    workers = cfg.workers or _default_workers(cfg.device)
    threads = cfg.threads or max(1, (os.cpu_count() or 1) // workers)
    pool = _Pool(workers)
    records: list[dict] = []
    columns = (TextColumn("sandbox sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[last]}"))
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            space = cfg.search.space
            if cfg.search.method == "bayes":
                records = _bayes(cfg, pool, bar, runs_dir, out_dir, threads, force)
            else:
                points = (grid_points(space) if cfg.search.method == "grid"
                          else random_points(space, cfg.search.trials, cfg.search.seed))
                task = bar.add_task("runs", total=len(points), last="")
                records = _run_points(cfg, points, pool, bar, task, runs_dir, out_dir, threads, force)
    finally:
        pool.close()
    return sort_results(records)


def _run_points(cfg, points, pool, bar, task, runs_dir, out_dir, threads, force) -> list[dict]:
    records: dict[str, dict] = {}
    jobs = []
    for point in points:
        run = make_run(cfg, point)
        path = runs_dir / f"{run.run_id()}.json"
        done = None if force else _finished(path)
        if done is not None:
            records[run.run_id()] = done
            bar.advance(task)
        elif run.run_id() not in records and not any(j[0] == run.model_dump(mode="json") for j in jobs):
            jobs.append((run.model_dump(mode="json"), point, str(out_dir / "data"), cfg.device, threads, str(path)))
        else:
            bar.advance(task)  # the same point twice (e.g. random search hit it again)

    def done(record: dict) -> None:
        loss = record.get("val_loss")
        bar.update(task, advance=1, last=f"last: {record['status']} loss={loss}")

    for record in pool.map(jobs, done):
        records[record["id"]] = record
    return [records[make_run(cfg, p).run_id()] for p in points if make_run(cfg, p).run_id() in records]


def _bayes(cfg, pool, bar, runs_dir, out_dir, threads, force) -> list[dict]:
    """Bayesian search with optuna's TPE sampler, in rounds of ``workers`` runs.

    The sampler is seeded, so the same finished history asks the same next points: a re-run asks the
    same run ids again and skips them (resumable like grid and random search).
    """
    try:
        import optuna
    except ImportError:
        raise DomainlmError("search.method 'bayes' needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.search.seed))
    task = bar.add_task("runs", total=cfg.search.trials, last="")
    records = []
    remaining = cfg.search.trials
    while remaining > 0:
        batch = min(remaining, pool.workers)
        trials, points = [], []
        for _ in range(batch):
            trial = study.ask()
            point = {}
            for key, spec in cfg.search.space.items():
                if isinstance(spec, Range):
                    suggest = trial.suggest_int if spec.integer else trial.suggest_float
                    low, high = (int(spec.low), int(spec.high)) if spec.integer else (spec.low, spec.high)
                    point[key] = suggest(key, low, high, log=spec.log)
                else:
                    point[key] = trial.suggest_categorical(key, spec)
            trials.append(trial)
            points.append(point)
        done = _run_points(cfg, points, pool, bar, task, runs_dir, out_dir, threads, force)
        by_id = {r["id"]: r for r in done}
        for trial, point in zip(trials, points, strict=True):
            record = by_id.get(make_run(cfg, point).run_id())
            loss = record.get("val_loss") if record else None
            study.tell(trial, loss if loss is not None else None,
                       state=None if loss is not None else optuna.trial.TrialState.FAIL)
        records.extend(done)
        remaining -= batch
    return records


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------


def sort_results(records: list[dict]) -> list[dict]:
    """Unique runs, best validation loss first, diverged/failed last."""
    unique = {r["id"]: r for r in records}
    return sorted(unique.values(), key=lambda r: (r.get("val_loss") is None, r.get("val_loss") or 0.0))


def load_results(paths) -> list[dict]:
    """Finished run records from sweep folders (their ``runs/``), ``runs/`` folders or result files."""
    records = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            folder = path / "runs" if (path / "runs").is_dir() else path
            files = sorted(folder.glob("*.json"))
        elif path.is_file():
            files = [path]
        else:
            raise DomainlmError(f"{path}: no such sweep folder or result file")
        for file in files:
            record = read_json(file)
            if not isinstance(record, dict) or "config" not in record or "status" not in record:
                raise DomainlmError(f"{file}: not a sandbox run result (no 'config'/'status')")
            records.append(record)
    if not records:
        raise DomainlmError(f"no run results found in {[str(p) for p in paths]}")
    return sort_results(records)


TABLE_COLUMNS = ("id", "status", "val_loss", "width", "depth", "lr", "batch_size", "tokens", "params", "mix")


def table_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        c = r["config"]
        mix = ",".join(f"{k}={v:g}" for k, v in sorted(c.get("mix", {}).items()))
        rows.append({"id": r["id"], "status": r["status"], "val_loss": r.get("val_loss"), "width": c["width"],
                     "depth": c["depth"], "lr": c["lr"], "batch_size": c["batch_size"],
                     "tokens": r.get("tokens", c["tokens"]), "params": r.get("params"), "mix": mix})
    return rows


def write_results(records: list[dict], out_dir: str | Path) -> None:
    """``results.jsonl`` (full records, best first) and ``results.csv`` (the table)."""
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "results.jsonl", records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(table_rows(records))
    write_text(out_dir / "results.csv", buffer.getvalue())


def print_table(records: list[dict], limit: int = 20, title: str = "sandbox runs (best first)") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="right" if column not in ("id", "status", "mix") else "left")
    for row in table_rows(records)[:limit]:
        table.add_row(*("" if row[c] is None else (f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]))
                        for c in TABLE_COLUMNS))
    Console().print(table)
