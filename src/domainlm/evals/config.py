"""Settings of the eval stage: the ``eval:`` section of domainlm.yaml, ``domainlm eval``'s options."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from domainlm.config import Section, validate
from domainlm.errors import DomainlmError


def parse_variant(text: str) -> tuple[str, str, str | None]:
    """``tuned+kb=out/model@out/kb`` → (name, model spec, kb path): the ``--variants`` syntax."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise DomainlmError(f"--variants '{text}': expected NAME=MODEL or NAME=MODEL@KB, e.g. base+kb=tiny@artifacts/kb")
    model, _, kb = rest.rpartition("@") if "@" in rest else (rest, "", "")
    return name.strip(), model.strip(), (kb.strip() or None)


class Variant(Section):
    """One named model to score, optionally with a knowledge base: ``tuned+kb`` = the tuned model + ``kb/``.

    The command line writes one as ``NAME=MODEL[@KB]``; Python callers (the line) pass the fields."""

    name: str
    model: str
    kb: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        if isinstance(data, str):
            name, model, kb = parse_variant(data)
            return {"name": name, "model": model, "kb": kb}
        return data

    def __str__(self) -> str:
        return f"{self.name}={self.model}" + (f"@{self.kb}" if self.kb else "")


class EvalConfig(Section):
    """What one ``domainlm eval`` run is asked to do (recorded in its manifest)."""

    model: str | None = Field(None, description="Model spec; None when re-scoring stored predictions.")
    kb: str | None = None
    suites: list[str] = Field(default_factory=list)
    predictions: str | None = None
    variants: list[Variant] = Field(default_factory=list, description="Named models to compare (NAME=MODEL or NAME=MODEL@KB).")
    general: list[str] = Field(default_factory=list, description="Suites that form the general-ability panel.")
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    kb_k: int = Field(3, ge=1, description="Passages retrieved from --kb for each item.")
    limit: int = Field(0, ge=0, description="At most this many items per task (a seeded sample); 0 = all.")


class EvalSection(EvalConfig):
    """The ``eval:`` section: how the line scores every model it made."""

    set_by_line: ClassVar[dict[str, str]] = {
        "model": "the line's models", "kb": "the line's knowledge base", "suites": "tasks.eval and synth's eval items",
        "predictions": "the line's models", "variants": "the line's models", "kb_k": "retrieval.k"}

    def stage_config(self, *, suites: list[str], variants: list[Variant], kb_k: int) -> EvalConfig:
        settings = self.model_dump(include=set(EvalConfig.model_fields))
        return validate(EvalConfig, {**settings, "suites": suites, "variants": variants, "kb_k": kb_k}, "eval")
