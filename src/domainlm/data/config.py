"""Settings of the clean stage: the ``clean:`` section of domainlm.yaml, ``domainlm clean``'s options."""

from __future__ import annotations

from pydantic import Field

from domainlm.config import Section
from domainlm.data.ocr import OcrConfig


class CleanConfig(Section):
    """Configuration of the clean stage (the ``clean:`` section of domainlm.yaml plus CLI options)."""


    recipe: str = Field("default-zh", description="Built-in recipe name or a recipe YAML file.")
    engine: str = Field("local", pattern="^(local|ray)$", description="local | ray")
    workers: int = Field(0, ge=0, description="Worker processes; 0 means one per core.")
    text_field: str = Field("text", description="Text column of jsonl/csv inputs.")
    ocr: OcrConfig = Field(default_factory=OcrConfig, description="OCR of scanned PDF pages and images.")
