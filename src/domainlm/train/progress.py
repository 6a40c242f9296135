"""Where a training run's progress goes: a rich bar on a terminal, plain lines anywhere else, and trackers.

On a terminal the bar redraws in place. In a CI log, under nohup, through ``| tee`` or in the workers of a
torchrun/Ray job a redrawn bar is either noise or nothing, so there the run prints one plain, flushed line
every ``progress_every`` steps (and at its first and last step)::

    cpt full: step 40/200 loss 2.3141 tok/s 1,234 elapsed 0:00:31 eta 0:02:04

The trackers (``report_to``: TensorBoard, Weights & Biases, MLflow) are the ones accelerate and transformers
already integrate; this module only decides where each one writes, and checks that its package is installed
before a run starts rather than after the model is loaded (accelerate skips a missing one silently).
"""

from __future__ import annotations

import datetime
import importlib.util
import netrc
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from domainlm.errors import DomainlmError

# tracker -> (modules any one of which makes it work, the package to install)
TRACKERS = {
    # accelerate's and transformers' TensorBoard writers take torch's (needs `tensorboard`) or tensorboardX
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
}
# The W&B project and MLflow experiment runs go to unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME say otherwise.
PROJECT = "domainlm"


class TrainProgress:
    """``update(step, loss, tokens_per_s)`` after each optimizer step; a bar on a terminal (or in Jupyter),
    plain lines elsewhere. ``enabled=False`` (every process but the main one) shows nothing."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, console: Console | None = None,
                 label: str = "train", every: int = 10):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.total, self.start, self.every, self.label = total, start, max(1, every), label
        self.plain = not (self.console.is_terminal or self.console.is_jupyter)
        self.started = time.perf_counter()
        self.printed: int | None = None  # the last step a plain line was printed for
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled or self.plain,
            transient=False,
        )
        self.task = self.progress.add_task(label, total=total, completed=start, loss="-", tps="-")

    def __enter__(self):
        self.started = time.perf_counter()
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, loss: float, tokens_per_s: float | None) -> None:
        tps = "-" if tokens_per_s is None else f"{tokens_per_s:,.0f}"
        self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", tps=tps)
        if self.enabled and self.plain and self._due(step):
            self.printed = step
            # print() rather than console.print: rich would wrap the line at 80 columns off a terminal
            print(self.line(step, loss, tokens_per_s), file=self.console.file, flush=True)

    def _due(self, step: int) -> bool:
        # The first step, the last, and the first step at or past each multiple of `every` (TRL calls
        # update only on its logging steps, which need not fall on the multiples).
        if self.printed is None or step >= self.total:
            return step != self.printed
        return step // self.every > self.printed // self.every

    def line(self, step: int, loss: float, tokens_per_s: float | None) -> str:
        elapsed = time.perf_counter() - self.started
        done = step - self.start
        parts = [f"{self.label}: step {step}/{self.total}", f"loss {loss:.4f}"]
        if tokens_per_s is not None:
            parts.append(f"tok/s {tokens_per_s:,.0f}")
        parts.append(f"elapsed {_clock(elapsed)}")
        if done > 0:
            parts.append(f"eta {_clock(elapsed / done * max(self.total - step, 0))}")
        return " ".join(parts)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def check_trackers(report_to: list[str]) -> None:
    """One line naming the package to install, for the first tracker in ``report_to`` that is missing."""
    for name in report_to:
        modules, package = TRACKERS[name]
        if not any(importlib.util.find_spec(module) for module in modules):
            raise DomainlmError(f"report_to {name}: the '{package}' package is not installed "
                                f"(pip install {package}, or pip install 'domainlm[track]')")


def run_name(out: Path, stage: str) -> str:
    """``<out folder>-<stage>-<UTC time>``: a run (a resumed one too) never writes into another's logs."""
    return f"{Path(out).resolve().name}-{stage}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def hyperparameters(config: dict) -> dict:
    """The run config in the types every tracker takes as hyperparameters (lists become comma strings)."""
    return {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in config.items()}


