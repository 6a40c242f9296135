"""Approximate nearest-neighbour search over a generation's dense vectors: a usearch HNSW graph.

Below :data:`ANN_THRESHOLD` chunks the KB searches exactly (one matrix-vector product over the
memory-mapped ``dense.npy``: ~15 ms at 100k x 384 on 2 cores, less than embedding the query). From the
threshold up, a generation also holds

    dense.usearch    the HNSW graph (inner product on the L2-normalised vectors = cosine)
    dense_keys.npy   uint64 key of each chunk row (a hash of the chunk id), so a graph hit maps to a row

Keys come from chunk ids, not row numbers, so ``kb add`` / ``kb remove`` update the previous graph in
place (remove the dropped chunks' keys, add the new ones) instead of building it again; rows may move,
keys do not.

Each write calibrates the graph on the KB's own vectors (:func:`calibrate`): with question-like queries
made from them (:func:`question_like_queries`: mixtures of two stored vectors) it raises the search
expansion until recall@10 against exact search reaches :data:`TARGET_RECALL` (plus
:data:`CALIBRATION_MARGIN`, since those queries are a little easier than real ones), and keeps the graph only
where that expansion answers faster than exact search; otherwise the generation searches exactly (recall
1.0). Stored vectors as queries would overstate recall (benchmarks/kb_scale.py's 100k set: 1.000 where real
questions got 0.862 at expansion 256); the mixtures track real questions (see question_like_queries). On clustered vectors a
small expansion reaches the target at a fraction of exact search's time; on uniform random vectors, which
have no neighbourhoods for a graph to follow, recall 0.99 needs an expansion of ~4,096 and is slower than
exact search, so exact search serves them. kb.json records the outcome and every expansion tried; ``kb info`` prints it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from domainlm.errors import DomainlmError

ANN_THRESHOLD = 50_000  # chunks; below it exact search is fast enough and exact
INDEX_FILE = "dense.usearch"
KEYS_FILE = "dense_keys.npy"
RECALL_SAMPLE = 200  # stored vectors used as queries when recall@10 is measured
RECALL_K = 10
# HNSW settings (benchmarks/embedding_speed.py, 2 cores): on 100k clustered random unit vectors in 384
# dimensions recall@10 is 1.000 at 2 ms a query (brute force 22 ms). Uniform random vectors, which have no
# neighbourhood structure at all, stay far below that at any affordable setting; real embeddings cluster,
# and kb.json records the recall measured on the KB's own vectors.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256
TARGET_RECALL = 0.99
# What the calibration queries must reach beyond TARGET_RECALL: they overstate real questions' recall by a
# little at the expansion where recall turns (0.994 vs 0.989 and 0.9925 vs 0.988 on
# benchmarks/ann_calibration_queries.py's 100k set, 0.993 vs 0.980 on kb_scale.py's); the next expansion up
# gave real questions 0.998.
CALIBRATION_MARGIN = 0.005
EXPANSIONS = (256, 512, 1024, 2048, 4096)  # tried in turn by calibrate() until the target recall is reached
TIMED_QUERIES = 50  # of the recall sample, timed one at a time for the graph-or-exact decision


def threshold(config) -> int:
    """Chunks from which a generation gets an ANN index (``kb.ann_threshold`` when the config has it)."""
    value = getattr(config, "ann_threshold", None)
    return ANN_THRESHOLD if value is None else int(value)


def _usearch():
    # usearch's compiled module, once loaded, makes onnxruntime (OCR of scans) segfault when it creates
    # a session later in the same process; loaded the other way round both work (usearch 2.26.6 with
    # onnxruntime 1.32). onnxruntime imports in ~0.1 s, so load it first wherever it is installed.
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    try:
        from usearch.index import Index
    except ImportError:
        raise DomainlmError("an ANN index (KBs from ANN_THRESHOLD chunks up) needs usearch: pip install usearch") from None
    return Index


def chunk_keys(chunk_ids: list[str]) -> np.ndarray:
    """A stable uint64 key per chunk id (the first 8 bytes of its blake2b)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(c.encode("utf-8"), digest_size=8).digest(), "little") for c in chunk_ids),
        dtype=np.uint64,
        count=len(chunk_ids),
    )


