"""Cleaning throughput: domainlm clean vs datatrove vs data-juicer, documents per second per core, on the
same Chinese JSONL, side by side in one run; plus how much of the injected noise each one removes.

Input: real Chinese text (CMRC 2018 passages and UHGEval news articles from ../shared/benchmarks), into
which the script injects, deterministically, what the three tools' comparable operators target:
mojibake (UTF-8 read as Latin-1), e-mail addresses, Chinese mobile numbers and ID numbers, and a
repeated paragraph. Each tool runs single-process (one core) with its equivalent operators:

  domainlm    fix_mojibake, normalize, remove_repeats, redact_pii, tidy, quality   (the whole stage:
              ingest, trace.jsonl and data card included)
  datatrove   FTFYFormatter, PIIFormatter, GopherRepetitionFilter(zh)              (LocalPipelineExecutor)
  data-juicer fix_unicode_mapper, clean_email_mapper, whitespace_normalization_mapper,
              character_repetition_filter                                       (ops on batches)

Run: python benchmarks/clean_throughput.py [--docs N]  (needs `pip install datatrove py-data-juicer spacy`;
they are not domainlm dependencies). Writes benchmarks/results/clean_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / ".." / "shared" / "benchmarks"
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def real_texts() -> list[str]:
    cmrc = json.loads((SHARED / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))
    texts = [p["context"] for d in cmrc["data"] for p in d["paragraphs"]]
    with (SHARED / "uhgeval" / "uhgeval_concise.dev.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            r = json.loads(line)
            texts.append(
                "\n".join(
                    x
                    for x in (r["headLine"], r["newsBeginning"], r["realContinuation"], r["newsRemainder"])
                    if x
                )
            )
    return texts


def _id_number(rng: random.Random) -> str:
    body = f"{rng.choice([110105, 310104, 440305, 510107])}{rng.randint(1960, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(100, 999)}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def make_corpus(n: int, seed: int = 0) -> tuple[list[dict], dict]:
    """Documents with injected noise, and what was injected where: {kind: {doc id: value}}."""
    rng = random.Random(seed)
    base = real_texts()
    docs, injected = [], {"email": {}, "mobile": {}, "id_card": {}, "mojibake": {}}
    for i in range(n):
        text = base[i % len(base)]
        doc_id = f"doc{i}"
        paragraphs = [p for p in re.split(r"(?<=。)", text) if p.strip()]
        kind = i % 5
        if kind == 0:
            email = f"user{rng.randint(100, 999)}@example.com"
            paragraphs.insert(len(paragraphs) // 2, f"联系邮箱：{email}。")
            injected["email"][doc_id] = email
        elif kind == 1:
            mobile = f"1{rng.choice('3589')}{rng.randint(0, 999999999):09d}"
            paragraphs.insert(len(paragraphs) // 2, f"客服电话{mobile}。")
            injected["mobile"][doc_id] = mobile
        elif kind == 2:
            number = _id_number(rng)
            paragraphs.insert(len(paragraphs) // 2, f"身份证号{number}。")
            injected["id_card"][doc_id] = number
        elif kind == 3 and paragraphs:
            # A Latin-script phrase garbled the classic way (UTF-8 bytes read as Latin-1): "café" -> "cafÃ©".
            phrase = rng.choice(["café au lait", "naïve résumé", "Zürich Straße", "São Paulo"])
            paragraphs.insert(0, phrase.encode("utf-8").decode("latin-1") + "。")
            injected["mojibake"][doc_id] = phrase
        elif kind == 4 and paragraphs:
            paragraphs.append("\n" + paragraphs[0])  # a repeated paragraph
        docs.append({"id": doc_id, "text": "".join(paragraphs)})
    return docs, injected


def score_output(kept: dict[str, str], injected: dict) -> dict:
    """Over the documents a tool kept: share of injected PII gone, share of mojibake repaired."""

    def share(kind: str, fixed) -> float | None:
        items = [(doc, value) for doc, value in injected[kind].items() if doc in kept]
        return round(sum(fixed(kept[doc], value) for doc, value in items) / len(items), 4) if items else None

    return {
        "docs_out": len(kept),
        "emails_redacted": share("email", lambda text, v: v not in text),
        "mobiles_redacted": share("mobile", lambda text, v: v not in text),
        "id_numbers_redacted": share("id_card", lambda text, v: v not in text),
        "mojibake_repaired": share("mojibake", lambda text, v: v in text),
    }


RECIPE = """name: bench
operators:
  - op: fix_mojibake
  - op: normalize
  - op: remove_repeats
  - op: redact_pii
  - op: tidy
  - op: quality
    threshold: 0.5
