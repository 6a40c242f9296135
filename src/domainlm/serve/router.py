"""Edge/cloud routing: a small model answers what it is sure of; the rest goes to a bigger one.

Rules, in order:
1. personal data (the clean stage's detector, every type: names, diagnoses, case and admission numbers,
   IDs, cards, phones, plates, addresses...) is handled by the deployment's privacy policy:
   ``keep-on-edge`` (default): the request stays on the edge, whatever else is configured;
   ``redact``: routing goes on as below, and what the cloud model receives has every PII span replaced by
   its placeholder ([NAME], [MEDICAL]...); the edge, on the machine, sees the original;
   ``refuse``: the request is answered 403 naming the types found;
2. ``edge``: everything on the edge; ``cloud``: everything else to the cloud;
3. ``confidence:T``: the edge model answers first; if the geometric-mean probability of its own answer
   tokens is at least ``T`` that answer is served, else the cloud answers. Backends without
   log-probabilities cannot be scored, so their requests go to the cloud.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domainlm.errors import DomainlmError
from domainlm.serve.asgi import ApiError
from domainlm.serve.generation import GenParams, ServedModel

PRIVACY_POLICIES = ("keep-on-edge", "redact", "refuse")


@dataclass(frozen=True)
class RoutePolicy:
    mode: str  # edge | cloud | confidence
    threshold: float = 0.5
    privacy: str = "keep-on-edge"  # keep-on-edge | redact | refuse

    def __post_init__(self):
        if self.privacy not in PRIVACY_POLICIES:
            raise DomainlmError(f"privacy policy '{self.privacy}': expected one of {', '.join(PRIVACY_POLICIES)}")

    @classmethod
    def parse(cls, text: str, privacy: str = "keep-on-edge") -> RoutePolicy:
        text = text.strip()
        if text in ("edge", "cloud"):
            return cls(text, privacy=privacy)
        if text.startswith("confidence"):
            _, _, value = text.partition(":")
            try:
                threshold = float(value) if value else 0.5
            except ValueError:
                raise DomainlmError(f"--route '{text}': threshold must be a number, e.g. confidence:0.5") from None
            if not 0.0 <= threshold <= 1.0:
                raise DomainlmError(f"--route '{text}': threshold must be between 0 and 1")
            return cls("confidence", threshold, privacy)
        raise DomainlmError(f"--route '{text}': expected edge, cloud or confidence[:THRESHOLD]")


@dataclass
class Decision:
    target: str  # "edge" | "cloud"
    reason: str  # "pii" | "policy" | "confident" | "unsure" | "no-logprobs"
    confidence: float | None = None
    edge_answer: str | None = None  # already generated when the edge was asked first
    pii: tuple[str, ...] = ()  # the PII types found in the request
    redact: bool = False  # the cloud model gets the redacted messages


def pii_types(messages: list[dict]) -> tuple[str, ...]:
    """The PII types in the messages' text (every type the detector knows), in detector order."""
    from domainlm.data.pii import PLACEHOLDERS, find_pii

    found = {s.type for text in _texts(messages) for s in find_pii(text)}
    return tuple(t for t in PLACEHOLDERS if t in found)


def contains_pii(messages: list[dict]) -> bool:
    return bool(pii_types(messages))


def _texts(messages: list[dict]):
    """Every piece of text a model would read: string contents and the text parts of multi-part contents."""
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))


def redact_messages(messages: list[dict]) -> list[dict]:
    """A copy of ``messages`` with every PII span in their text replaced by its placeholder."""
    return redact_conversation(messages, [])[0]


def redact_conversation(messages: list[dict], extra: list[str]) -> tuple[list[dict], list[str]]:
    """``messages`` and ``extra`` texts (an answer, say) redacted together: a name anchored in one turn
    (患者王建国) is redacted in every turn and in ``extra`` too."""
    from domainlm.data.pii import redact_texts

    texts: list[str] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    done = iter(redact_texts(texts + list(extra)))
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            m = {**m, "content": next(done)}
        elif isinstance(content, list):
            m = {**m, "content": [{**p, "text": next(done)} if isinstance(p, dict) and isinstance(p.get("text"), str)
                                  else p for p in content]}
        out.append(m)
    return out, list(done)


class RedactingModel:
    """A served model that only ever sees redacted messages (the cloud model under the ``redact`` policy);
    everything else (name, token counts, backend) is the wrapped model's."""

    def __init__(self, model: ServedModel):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def complete(self, messages: list[dict], *args, **kwargs) -> str:
        return self._model.complete(redact_messages(messages), *args, **kwargs)

    def stream(self, messages: list[dict], *args, **kwargs):
        return self._model.stream(redact_messages(messages), *args, **kwargs)

    def prompt_text(self, messages: list[dict], tools: list[dict] | None) -> str:
        return self._model.prompt_text(redact_messages(messages), tools)


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
        found = pii_types(messages)
        if found and self.policy.privacy == "refuse":
            raise ApiError(403, f"this deployment refuses requests with personal data; found: {', '.join(found)}",
                           "pii_refused", "messages")
        if found and self.policy.privacy == "keep-on-edge":
            return Decision("edge", "pii", pii=found)
        decision = self._route(messages, params)
        if found and decision.target == "cloud":
            decision.pii, decision.redact, decision.reason = found, True, "pii-redacted"
        return decision

    def _route(self, messages: list[dict], params: GenParams) -> Decision:
        if self.policy.mode in ("edge", "cloud"):
            return Decision(self.policy.mode, "policy")
        # The edge runs here: it may read the original messages, PII and all.
        answer = self.edge.complete(messages, params)
        confidence = answer_confidence(self.edge, messages, answer, params.tools)
        if confidence is None:
            return Decision("cloud", "no-logprobs", None, answer)
        if confidence >= self.policy.threshold:
            return Decision("edge", "confident", confidence, answer)
        return Decision("cloud", "unsure", confidence, answer)

    def model_for(self, decision: Decision) -> ServedModel:
        if decision.target == "edge":
            return self.edge
        return RedactingModel(self.cloud) if decision.redact else self.cloud
