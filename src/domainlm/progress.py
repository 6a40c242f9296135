"""The progress bar long work shows: what it is doing, a bar, done / total, time so far (rich, on stderr).

One helper so every stage's bar looks the same and none writes to stdout, which belongs to a command's
result. Training has its own display (``domainlm.train.progress``: loss, tokens/s, time left).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn


def counting_bar(*extra: ProgressColumn, console: Console | None = None, transient: bool = True) -> Progress:
    """A bar over a known number of items; ``extra`` columns go after the count (e.g. a loss field)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), *extra,
                    console=console or Console(stderr=True), transient=transient)
