"""The whole line: ``build`` runs the configured stages of a workspace in order, each cached by its
manifest; ``demo`` writes the sample domain and builds it with ``tiny`` (or a given base model)."""

from domainlm.pipeline.demo import demo
from domainlm.pipeline.line import STAGES, BuildResult, build

__all__ = ["STAGES", "BuildResult", "build", "demo"]
