"""Exam item validity: does every key stand in its passage, and no distractor? On three kinds of Chinese text.

``domainlm exam`` makes multiple-choice, cloze and short-answer items from a KB. An item is valid when its
key is a span of its source passage, none of its distractors is supported by that passage (not written in
it, not equal to a number in it once numbers are normalised), the multiple-choice letter points at the key,
the cloze refills to its sentence and no fact is asked twice or given away by another item's question.
This script builds a KB (BM25 only) from each corpus, makes an exam, and measures:

- **validity**: ``validate_exam``'s share of valid items, and the same two core checks recomputed here
  directly (key in passage; every distractor unsupported), so the number does not rest on the code it
  measures;
- **item types and difficulty levels** made, and warnings (fewer items than asked);
- **the peer: naive distractors**: for the same multiple-choice items, distractors drawn at random from
  every value the rules find in the KB (what a generator without kind pools or a support check would do):
  how many items then have a distractor the passage supports, and how many distractors are of the key's
  kind (a year for a year, an amount for an amount);
- **ablation: no support check**: the same generator with the passage-support filter off, validated by
  the same checks (how many multiple-choice items the filter saves);
- a few examples of each item type.

Corpora: the Harbor Bank sample (``domainlm sample``, size ``--size``), CMRC 2018 dev passages (Chinese
Wikipedia) and UHGEval news articles (number-heavy news), from ``../shared/benchmarks``.

    python benchmarks/exam_validity.py                    # sample small, all CMRC dev passages and news, 300 items (~3 min)
    python benchmarks/exam_validity.py --quick            # tiny sample, 25 passages, 25 articles
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "benchmarks"


def sample_docs(size: str, tmp: Path) -> list[dict]:
    from domainlm.kb.sources import iter_documents
    from domainlm.sample import generate_sample

    root = generate_sample(tmp / "harbor", seed=0, size=size)
    return list(iter_documents([root / "docs"], []))


def cmrc_docs(n: int) -> list[dict]:
    data = json.loads((SHARED / "cmrc2018" / "cmrc2018_dev.json").read_text("utf-8"))["data"][:n]
    return [{"id": e["id"], "text": f"{e['title']}\n\n{e['paragraphs'][0]['context']}", "source": f"cmrc/{e['id']}",
             "meta": {}} for e in data]


def news_docs(n: int) -> list[dict]:
    docs, seen = [], set()
    for line in (SHARED / "uhgeval" / "uhgeval_concise.dev.jsonl").read_text("utf-8").splitlines():
        row = json.loads(line)
        if row["headLine"] in seen:  # upstream repeats an article with another generated continuation
            continue
        seen.add(row["headLine"])
        text = (row["newsBeginning"] + row["realContinuation"] + row["newsRemainder"]).strip()
        docs.append({"id": row["id"], "text": f"{row['headLine']}\n\n{text}", "source": f"uhgeval/{row['id']}", "meta": {}})
        if len(docs) == n:
            break
    return docs


def direct_checks(exam, kb) -> dict:
    """Key in passage and distractors unsupported, recomputed without validate_exam."""
    from domainlm.plugins.exam import normalize_numbers

    keys_ok = distractors = distractors_ok = 0
    for item in exam.items:
        text = kb.chunk(item.source.chunk_id)["text"]
        if item.type == "short":
            keys_ok += all(p.answer in p.evidence and p.evidence in text for p in item.rubric)
        else:
            keys_ok += item.key in text[item.source.span[0]:item.source.span[1]]
        for d in item.distractors:
            distractors += 1
            distractors_ok += d not in text and normalize_numbers(d) not in normalize_numbers(text)
    n = len(exam.items)
    return {"keys_supported": f"{keys_ok}/{n}", "distractors_unsupported": f"{distractors_ok}/{distractors}"}


def naive_peer(exam, kb, seed: int) -> dict:
    """Random distractors from every value the rules find in the KB, for the exam's multiple-choice items."""
    from domainlm.plugins.exam import _facts, same_value, supported_by, value_kind

    values = sorted({f.key for f in _facts(kb.chunks, seed)})
    rng = random.Random(seed)
    ours = [i for i in exam.items if i.type == "mcq"]
    items_supported = same_kind = total = 0
    ours_same_kind = sum(value_kind(d, i.kind) == i.kind for i in ours for d in i.distractors)
    for item in ours:
        text = kb.chunk(item.source.chunk_id)["text"]
        pool = [v for v in values if not same_value(v, item.key)]
        picked = rng.sample(pool, min(len(item.distractors), len(pool)))
        items_supported += any(supported_by(v, text) for v in picked)
        same_kind += sum(value_kind(v, item.kind) == item.kind for v in picked)
        total += len(picked)
    n_ours = sum(len(i.distractors) for i in ours)
    return {"mcq_items": len(ours),
            "naive": {"items_with_a_supported_distractor": items_supported, "distractors_of_the_key_kind": same_kind,
                      "distractors": total},
            "exam": {"items_with_a_supported_distractor": 0 if not ours else sum(
                any(supported_by(d, kb.chunk(i.source.chunk_id)["text"]) for d in i.distractors) for i in ours),
                "distractors_of_the_key_kind": ours_same_kind, "distractors": n_ours}}


