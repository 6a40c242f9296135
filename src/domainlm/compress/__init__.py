"""Compression for the edge: merge, int8/int4, GGUF, distillation, pruning, each behind a quality gate.

``from domainlm.compress import compress, CompressConfig, GateRefused`` is light; torch loads when a
target runs. A result the gate (or template parity) refuses raises :class:`GateRefused`.
"""

from domainlm.compress.config import TARGETS, CompressConfig, CompressSection
from domainlm.compress.stage import GateRefused, compress

__all__ = ["TARGETS", "CompressConfig", "CompressSection", "GateRefused", "compress"]
