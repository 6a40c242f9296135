"""Compression for the edge: merge, int8/int4, GGUF, distillation, pruning, each behind a quality gate.

``from domainlm.compress import compress, CompressConfig`` is light; torch loads when a target runs.
"""

from domainlm.compress.config import TARGETS, CompressConfig
from domainlm.compress.stage import compress

__all__ = ["TARGETS", "CompressConfig", "compress"]