def without_support_check(kb_dir: Path, kb, config) -> dict:
    """The ablation: the same generator with its support check off (every pool value passes), validated by
    the real checks: how many items the check saves."""
    from domainlm.plugins import exam as exam_module

    real = exam_module.supported_by
    exam_module.supported_by = lambda value, passage: False
    try:
        exam = exam_module.make_exam(kb_dir, config, kb=kb)
    finally:
        exam_module.supported_by = real
    report = exam_module.validate_exam(exam, kb)
    mcq = report["by_type"].get("mcq", {"n": 0, "valid": 0})
    return {"items": report["n"], "valid": report["valid"], "validity": report["validity"],
            "mcq": mcq, "problems": [p["problems"] for p in report["problems"][:3]]}


def examples(exam, per_type: int = 2) -> list[dict]:
    out = []
    for t in ("mcq", "cloze", "short"):
        for item in [i for i in exam.items if i.type == t][:per_type]:
            out.append({"type": t, "question": item.question, "choices": item.choices, "answer": item.answer,
                        "key": item.key, "rubric": [p.point for p in item.rubric], "passage": item.source.passage,
                        "level": item.level, "difficulty": item.difficulty})
    return out


def run_corpus(name: str, docs: list[dict], n: int, seed: int, tmp: Path) -> dict:
    from domainlm.kb import KBConfig, build_kb, open_kb
    from domainlm.plugins.exam import ExamConfig, make_exam, validate_exam

    kb_dir = tmp / f"kb-{name}"
    build_kb(docs, kb_dir, KBConfig(embedder="none"))
    kb = open_kb(kb_dir)
    started = time.perf_counter()
    exam = make_exam(kb_dir, ExamConfig(n=n, seed=seed), kb=kb)
    seconds = time.perf_counter() - started
    report = validate_exam(exam, kb)
    result = {"documents": len(docs), "chunks": len(kb.chunks), "asked": n, "items": report["n"],
              "valid": report["valid"], "validity": report["validity"], "by_type": report["by_type"],
              "levels": dict(Counter(i.level for i in exam.items)), "direct": direct_checks(exam, kb),
              "distractors": naive_peer(exam, kb, seed),
              "without_support_check": without_support_check(kb_dir, kb, ExamConfig(n=n, seed=seed)),
              "problems": report["problems"][:10],
              "warnings": exam.warnings, "make_exam_s": round(seconds, 2), "examples": examples(exam)}
    print(f"{name}: {report['n']} items, validity {report['validity']:.3f}, {result['direct']}, "
          f"{dict((t, v['n']) for t, v in report['by_type'].items())}, {seconds:.1f}s", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sample, 25 passages, 25 articles")
    parser.add_argument("--size", default="small", help="sample size (tiny, small, …)")
    parser.add_argument("--cmrc", type=int, default=848, help="CMRC 2018 passages (848: the whole dev set)")
    parser.add_argument("--news", type=int, default=600, help="UHGEval news articles (at most 600 rows, repeats dropped)")
    parser.add_argument("--n", type=int, default=300, help="items asked per exam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "results" / "exam_validity.json"))
    args = parser.parse_args()
    if args.quick:
        args.size, args.cmrc, args.news, args.n = "tiny", 25, 25, 20
    corpora = {}
    with tempfile.TemporaryDirectory(prefix="exam-bench-") as tmp:
        tmp = Path(tmp)
        corpora["sample"] = run_corpus("sample", sample_docs(args.size, tmp), args.n, args.seed, tmp)
        if SHARED.is_dir():
            corpora["cmrc2018"] = run_corpus("cmrc2018", cmrc_docs(args.cmrc), args.n, args.seed, tmp)
            corpora["uhgeval_news"] = run_corpus("uhgeval_news", news_docs(args.news), args.n, args.seed, tmp)
        else:
            print(f"{SHARED} not found: only the sample is measured", file=sys.stderr)
    from domainlm import __version__
    from domainlm.io import write_json

    write_json(args.out, {
        "benchmark": "exam_validity", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/exam_validity.py" + (" --quick" if args.quick else ""),
        "settings": {"sample_size": args.size, "cmrc_passages": args.cmrc, "news_articles": args.news, "n": args.n,
                     "seed": args.seed, "kb_embedder": "none"},
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "domainlm": __version__},
        "corpora": corpora})
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
