"""The interface every backend offers, and small helpers they share."""

from __future__ import annotations

import time
from typing import Any

from domainlm.errors import DomainlmError


class LanguageModel:
    """One interface over every backend.

    ``generate`` completes raw prompts, ``chat`` applies the model's own chat template, ``loglikelihood``
    scores continuations (only where ``supports_logprobs``). Greedy results (temperature 0) do not depend
    on the batch size. ``info`` describes the network for FLOPs and memory estimates.
    """

    supports_logprobs: bool = False
    info: dict[str, Any]

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        seed: int = 0,
    ) -> list[str]:
        raise NotImplementedError

    def chat(
        self,
        conversations: list[list[dict]],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        tools: list[dict] | None = None,
        response_format: dict | None = None,
        seed: int = 0,
    ) -> list[str]:
        raise NotImplementedError

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[float]:
        raise DomainlmError(f"model '{self.info.get('spec')}' ({self.info.get('backend')}) gives no log-probabilities")

    def decode_ids(self, prompt_ids: list[int], new_tokens: int) -> int:
        """Greedy-decode exactly ``new_tokens`` tokens after ``prompt_ids`` (end-of-turn tokens do not stop
        it); returns how many were decoded. Only backends that run the network here can be timed."""
        raise DomainlmError(f"model '{self.info.get('spec')}' ({self.info.get('backend')}) cannot time its decoding")

    def decode_speed(self, prompt_ids: list[list[int]], new_tokens: int = 48) -> float:
        """Greedy tokens/s, one request at a time (the edge case), exactly ``new_tokens`` per prompt.

        End-of-turn tokens are ignored so every backend decodes the same number of tokens whatever the model
        chose to say; prefill is included, as a user waits for it too."""
        self.decode_ids(prompt_ids[0][:8], new_tokens)  # warm-up: first-call allocations are not speed
        started = time.perf_counter()
        produced = sum(self.decode_ids(ids, new_tokens) for ids in prompt_ids)
        return produced / max(time.perf_counter() - started, 1e-9)

    def close(self) -> None:
        """Release resources (servers, GPU memory). Safe to call twice."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.get('spec')!r}>"


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """Text up to (not including) the earliest stop string."""
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        if s:
            at = text.find(s)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]
