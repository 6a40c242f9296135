"""A running server follows its model registry: a promotion or a rollback is served without a restart.

``domainlm flywheel`` promotes by pointing ``REGISTRY/current`` at a new version folder (``rollback`` points it
back). A server started with ``--model REGISTRY/current`` watches where that link points. When it moves,
the new version is loaded beside the serving one (requests keep being answered meanwhile), then swapped in:
requests that started before the swap finish on the old model, the next ones get the new one, and the old
model's generation thread ends once its last request is done. A version that fails to load is reported and
the serving model stays.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("domainlm.serve")


def registry_link(spec: str | None) -> Path | None:
    """``spec`` when it is a model registry's ``current`` link (the flywheel's layout), else None."""
    if not spec:
        return None
    path = Path(spec)
    if path.is_symlink() and (path.parent / "registry.json").is_file():
        return path
    return None


class RegistryWatcher:
    """Swaps ``state.model`` for the version ``link`` points at whenever it changes (``check`` does one look;
    ``start`` looks every ``interval`` seconds on a daemon thread)."""

    def __init__(self, state, link: str | Path, interval: float = 5.0, loader=None):
        self.state = state
        self.link = Path(link)
        self.interval = interval
        self.serving = os.path.realpath(self.link)
        self._loader = loader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _load(self, path: str):
        if self._loader is not None:
            return self._loader(path)
        from domainlm.serve.generation import load_served_model

        return load_served_model(path, self.state.model.name, max_batch=getattr(self.state.model, "max_batch", 16))

    def check(self) -> bool:
        """Swap when the link points elsewhere; True when a new version is now served."""
        with self._lock:
            target = os.path.realpath(self.link)
            if target == self.serving:
                return False
            try:
                new = self._load(target)
            except Exception as exc:  # a broken version must not take the server down
                log.error("model registry: %s failed to load (%s); still serving %s", target, exc, self.serving)
                self.serving = target  # do not retry a broken version every few seconds
                return False
            old, self.state.model = self.state.model, new
            previous, self.serving = self.serving, target
            self.state.metrics.model_swaps.inc()
            log.warning("model registry: now serving %s (was %s)", Path(target).name, Path(previous).name)
            close = getattr(old, "close", None)
            if close is not None:
                close()  # queued generations still run on the old model's thread; then it ends
            return True

    def start(self) -> RegistryWatcher:
        def loop():
            while not self._stop.wait(self.interval):
                self.check()

        self._thread = threading.Thread(target=loop, name="registry-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
