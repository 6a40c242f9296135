"""Training progress on the terminal: step, loss, tokens/s and time left (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True, console: Console | None = None,
                 label: str = "train"):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task(label, total=total, completed=start, loss="-", tps="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, loss: float, tokens_per_s: float | None) -> None:
        tps = "-" if tokens_per_s is None else f"{tokens_per_s:,.0f}"
        self.progress.update(self.task, completed=step, loss=f"{loss:.4f}", tps=tps)
