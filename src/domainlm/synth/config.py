"""Settings of the synth stage: the ``synth:`` section of domainlm.yaml, ``domainlm synth``'s options."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from domainlm.config import Section, validate


class SynthConfig(Section):
    seed: int = 0
    train_phrasings: int = Field(2, ge=1, le=3, description="Train questions per fact (distinct templates).")
    eval_only_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of facts asked only in eval: answerable from the KB, never trained on."
    )
    refusal_per_subject: int = Field(1, ge=0, description="Unanswerable questions per subject.")
    reading_passages: int = Field(
        3, ge=0, description="Passages per reading item (match eval's --kb k); 0 writes no reading items.")
    reading_per_fact: int = Field(3, ge=1, description="Reading items per trained fact (each with another swapped value).")
    teacher: str | None = Field(None, description="Model spec of a teacher that writes extra questions.")
    teacher_questions_per_chunk: int = Field(3, ge=1)
    max_chunks_for_teacher: int = Field(200, ge=1)
    teacher_retries: int = Field(1, ge=0, description="Extra tries for a chunk whose teacher output was not JSON.")


class SynthSection(SynthConfig):
    """The ``synth:`` section: every SynthConfig setting, and whether the line runs synth at all."""

    set_by_line: ClassVar[dict[str, str]] = {"seed": "the top-level seed", "reading_passages": "retrieval.k and retrieval.train"}

    enabled: bool = Field(True, description="Generate knowledge QA and refusal items from the knowledge base.")

    def stage_config(self, *, seed: int, reading_passages: int) -> SynthConfig:
        settings = self.model_dump(include=set(SynthConfig.model_fields))
        return validate(SynthConfig, {**settings, "seed": seed, "reading_passages": reading_passages}, "synth")