"""


def run_domainlm(path: Path, work: Path) -> tuple[float, list[str]]:
    from domainlm.data import clean
    from domainlm.data.normalize import char_ranks

    char_ranks()  # warm the lazily built character table (one-off, ~1 s), like the peers' imports
    recipe = work / "bench.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    start = time.perf_counter()
    result = clean([path], work / "domainlm", {"recipe": str(recipe), "workers": 1}, force=True)
    elapsed = time.perf_counter() - start
    records = [json.loads(line) for line in result.outputs["clean"].open(encoding="utf-8")]
    return elapsed, {r["meta"]["orig_id"]: r["text"] for r in records}


def run_datatrove(path: Path, work: Path) -> tuple[float, list[str]]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    out = work / "datatrove"
    executor = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(str(path.parent), glob_pattern=path.name),
            FTFYFormatter(),
            PIIFormatter(),
            GopherRepetitionFilter(language="zh"),
            JsonlWriter(str(out), compression=None),
        ],
        tasks=1,
        workers=1,
        logging_dir=str(work / "datatrove_logs"),
    )
    start = time.perf_counter()
    executor.run()
    elapsed = time.perf_counter() - start
    records = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.open(encoding="utf-8")]
    return elapsed, {r["id"]: r["text"] for r in records}


def run_data_juicer(path: Path, work: Path) -> tuple[float, list[str]]:
    from data_juicer.ops.filter import CharacterRepetitionFilter
    from data_juicer.ops.mapper import CleanEmailMapper, FixUnicodeMapper, WhitespaceNormalizationMapper

    mappers = [FixUnicodeMapper(), CleanEmailMapper(), WhitespaceNormalizationMapper()]
    repetition = CharacterRepetitionFilter()
    start = time.perf_counter()
    docs = [json.loads(line) for line in path.open(encoding="utf-8")]
    kept: dict[str, str] = {}
    for i in range(0, len(docs), 1000):  # data-juicer's default batch size
        ids = [d["id"] for d in docs[i : i + 1000]]
        batch = {"text": [d["text"] for d in docs[i : i + 1000]]}
        for mapper in mappers:
            batch = mapper.process_batched(batch)
        batch["__dj__stats__"] = [{} for _ in batch["text"]]
        batch = repetition.compute_stats_batched(batch)
        keep = list(repetition.process_batched(batch))
        kept.update((doc, t) for doc, t, k in zip(ids, batch["text"], keep, strict=True) if k)
    with (work / "data_juicer.jsonl").open("w", encoding="utf-8") as handle:
        for doc, text in kept.items():
            handle.write(json.dumps({"id": doc, "text": text}, ensure_ascii=False) + "\n")
    return time.perf_counter() - start, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=3000)
    args = parser.parse_args()
    docs, injected = make_corpus(args.docs)
    work = Path(tempfile.mkdtemp(prefix="clean_bench_"))
    path = work / "input" / "corpus.jsonl"
    path.parent.mkdir()
    with path.open("w", encoding="utf-8") as handle:
        for d in docs:
            handle.write(json.dumps(d, ensure_ascii=False) + "\n")
    chars = sum(len(d["text"]) for d in docs)
    results = {}
    for name, runner in (
        ("domainlm", run_domainlm),
        ("datatrove", run_datatrove),
        ("data-juicer", run_data_juicer),
    ):
        try:
            elapsed, kept = runner(path, work)
        except ImportError as exc:
            print(f"{name}: not installed ({exc})", file=sys.stderr)
            continue
        results[name] = {
            "seconds": round(elapsed, 3),
            "docs_per_s_per_core": round(len(docs) / elapsed, 1),
            "chars_per_s_per_core": round(chars / elapsed),
            **score_output(kept, injected),
        }
        print(name, results[name], flush=True)
    ours = results["domainlm"]["docs_per_s_per_core"]
    ratios = {
        f"domainlm/{k}": round(ours / v["docs_per_s_per_core"], 2)
        for k, v in results.items()
        if k != "domainlm"
    }
    report = {
        "benchmark": "clean_throughput",
        "input": {
            "docs": len(docs),
            "chars": chars,
            "source": "CMRC 2018 dev passages + UHGEval dev news, injected noise",
        },
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "results": results,
        "ratios_docs_per_s": ratios,
        "command": f"python benchmarks/clean_throughput.py --docs {args.docs}",
    }
    out = HERE / "results" / "clean_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(ratios))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
