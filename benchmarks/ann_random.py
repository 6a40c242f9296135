"""Can HNSW reach recall@10 >= 0.99 on uniform random vectors at 100k x 384, and at what query cost?

usearch (the KB's ANN library) at two graph settings and three search widths, 200 fresh random queries,
recall against exact search. Writes benchmarks/results/ann_random.json.

    python benchmarks/ann_random.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

N, DIM, QUERIES, K = 100_000, 384, 200, 10


def unit(rows: int, rng) -> np.ndarray:
    x = rng.standard_normal((rows, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    rng = np.random.default_rng(0)
    vectors, queries = unit(N, rng), unit(QUERIES, rng)
    t = time.perf_counter()
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    exact_ms = (time.perf_counter() - t) / QUERIES * 1000
    results = [{"system": "exact numpy", "metric": "ms/query", "value": round(exact_ms, 2)}]
    for connectivity, expansion_add in [(16, 128), (32, 256)]:
        index = Index(ndim=DIM, metric="ip", dtype="f32", connectivity=connectivity, expansion_add=expansion_add)
        t = time.perf_counter()
        index.add(np.arange(N, dtype=np.uint64), vectors)
        system = f"usearch M={connectivity} ef_add={expansion_add}"
        results.append({"system": system, "metric": "build_s", "value": round(time.perf_counter() - t, 1)})
        for ef in (256, 1024, 4096):
            index.expansion_search = ef
            t = time.perf_counter()
            keys = index.search(queries, K).keys
            ms = (time.perf_counter() - t) / QUERIES * 1000
            recall = float(np.mean([len(set(keys[i].tolist()) & set(exact[i].tolist())) / K for i in range(QUERIES)]))
            results.append({"system": f"{system} ef={ef}", "metric": "recall@10", "value": round(recall, 3)})
            results.append({"system": f"{system} ef={ef}", "metric": "ms/query", "value": round(ms, 2)})
            print(results[-2], results[-1], flush=True)
    out = Path(__file__).parent / "results" / "ann_random.json"
    out.write_text(json.dumps({"benchmark": "ann_random", "command": "python benchmarks/ann_random.py",
                               "machine": {"cores": os.cpu_count(), "load_avg_1m_end": os.getloadavg()[0]},
                               "data": f"{N} x {DIM} uniform random unit vectors, {QUERIES} fresh queries",
                               "results": results}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
