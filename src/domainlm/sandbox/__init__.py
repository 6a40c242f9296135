"""The model sandbox: many small muP-parametrised runs ("a wind tunnel") before one big run.

Modules: ``tokenizer`` (byte-level), ``data`` (corpora and mixes), ``mup_model`` (the small transformer),
``trainer`` (one run), ``sweep`` (search spaces, parallel resumable runs), ``fit`` (scaling laws with
bootstrap intervals), ``capacity`` (knowledge bits per parameter), ``report`` (HTML). Importing this
package never imports torch; the modules that need it import it inside functions or are imported lazily.
"""

from domainlm.sandbox.recommend import (
    Recommendation,
    heldout_tokens_bytes,
    predicted_vs_actual,
    recommendation_path,
    resolve_lr,
)

__all__ = ["Recommendation", "heldout_tokens_bytes", "predicted_vs_actual", "recommendation_path", "resolve_lr"]