def wandb_settings(out: Path, name: str) -> dict:
    """``wandb.init`` arguments. The user's environment decides (WANDB_MODE, WANDB_DIR, WANDB_API_KEY or
    ``wandb login``); only when it says nothing, and there is no key to log in with, does the run log offline
    into ``out/wandb`` (``wandb sync`` uploads it later) instead of stopping to ask for a key."""
    settings: dict = {"name": name}
    if not os.environ.get("WANDB_DIR"):
        settings["dir"] = str(Path(out).resolve())
    if not os.environ.get("WANDB_MODE") and not _wandb_key():
        settings["mode"] = "offline"
    return settings


def _wandb_key() -> bool:
    """An API key in the environment, or the one ``wandb login`` keeps in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def mlflow_local_store(out: Path) -> str | None:
    """Without MLFLOW_TRACKING_URI, keep the run in ``out/mlruns/mlflow.db`` (MLflow 3 refuses its old folder
    store) rather than in an ``mlflow.db`` wherever the command ran. Returns the artifact folder for a new
    experiment there, or None when the user's tracking URI decides."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    import mlflow

    folder = (Path(out) / "mlruns").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    return str(folder / "artifacts")


def accelerate_trackers(report_to: list[str], out: Path, name: str) -> list:
    """Trackers for ``Accelerator(log_with=...)``: TensorBoard under ``out/runs/<name>``, W&B and MLflow as
    :func:`wandb_settings` and :func:`mlflow_local_store` say. Built here rather than named, because accelerate
    would use one project name for the TensorBoard folder, the W&B project and the MLflow experiment."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    trackers: list = []
    for tracker in report_to:
        if tracker == "tensorboard":
            trackers.append(TensorBoardTracker(name, str(Path(out) / "runs")))
        elif tracker == "wandb":
            trackers.append(WandBTracker(os.environ.get("WANDB_PROJECT") or PROJECT, **wandb_settings(out, name)))
        elif tracker == "mlflow":
            # MLflowTracker itself lets MLFLOW_EXPERIMENT_NAME / MLFLOW_RUN_ID / MLFLOW_TAGS win
            trackers.append(MLflowTracker(PROJECT, logging_dir=mlflow_local_store(out), run_name=name))
    return trackers


def transformers_reporting(report_to: list[str], out: Path, name: str) -> tuple[list[str], list]:
    """``report_to`` and extra callbacks for a transformers/TRL trainer, writing where the loop's trackers do.

    TensorBoard gets its own callback with a writer in ``out/runs/<name>`` (the trainer would write under its
    checkpoint folder); W&B and MLflow are started here, on the main process, with the same settings as the
    loop's, and transformers' callbacks then log into the run already started. Call :func:`finish_reporting`
    after training. Other processes than the main one (RANK > 0) report nothing."""
    reported, callbacks = [], []
    if int(os.environ.get("RANK", "0")) != 0:
        return reported, callbacks
    for tracker in report_to:
        if tracker == "tensorboard":
            from transformers.integrations import TensorBoardCallback

            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # torch's writer needs the tensorboard package; tensorboardX is the other one
                from tensorboardX import SummaryWriter

            callbacks.append(TensorBoardCallback(SummaryWriter(str(Path(out) / "runs" / name))))
        elif tracker == "wandb":
            import wandb

            wandb.init(project=os.environ.get("WANDB_PROJECT") or PROJECT, **wandb_settings(out, name))
            reported.append("wandb")
        elif tracker == "mlflow":
            import mlflow

            artifacts = mlflow_local_store(out)
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT
            if mlflow.get_experiment_by_name(experiment) is None:
                mlflow.create_experiment(experiment, artifact_location=artifacts)
            mlflow.set_experiment(experiment)
            reported.append("mlflow")
    return reported, callbacks


def finish_reporting(report_to: list[str]) -> None:
    """End the W&B and MLflow runs :func:`transformers_reporting` started (and transformers may have left
    open), so the next training in this process starts its own."""
    if "wandb" in report_to:
        import wandb

        wandb.finish()
    if "mlflow" in report_to:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run()
