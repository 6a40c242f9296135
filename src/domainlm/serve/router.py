"""Edge/cloud routing: a small model answers what it is sure of; the rest goes to a bigger one.

Rules, in order:
1. a request whose messages contain personal data (the clean stage's PII detector) stays on the edge,
   whatever else is configured: it never leaves the machine;
2. ``edge``: everything on the edge; ``cloud``: everything else to the cloud;
3. ``confidence:T``: the edge model answers first; if the geometric-mean probability of its own answer
   tokens is at least ``T`` that answer is served, else the cloud answers. Backends without
   log-probabilities cannot be scored, so their requests go to the cloud.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domainlm.errors import DomainlmError
from domainlm.serve.generation import GenParams, ServedModel


@dataclass(frozen=True)
class RoutePolicy:
    mode: str  # edge | cloud | confidence
    threshold: float = 0.5

    @classmethod
    def parse(cls, text: str) -> RoutePolicy:
        text = text.strip()
        if text in ("edge", "cloud"):
            return cls(text)
        if text.startswith("confidence"):
            _, _, value = text.partition(":")
            try:
                threshold = float(value) if value else 0.5
            except ValueError:
                raise DomainlmError(f"--route '{text}': threshold must be a number, e.g. confidence:0.5") from None
            if not 0.0 <= threshold <= 1.0:
                raise DomainlmError(f"--route '{text}': threshold must be between 0 and 1")
            return cls("confidence", threshold)
        raise DomainlmError(f"--route '{text}': expected edge, cloud or confidence[:THRESHOLD]")


@dataclass
class Decision:
    target: str  # "edge" | "cloud"
    reason: str  # "pii" | "policy" | "confident" | "unsure" | "no-logprobs"
    confidence: float | None = None
    edge_answer: str | None = None  # already generated when the edge was asked first


def contains_pii(messages: list[dict]) -> bool:
    from domainlm.data import find_pii

    return any(isinstance(m.get("content"), str) and find_pii(m["content"]) for m in messages)


def answer_confidence(model: ServedModel, messages: list[dict], answer: str, tools: list[dict] | None) -> float | None:
    """Geometric-mean token probability of ``answer`` under ``model`` (None without log-probs)."""
    if not getattr(model.backend, "supports_logprobs", False) or not answer:
        return None
    prompt = model.prompt_text(messages, tools)
    total = model.run(model.backend.loglikelihood, [(prompt, answer)])[0]
    return math.exp(total / max(1, model.count_tokens(answer)))


class Router:
    def __init__(self, edge: ServedModel, cloud: ServedModel, policy: RoutePolicy):
        self.edge, self.cloud, self.policy = edge, cloud, policy

    def decide(self, messages: list[dict], params: GenParams) -> Decision:
        if contains_pii(messages):
            return Decision("edge", "pii")
        if self.policy.mode in ("edge", "cloud"):
            return Decision(self.policy.mode, "policy")
        answer = self.edge.complete(messages, params)
        confidence = answer_confidence(self.edge, messages, answer, params.tools)
        if confidence is None:
            return Decision("cloud", "no-logprobs", None, answer)
        if confidence >= self.policy.threshold:
            return Decision("edge", "confident", confidence, answer)
        return Decision("cloud", "unsure", confidence, answer)

    def model_for(self, decision: Decision) -> ServedModel:
        return self.edge if decision.target == "edge" else self.cloud
