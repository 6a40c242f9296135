"""Data governance: raw documents in, a clean, deduplicated, redacted corpus out, with a trace of every
change and a data card. ``clean(inputs, out_dir, config)`` is the stage; ``domainlm clean`` its CLI.

Every other way documents come in (``kb build`` of raw files, ``kb add``, ``chatfile``) runs the same recipe
on each unit through :func:`process_unit` (and reads files with the same readers), so the clean recipe and PII policy apply on every path.
"""

from domainlm.data.config import CleanConfig
from domainlm.data.ingest import (
                                  IMAGE_EXTS,
                                  Rejected,
                                  Unit,
                                  decode_bytes,
                                  doc_id,
                                  iter_units,
                                  named_inputs,
                                  read_docx,
                                  read_html,
                                  read_pdf,
)
from domainlm.data.ocr import OcrConfig, read_image
from domainlm.data.pii import PLACEHOLDERS, find_pii, redact_pii, redact_texts
from domainlm.data.quality import detect_language
from domainlm.data.recipe import Recipe, load_recipe
from domainlm.data.stage import clean, process_unit
from domainlm.data.tables import ROW_LINE, Table, table_lines

__all__ = ["IMAGE_EXTS", "PLACEHOLDERS", "ROW_LINE", "CleanConfig", "OcrConfig", "Recipe", "Rejected", "Table", "Unit",
           "clean", "decode_bytes", "detect_language", "doc_id", "find_pii", "iter_units", "load_recipe", "named_inputs",
           "process_unit", "read_docx", "read_html", "read_image", "read_pdf", "redact_pii", "redact_texts",
           "table_lines"]
