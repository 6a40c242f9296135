"""Settings of the sample domain: the ``sample:`` section of domainlm.yaml, ``domainlm sample``'s options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from domainlm.config import Section


class SampleConfig(Section):
    seed: int = Field(0, description="Seed of the generated sample domain; same seed, same bytes.")
    size: Literal["tiny", "small", "medium"] = Field("small", description="tiny | small | medium")
