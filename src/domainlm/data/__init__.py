"""Data governance: raw documents in, a clean, deduplicated, redacted corpus out, with a trace of every
change and a data card. ``clean(inputs, out_dir, config)`` is the stage; ``domainlm clean`` its CLI.

Every other way documents come in (``kb build`` of raw files, ``kb add``, ``chatfile``) runs the same recipe
on each unit through :func:`process_unit` (and reads files with the same readers), so the clean recipe and PII policy apply on every path.
"""

from domainlm.data.config import CleanConfig
from domainlm.data.ingest import Rejected, Unit, decode_bytes, doc_id, iter_units, named_inputs, read_html, read_pdf
from domainlm.data.pii import find_pii, redact_pii
from domainlm.data.quality import detect_language
from domainlm.data.recipe import Recipe, load_recipe
from domainlm.data.stage import clean, process_unit

__all__ = ["CleanConfig", "Recipe", "Rejected", "Unit", "clean", "decode_bytes", "detect_language", "doc_id",
           "find_pii", "iter_units", "load_recipe", "named_inputs", "process_unit", "read_html", "read_pdf",
           "redact_pii"]