def new_index(dim: int):
    return _usearch()(
        ndim=dim, metric="ip", dtype="f32", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


def load_index(path: Path, *, view: bool = False, expansion_search: int | None = None):
    """The graph saved at ``path``: memory-mapped read-only (``view``, for search) or loaded to change it,
    searching with ``expansion_search`` (the calibrated one from kb.json; default :data:`EXPANSION_SEARCH`)."""
    Index = _usearch()
    index = Index.restore(str(path), view=view)
    if index is None:
        raise DomainlmError(f"{path}: not a usearch index; rebuild with `domainlm kb build --force`")
    index.expansion_search = int(expansion_search or EXPANSION_SEARCH)
    return index


def update_index(index, dim: int, remove: np.ndarray, add_keys: np.ndarray, add_vectors: np.ndarray):
    """``index`` (None: a new, empty one) without the ``remove`` keys and with the new vectors added."""
    index = index if index is not None else new_index(dim)
    if len(remove):
        index.remove(np.asarray(remove, dtype=np.uint64))
    if len(add_keys):
        index.add(np.asarray(add_keys, dtype=np.uint64), np.ascontiguousarray(add_vectors, dtype=np.float32))
    return index


def search(index, query: np.ndarray, count: int) -> np.ndarray:
    """Keys of the (approximately) ``count`` nearest vectors to ``query``, nearest first."""
    count = min(count, len(index))
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    return np.asarray(index.search(np.ascontiguousarray(query, dtype=np.float32), count).keys, dtype=np.uint64)


def rows_for(keys: np.ndarray, sorted_keys: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows of ``keys`` given the row keys sorted (``sorted_keys = row_keys[order]``); unknown keys dropped."""
    at = np.searchsorted(sorted_keys, keys)
    at = np.minimum(at, len(sorted_keys) - 1)
    found = sorted_keys[at] == keys
    return order[at[found]]


def _sample_queries(vectors: np.ndarray, sample: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False))
    return np.ascontiguousarray(vectors[picks], dtype=np.float32)


def _exact_keys(vectors: np.ndarray, row_keys: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    exact = np.empty((len(queries), k), dtype=np.uint64)
    for start in range(0, len(queries), 64):  # 64 queries x n scores at a time: bounded memory at 1M rows
        scores = queries[start : start + 64] @ np.asarray(vectors, dtype=np.float32).T
        exact[start : start + 64] = row_keys[np.argpartition(-scores, k - 1, axis=1)[:, :k]]
    return exact


def _overlap(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(set(found[i].tolist()) & set(exact[i].tolist())) for i in range(len(exact)))
    return hits / exact.size if exact.size else 1.0


def recall_at_k(index, vectors: np.ndarray, row_keys: np.ndarray, k: int = RECALL_K, sample: int = RECALL_SAMPLE, seed: int = 0) -> float:
    """Mean overlap of the ANN top ``k`` with the exact top ``k`` for ``sample`` stored vectors as queries."""
    k = min(k, len(vectors))
    if len(vectors) == 0 or k == 0:
        return 1.0
    queries = _sample_queries(vectors, sample, seed)
    return _overlap(index.search(queries, k).keys, _exact_keys(vectors, row_keys, queries, k))


def _p50_ms(search_one, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search_one(q)
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 3)


def question_like_queries(vectors: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """``normalise(a + 0.5 b)`` for random stored vectors a, b: points between passages, as questions are.
    Stored vectors themselves are easy queries (each is its own nearest neighbour): on a 100k set shaped like
    benchmarks/kb_scale.py's, the graph found 1.000 of their top 10 at every expansion, while real CMRC
    questions got 0.861 / 0.945 / 0.988 / 0.998 at expansion 256 / 512 / 1,024 / 2,048, and these mixtures
    0.857 / 0.968 / 0.9925 / 0.9995 (benchmarks/ann_calibration_queries.py): the same curve, a little
    above it at the turn, hence CALIBRATION_MARGIN."""
    rng = np.random.default_rng(seed)
    a = np.asarray(vectors[np.sort(rng.choice(len(vectors), size=min(sample, len(vectors)), replace=True))], dtype=np.float32)
    b = np.asarray(vectors[rng.integers(0, len(vectors), len(a))], dtype=np.float32)
    mixed = a + 0.5 * b
    return np.ascontiguousarray(mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-6), dtype=np.float32)


def calibrate(
    index, vectors: np.ndarray, row_keys: np.ndarray, *, prefer: str = "auto", target: float = TARGET_RECALL, seed: int = 0
) -> dict:
    """How this generation should search (see the module docstring): ``{"search": "graph" | "exact",
    "expansion_search", "recall_at_10" (what searches get: 1.0 when exact), "graph_recall_at_10",
    "graph_p50_ms", "exact_p50_ms", "calibration": [every expansion tried]}``. ``prefer`` (the KB's
    ``ann_search``): 'auto' decides as described, 'graph' / 'exact' impose the search."""
    k = min(RECALL_K, len(vectors))
    queries = question_like_queries(vectors, RECALL_SAMPLE, seed)
    exact = _exact_keys(vectors, row_keys, queries, k)
    matrix = np.asarray(vectors, dtype=np.float32)
    timed = queries[:TIMED_QUERIES]
    exact_ms = _p50_ms(lambda q: np.argpartition(-(matrix @ q), k - 1)[:k], timed)
    tried = []
    for expansion in EXPANSIONS:
        index.expansion_search = expansion
        recall = round(_overlap(index.search(queries, k).keys, exact), 4)
        tried.append({"expansion_search": expansion, "recall_at_10": recall, "p50_ms": _p50_ms(lambda q: index.search(q, k), timed)})
        if recall >= target + CALIBRATION_MARGIN:
            break
    best = tried[-1]
    reached = best["recall_at_10"] >= target + CALIBRATION_MARGIN
    graph = prefer == "graph" or (prefer == "auto" and reached and best["p50_ms"] < exact_ms)
    index.expansion_search = best["expansion_search"]
    return {
        "search": "graph" if graph else "exact",
        "expansion_search": best["expansion_search"],
        "recall_at_10": best["recall_at_10"] if graph else 1.0,
        "graph_recall_at_10": best["recall_at_10"],
        "graph_p50_ms": best["p50_ms"],
        "exact_p50_ms": exact_ms,
        "target_recall": target,
        "calibration_margin": CALIBRATION_MARGIN,
        "calibration": tried,
    }
