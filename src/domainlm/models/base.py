"""The interface every backend offers, and small helpers they share."""

from __future__ import annotations

from typing import Any


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
        from domainlm.errors import DomainlmError

        raise DomainlmError(f"model '{self.info.get('spec')}' ({self.info.get('backend')}) gives no log-probabilities")

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
