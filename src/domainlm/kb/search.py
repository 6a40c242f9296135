"""Searching a knowledge base: open a generation read-only, score chunks with BM25 and dense vectors, fuse.

:func:`open_kb` opens the generation that ``kb.json`` names (see :mod:`domainlm.kb.store` for the layout)
with its BM25 index and vectors memory-mapped, so many processes can read one KB while a writer replaces
it. Hybrid search fuses the two rankings by reciprocal rank (default) or by a weighted sum of scores;
ties are broken by chunk id so that results do not depend on the order chunks were added in.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domainlm.errors import DomainlmError
from domainlm.io import iter_jsonl, sha256_file
from domainlm.kb import ann
from domainlm.kb.config import KBConfig
from domainlm.kb.embed import load_embedder
from domainlm.kb.query import analyze_query, expand
from domainlm.kb.query import rerank as rerank_values
from domainlm.kb.store import KB_FILE, USER_TERMS, read_info, remove_leftovers_if_idle
from domainlm.kb.text import Tokenizer, read_terms

MODES = ("bm25", "dense", "hybrid")
VALUE_DEPTH = 20  # how many first results query handling re-orders (benchmarks/kb_hard_negatives.py)


@dataclass
class Hit:
    """One search result with its provenance: the chunk is ``text == document_text[start:end]``."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    headings: list[str]
    start: int
    end: int
    text: str
    score: float
    rank: int
    bm25: float | None = None
    dense: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)



def read_generation(gdir: Path, info: dict) -> tuple[list[dict], list[dict], list[str]]:
    """A generation's chunks, documents and mined terms, every file checked against ``kb.json``'s hashes
    (either store: the folder is the source of truth for citations and governance)."""
    for rel, digest in info.get("files", {}).items():
        file = gdir / rel
        if not file.is_file():
            # errno + filename, so open_kb's message names the missing file
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(file))
        if sha256_file(file) != digest:
            raise DomainlmError(f"{file}: corrupted (checksum mismatch); rebuild with `domainlm kb build --force`")
    try:
        chunks = list(iter_jsonl(gdir / "chunks.jsonl"))
        documents = list(iter_jsonl(gdir / "documents.jsonl"))
        mined_terms = [t for t in (gdir / "mined_terms.txt").read_text(encoding="utf-8").splitlines() if t]
    except (OSError, ValueError, KeyError) as exc:
        raise DomainlmError(f"{gdir}: unreadable index ({type(exc).__name__}: {exc}); rebuild with `domainlm kb build --force`") from None
    if len(chunks) != info["n_chunks"]:
        raise DomainlmError(f"{gdir}: index files disagree with {KB_FILE}; rebuild with `domainlm kb build --force`")
    return chunks, documents, mined_terms


