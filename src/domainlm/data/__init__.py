"""Data governance: raw documents in, a clean, deduplicated, redacted corpus out, with a trace of every
change and a data card. ``clean(inputs, out_dir, config)`` is the stage; ``domainlm clean`` its CLI."""

from domainlm.data.pii import find_pii, redact_pii
from domainlm.data.pipeline import CleanConfig, CleanResult, clean

__all__ = ["CleanConfig", "CleanResult", "clean", "find_pii", "redact_pii"]