class KnowledgeBase:
    """A knowledge base opened read-only. Use :func:`open_kb`."""

    def __init__(self, path: Path, info: dict):
        import bm25s

        self.path = path
        self.info = info
        self.config = KBConfig.model_validate(info["config"])
        gdir = path / info["generation"]
        self.chunks, self.documents, self.mined_terms = read_generation(gdir, info)
        try:
            self.bm25 = bm25s.BM25.load(str(gdir / "bm25"), mmap=True) if self.chunks else None
            self.vectors = np.load(gdir / "dense.npy", mmap_mode="r") if (gdir / "dense.npy").is_file() else None
            # From ann.ANN_THRESHOLD chunks up a generation holds an HNSW graph; below, search is exact, and
            # also above where calibration found the graph no faster than exact search at the target recall.
            ann_info = info.get("ann") or {}
            graph = (gdir / ann.INDEX_FILE).is_file() and ann_info.get("search", "graph") == "graph"
            self.ann = ann.load_index(gdir / ann.INDEX_FILE, view=True, expansion_search=ann_info.get("expansion_search")) if graph else None
            if self.ann is not None:
                row_keys = np.load(gdir / ann.KEYS_FILE)
                self._ann_order = np.argsort(row_keys)
                self._ann_sorted = row_keys[self._ann_order]
        except DomainlmError:
            raise
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise DomainlmError(f"{gdir}: unreadable index ({type(exc).__name__}: {exc}); rebuild with `domainlm kb build --force`") from None
        if self.vectors is not None and self.vectors.shape != (len(self.chunks), info["dim"]):
            raise DomainlmError(f"{gdir}: index files disagree with {KB_FILE}; rebuild with `domainlm kb build --force`")
        self._tokenizer = None
        self._embedder = None
        self._terms_mtime: float | None = None
        self._query_vectors: dict[str, np.ndarray] = {}
        self.query_cache_size = 256

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def tokenizer(self):
        """jieba with the mined terms plus the user's terms.txt (re-read when the file changes)."""
        user = self.path / USER_TERMS
        mtime = user.stat().st_mtime if user.is_file() else None
        if self._tokenizer is None or mtime != self._terms_mtime:
            self._tokenizer = Tokenizer(self.mined_terms + read_terms(user))
            self._terms_mtime = mtime
        return self._tokenizer

    @property
    def embedder(self):
        if self._embedder is None and self.vectors is not None:
            self._embedder = load_embedder(self.config.embedder)
        return self._embedder

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.vectors is not None else ("bm25",)

    def bm25_scores(self, query: str) -> np.ndarray:
        scores = np.zeros(len(self.chunks), dtype=np.float32)
        if self.bm25 is None:
            return scores
        tokens = [t for t in self.tokenizer.tokens(query) if t in self.bm25.vocab_dict]
        if tokens:
            scores = np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)
        return scores

    def doc_freq(self, token: str) -> int:
        """How many chunks contain ``token`` (read from the BM25 index's column pointers)."""
        if self.bm25 is None:
            return 0
        tid = self.bm25.vocab_dict.get(token)
        indptr = self.bm25.scores["indptr"]
        return int(indptr[tid + 1] - indptr[tid]) if tid is not None and tid + 1 < len(indptr) else 0

    def idf(self, tokens: list[str]) -> dict[str, float]:
        """BM25 idf of each token; a token no chunk contains gets the largest idf (a question term the
        KB never mentions weighs the most)."""
        n = len(self.chunks)
        return {t: float(np.log(1 + (n - (df := self.doc_freq(t)) + 0.5) / (df + 0.5))) for t in tokens}

    def dense_scores(self, query: str, depth: int | None = None, also: np.ndarray | None = None) -> np.ndarray:
        """Cosine of ``query`` with every chunk. With an ANN index and a ``depth``, only the ``depth``
        nearest chunks the graph finds, plus the rows in ``also``, are scored (exactly); the rest are -inf."""
        if self.vectors is None or not len(self.chunks):
            return np.zeros(len(self.chunks), dtype=np.float32)
        qv = self._query_vectors.get(query)
        if qv is None:
            qv = self.embedder.queries([query])[0]
            # A small cache: ask() and hybrid search of the same question embed it once.
            if len(self._query_vectors) >= self.query_cache_size:
                self._query_vectors.pop(next(iter(self._query_vectors)))
            self._query_vectors[query] = qv
        if self.ann is None or depth is None:
            return np.asarray(self.vectors @ qv, dtype=np.float32)
        rows = ann.rows_for(ann.search(self.ann, qv, depth), self._ann_sorted, self._ann_order)
        rows = np.union1d(rows, also) if also is not None else np.unique(rows)  # sorted: a forward read of the mmap
        scores = np.full(len(self.chunks), -np.inf, dtype=np.float32)
        scores[rows] = np.asarray(self.vectors[rows] @ qv, dtype=np.float32)
        return scores

    def search(
        self, query: str, k: int = 5, mode: str = "hybrid", *, fusion: str | None = None, rerank: int = 0,
        query_handling: bool | None = None,
    ) -> list[Hit]:
        """Top ``k`` chunks for ``query``. ``mode``: bm25 | dense | hybrid (hybrid falls back to bm25 in
        a KB built without embeddings). Ties are broken by chunk id, so results do not depend on the
        order chunks were added in. ``rerank=N`` re-orders the first N results by their best sentence's
        coverage of the query (see :func:`domainlm.kb.answer.rerank`). ``query_handling`` (default: the
        KB's config) adds the other surface forms of the query's dates and numbers, then re-orders the
        first results by agreement with its dates, numbers and names (see :mod:`domainlm.kb.query`)."""
        if mode not in MODES:
            raise DomainlmError(f"unknown search mode '{mode}' (expected one of {', '.join(MODES)})")
        if mode == "dense" and self.vectors is None:
            raise DomainlmError(f"{self.path}: built without embeddings (embedder 'none'); use --mode bm25")
        if not isinstance(query, str) or not query.strip():
            raise DomainlmError("empty query")
        if len(query) > self.config.max_query_chars:
            raise DomainlmError(f"query is {len(query)} characters; the limit is {self.config.max_query_chars} (max_query_chars)")
        if not self.chunks or k <= 0:
            return []
        if mode == "hybrid" and self.vectors is None:
            mode = "bm25"
        asked, analysis = query, None
        if self.config.query_handling if query_handling is None else query_handling:
            analysis = analyze_query(query)
            query = expand(query, analysis)  # both retrievers also see 1998年 for 一九九八年
        depth = max(k, rerank, VALUE_DEPTH if analysis else 0)
        bm25 = self.bm25_scores(query) if mode in ("bm25", "hybrid") else None
        dense = None
        if mode in ("dense", "hybrid"):
            # With an ANN index: the graph's candidates, deep enough for fusion, plus BM25's own top
            # candidates so that every fused hit has its exact dense score.
            ann_depth = _fusion_depth(len(self.chunks), depth)
            also = _top_rows(bm25, ann_depth) if bm25 is not None else None
            dense = self.dense_scores(query, ann_depth, also)
        if mode == "bm25":
            fused, eligible = bm25, bm25 > 0  # a chunk sharing no term with the query is not a BM25 hit
        elif mode == "dense":
            fused, eligible = dense, np.isfinite(dense)
        else:
            fused, eligible = self._fuse(bm25, dense, depth, fusion or self.config.fusion)
        hits = self._top(fused, eligible, depth, bm25, dense)
        if analysis:
            hits = rerank_values(asked, hits, depth=VALUE_DEPTH, analysis=analysis)
        if rerank:
            # Imported here, not at the top: kb.answer imports this module (Hit, KnowledgeBase).
            from domainlm.kb.answer import rerank as rerank_hits

            hits = rerank_hits(self, asked, hits[: max(k, rerank)])
        return hits[:k]

    def _fuse(self, bm25: np.ndarray, dense: np.ndarray, k: int, fusion: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(bm25)
        if fusion == "weighted":
            top = float(bm25.max()) if n else 0.0
            norm = bm25 / top if top > 0 else bm25
            w = self.config.bm25_weight
            fused = (w * norm + (1 - w) * dense).astype(np.float32)
            return fused, np.isfinite(fused)
        # Reciprocal-rank fusion over each retriever's top candidates (Cormack et al. 2009).
        depth = _fusion_depth(n, k)
        fused = np.zeros(n, dtype=np.float32)
        for scores, valid in ((bm25, bm25 > 0), (dense, np.isfinite(dense))):
            order = _ranked(scores, valid, depth, self.chunks)
            fused[order] += 1.0 / (self.config.rrf_k + np.arange(1, len(order) + 1, dtype=np.float32))
        return fused, fused > 0

    def _top(self, fused, eligible, k, bm25, dense) -> list[Hit]:
        order = _ranked(fused, eligible, k, self.chunks)
        hits = []
        for rank, i in enumerate(order, start=1):
            c = self.chunks[i]
            hits.append(
                Hit(
                    chunk_id=c["id"], doc_id=c["doc_id"], source=c["source"], title=c.get("title", ""),
                    headings=c.get("headings", []), start=c["start"], end=c["end"], text=c["text"],
                    score=round(float(fused[i]), 6), rank=rank,
                    bm25=round(float(bm25[i]), 6) if bm25 is not None else None,
                    dense=round(float(dense[i]), 6) if dense is not None else None,
                )
            )
        return hits

    def store_summary(self) -> dict:
        """Where the index lives, as ``kb info`` shows it (a Milvus KB says its URL and row count)."""
        return {"kind": "disk"}

    def chunk(self, chunk_id: str) -> dict | None:
        for c in self.chunks:
            if c["id"] == chunk_id:
                return c
        return None


def _fusion_depth(n: int, k: int) -> int:
    """How many of each retriever's best chunks reciprocal-rank fusion looks at."""
    return min(n, max(100, 4 * k))


def _top_rows(scores: np.ndarray, depth: int) -> np.ndarray:
    """Rows of the ``depth`` highest positive scores (unordered)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > depth:
        positive = positive[np.argpartition(-scores[positive], depth - 1)[:depth]]
    return positive


def _ranked(scores: np.ndarray, valid: np.ndarray, k: int, chunks: list[dict]) -> np.ndarray:
    """Indices of the ``k`` best valid scores, best first, ties broken by chunk id."""
    candidates = np.flatnonzero(valid)
    if not len(candidates) or k <= 0:
        return candidates[:0]
    sub = scores[candidates]
    if len(candidates) > k:
        # Keep everything tied with the k-th score so the id tie-break sees all of them.
        kth = np.partition(sub, len(sub) - k)[len(sub) - k]
        keep = sub >= kth
        candidates, sub = candidates[keep], sub[keep]
    order = sorted(range(len(candidates)), key=lambda j: (-float(sub[j]), chunks[candidates[j]]["id"]))
    return candidates[order[:k]]


def open_kb(path: str | Path) -> KnowledgeBase:
    """Open a knowledge base read-only (many processes may do so at once while one writer updates it)."""
    path = Path(path)
    for attempt in range(3):
        info = read_info(path)
        if attempt == 0:
            remove_leftovers_if_idle(path)
        try:
            if info.get("store"):  # the index is in Milvus; the folder holds chunks and documents
                from domainlm.kb.milvus import MilvusKnowledgeBase

                return MilvusKnowledgeBase(path, info)
            return KnowledgeBase(path, info)
        except FileNotFoundError as exc:
            # A writer replaced the generation between reading kb.json and opening its files: retry.
            if attempt == 2:
                raise DomainlmError(f"{exc.filename or path}: index file missing; rebuild with `domainlm kb build --force`") from None
    raise AssertionError("unreachable")


def passage_retriever(path: str | Path, k: int = 3) -> Callable[[str], list[str]]:
    """question -> the texts of the top ``k`` chunks (default hybrid search): the passages a ``+kb`` eval
    variant is shown and retrieval-augmented training is given, from one function so they cannot drift."""
    kb = open_kb(path)
    return lambda question: [hit.text for hit in kb.search(question, k=k)]


def kb_summary(kb: KnowledgeBase) -> dict[str, Any]:
    """What an opened knowledge base holds, as ``domainlm kb info`` prints it."""
    return {
        "path": str(kb.path),
        "format_version": kb.info["format_version"],
        "generation": kb.info["generation"],
        "documents": len(kb.documents),
        "chunks": len(kb.chunks),
        "embedder": kb.info.get("embedder"),
        "mined_terms": len(kb.mined_terms),
        # null: exact dense search (below the ANN threshold, or no embeddings); else the graph's
        # calibration, whose "search" says whether queries use the graph or exact search
        "ann": kb.info.get("ann"),
        "store": kb.store_summary(),
    }

