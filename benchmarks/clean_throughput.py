"""Cleaning throughput: domainlm clean vs datatrove vs data-juicer, documents per second on one core, on the
same Chinese JSONL; plus how much of the injected noise each one removes.

Input: real Chinese text (CMRC 2018 passages and UHGEval news articles from ../shared/benchmarks), into
which the script injects, deterministically, what the three tools' comparable operators target:
mojibake (UTF-8 read as Latin-1), e-mail addresses, Chinese mobile numbers and ID numbers, and a
repeated paragraph. Each tool runs single-process (one core) with its equivalent operators:

  domainlm    fix_mojibake, normalize, remove_repeats, redact_pii, tidy, quality   (the whole stage:
              ingest, trace.jsonl and data card included)
  datatrove   FTFYFormatter, PIIFormatter, GopherRepetitionFilter(language="zh")   (LocalPipelineExecutor,
              JSONL reader and writer). datatrove 0.10.1 maps "zh" to spaCy's blank multilingual
              tokenizer, which keeps a whole Han clause as one word (see datatrove_tokenizer_probe), so
  datatrove-jieba runs the same pipeline with language="zho_Hani": spaCy's Chinese tokenizer on jieba.
  data-juicer fix_unicode_mapper, pii_redaction_mapper, whitespace_normalization_mapper,
              character_repetition_filter                                       (ops called on batches of
              1,000 plain-Python documents: no HF datasets, no executor, so a lower bound on its cost)

Fairness: every tool runs in its own fresh process (one subprocess per tool per repeat and mode, tools in
rotating order), with the same thread limits. Two modes per repeat:

  cold  the process imports the tool, builds its operators and cleans the corpus once; "whole run" is the
        wall time of that process as the parent sees it (interpreter start and exit included), the time a
        user waits for `tool corpus.jsonl`.
  warm  the process imports and builds (timed: start-up), cleans a separate warm-up batch (timed: warm-up;
        one-off loads such as datatrove's spaCy/jieba tokenizer and domainlm's character table happen here),
        then cleans the corpus (timed: steady).

Wall and CPU seconds are both recorded: on a shared machine CPU time of these single-threaded processes is
the steadier measure. The result file is rewritten after every repeat.

Run: python benchmarks/clean_throughput.py [--docs N] [--repeats R] [--quick]
The peers are not domainlm dependencies; install them first with

  pip install datatrove==0.10.1 py-data-juicer==1.6.1 spacy orjson aiohttp

(orjson: datatrove's JSONL reader/writer; spacy: the word tokenizer its Gopher filter loads for Chinese;
aiohttp: imported by data-juicer's ops package but not declared by it; ftfy and jieba come
with domainlm). A missing package stops the run with one line naming it. Writes
benchmarks/results/clean_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / ".." / "shared" / "benchmarks"
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
TOOLS = ("domainlm", "datatrove", "datatrove-jieba", "data-juicer")
PEERS_PIP = "pip install datatrove==0.10.1 py-data-juicer==1.6.1 spacy orjson aiohttp"
VERSIONED = ("domainlm", "datatrove", "py-data-juicer", "spacy", "jieba", "ftfy", "orjson", "aiohttp")
# One core each: no library may fan out into BLAS/OpenMP/tokenizer threads behind the benchmark's back.
ONE_CORE_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
PIP_NAMES = {"data_juicer": "py-data-juicer"}  # import name -> pip name, where they differ
EXIT_MISSING = 3  # a worker's exit status when a package is missing

# --- The corpus -----------------------------------------------------------------------------------


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


def _mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3589')}{rng.randint(0, 999999999):09d}"


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
            mobile = _mobile(rng)
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


def write_jsonl(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for d in docs:
            handle.write(json.dumps(d, ensure_ascii=False) + "\n")


# --- The tools, each as setup() -> process(input path, scratch dir) -> {doc id: kept text} ---------------
# setup() holds the imports and the operator construction (timed as start-up); process() is one whole
# cleaning run, reading the JSONL and writing the tool's output, as the tool itself does it.

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


def setup_domainlm():
    from domainlm.data import clean

    def process(path: Path, work: Path) -> dict[str, str]:
        recipe = work / "bench.yaml"
        recipe.write_text(RECIPE, encoding="utf-8")
        result = clean([path], work / "domainlm", {"recipe": str(recipe), "workers": 1}, force=True)
        with result.outputs["clean"].open(encoding="utf-8") as handle:
            return {r["meta"]["orig_id"]: r["text"] for r in map(json.loads, handle)}

    return process


def setup_datatrove(language: str):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    # The executor deep-copies these steps for each task; the Gopher filter's word tokenizer is loaded on first
    # use and cached for the whole process (datatrove's lru_cache on load_word_tokenizer), so the warm-up
    # batch pays for it once, as the first task of a long-running datatrove job would.
    gopher = GopherRepetitionFilter(language=language)
    steps = [FTFYFormatter(), PIIFormatter(), gopher]

    def process(path: Path, work: Path) -> dict[str, str]:
        out = work / "datatrove"
        reader = JsonlReader(str(path.parent), glob_pattern=path.name)
        writer = JsonlWriter(str(out), compression=None)
        executor = LocalPipelineExecutor(
            pipeline=[reader, *steps, writer], tasks=1, workers=1, logging_dir=str(work / "datatrove_logs")
        )
        executor.run()
        records = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.open(encoding="utf-8")]
        return {r["id"]: r["text"] for r in records}

    return process


def datatrove_tokenizer_probe() -> dict:
    """Which word tokenizer datatrove 0.10.1 gives each Chinese language code, and what it makes of a
    sentence: its tokenizer table reads the strings "FALSE"/"TRUE" as flags (any non-empty string is true),
    so later rows (Hakka and Chinese in Latin script) overwrite the bare codes "zh" and "zho"."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    sentence = "客服电话今天开通，欢迎来电咨询。"
    probe = {}
    for code in ("zh", "zho", "zho_Hani", "cmn_Hani"):
        tokenizer = load_word_tokenizer(code)
        probe[code] = {
            "tokenizer": type(tokenizer).__name__,
            "spacy_language": getattr(tokenizer, "language", None),
            "words": tokenizer.word_tokenize(sentence),
        }
    return probe


def setup_data_juicer():
    from data_juicer.ops.filter import CharacterRepetitionFilter
    from data_juicer.ops.mapper import FixUnicodeMapper, PiiRedactionMapper, WhitespaceNormalizationMapper

    mappers = [FixUnicodeMapper(), PiiRedactionMapper(), WhitespaceNormalizationMapper()]
    repetition = CharacterRepetitionFilter()

    def process(path: Path, work: Path) -> dict[str, str]:
        with path.open(encoding="utf-8") as handle:
            docs = [json.loads(line) for line in handle]
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
        return kept

    return process


SETUPS = {
    "domainlm": setup_domainlm,
    "datatrove": lambda: setup_datatrove("zh"),
    "datatrove-jieba": lambda: setup_datatrove("zho_Hani"),
    "data-juicer": setup_data_juicer,
}


def data_juicer_pii_probe() -> dict:
    """Why data-juicer's Chinese mobile and ID patterns find nothing in this corpus, measured: its
    pii_redaction_mapper (phone_cn r"\\b1[3-9]\\d{9}\\b", id_card_cn r"\\b[1-9]\\d{5}(?:19|20)...\\b") is applied
    to the corpus's own sentence shapes and to variants: a number glued to Han characters, after a full-width
    colon, between spaces; and with a digit-boundary pattern given through its `extra_patterns` option."""
    from data_juicer.ops.mapper import PiiRedactionMapper

    rng = random.Random(1)
    mobile, number = _mobile(rng), _id_number(rng)
    shapes = {
        "glued to Han (this corpus)": ("客服电话{}。", "身份证号{}。"),
        "after a full-width colon": ("客服电话：{}。", "身份证号：{}。"),
        "between spaces": ("客服电话 {} 。", "身份证号 {} 。"),
    }
    digit_bounded = [(r"(?<!\d)1[3-9]\d{9}(?!\d)", "[PHONE]"), (r"(?<!\d)[1-9]\d{16}[\dXx](?!\d)", "[ID]")]
    configs = {"default": PiiRedactionMapper(), "extra_patterns, digit-bounded": PiiRedactionMapper(
        extra_patterns=digit_bounded)}
    probe = {}
    for config, op in configs.items():
        for shape, (mobile_t, id_t) in shapes.items():
            redacted = [op.process_single({"text": t.format(v)})["text"] for t, v in ((mobile_t, mobile), (id_t, number))]
            probe[f"{config} / {shape}"] = {"mobile": mobile not in redacted[0], "id_number": number not in redacted[1]}
    return probe


PROBES = {"data-juicer": data_juicer_pii_probe, "datatrove": datatrove_tokenizer_probe}

# --- The worker: one tool, one mode, in its own process ----------------------------------------------


def datatrove_drops(stats_path: Path) -> dict | None:
    """Why datatrove's filter dropped documents in a run, from the stats file its executor writes."""
    if not stats_path.exists():
        return None
    steps = json.loads(stats_path.read_text(encoding="utf-8"))
    return {
        key.removeprefix("dropped_"): value
        for step in steps
        if "Gopher" in step["name"]
        for key, value in step["stats"].items()
        if key.startswith("dropped_")
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu_seconds() -> float:
    """CPU time of the finished subprocesses: on a shared machine it moves far less than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _missing(tool: str, exc: ImportError) -> None:
    """One line naming what is missing and the install command, then a distinct exit status."""
    name = getattr(exc, "name", None)
    if name:
        top = name.split(".")[0]
        what = f"the package {PIP_NAMES.get(top, top)!r} is not installed"
    else:  # datatrove's own dependency check: "Please install `orjson` to use JsonlReader (...)"
        what = str(exc).strip().splitlines()[0].rstrip(".")
    print(f"clean_throughput: {tool} cannot run: {what}. Install the peers: {PEERS_PIP}", file=sys.stderr)
    sys.exit(EXIT_MISSING)


def worker(args: argparse.Namespace) -> None:
    """Runs in the subprocess; writes its timings and kept documents to args.result."""
    work = Path(args.work)
    report: dict = {}
    try:
        start = time.perf_counter()
        process = SETUPS[args.worker]()
        report["startup_s"] = time.perf_counter() - start
        if args.mode == "warm":
            start = time.perf_counter()
            (work / "warmup").mkdir()
            process(Path(args.warmup_input), work / "warmup")
            report["warmup_s"] = time.perf_counter() - start
        (work / "run").mkdir()
        start, cpu = time.perf_counter(), _cpu_seconds()
        kept = process(Path(args.input), work / "run")
        report["run_s"] = time.perf_counter() - start
        report["run_cpu_s"] = _cpu_seconds() - cpu
        report["dropped_by"] = datatrove_drops(work / "run" / "datatrove_logs" / "stats.json")
        if args.probe:
            report["probe"] = PROBES[args.worker]()
    except ImportError as exc:
        _missing(args.worker, exc)
    report["kept"] = kept
    Path(args.result).write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")


# --- The parent: corpus, subprocesses, summary -------------------------------------------------------


def run_worker(tool: str, mode: str, paths: dict[str, Path], scratch: Path, probe: bool = False) -> dict:
    """One fresh process; its wall time as seen from here is the whole run. Stops the benchmark on failure."""
    work = Path(tempfile.mkdtemp(prefix=f"{tool}_{mode}_", dir=scratch))
    result = work / "result.json"
    command = [
        sys.executable, __file__, "--worker", tool, "--mode", mode, "--input", str(paths["corpus"]),
        "--warmup-input", str(paths["warmup"]), "--work", str(work), "--result", str(result),
    ] + (["--probe"] if probe else [])
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), _children_cpu_seconds()
    done = subprocess.run(command, check=False, env={**os.environ, **ONE_CORE_ENV}, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu_seconds() - cpu
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        ours = [line for line in lines if line.startswith("clean_throughput:")]
        if ours:
            sys.exit(ours[-1])
        print("\n".join(lines[-20:]), file=sys.stderr)
        sys.exit(f"clean_throughput: {tool} ({mode}) failed: {lines[-1] if lines else done.returncode}")
    report = json.loads(result.read_text(encoding="utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "load_avg_1min": load, **report}


def summarise(values: list[float]) -> dict:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "runs": [round(v, 3) for v in values]}


def tool_summary(runs: list[dict], n_docs: int, chars: int) -> dict:
    cold, warm = [r["cold"] for r in runs], [r["warm"] for r in runs]
    return {
        "whole_run_s": summarise([c["wall_s"] for c in cold]),
        "whole_run_docs_per_s": summarise([n_docs / c["wall_s"] for c in cold]),
        "whole_run_cpu_s": summarise([c["cpu_s"] for c in cold]),
        "whole_run_docs_per_cpu_s": summarise([n_docs / c["cpu_s"] for c in cold]),
        "startup_s": summarise([c["startup_s"] for c in cold]),
        "warm_startup_s": summarise([w["startup_s"] for w in warm]),
        "warmup_batch_s": summarise([w["warmup_s"] for w in warm]),
        "steady_s": summarise([w["run_s"] for w in warm]),
        "steady_docs_per_s": summarise([n_docs / w["run_s"] for w in warm]),
        "steady_cpu_s": summarise([w["run_cpu_s"] for w in warm]),
        "steady_docs_per_cpu_s": summarise([n_docs / w["run_cpu_s"] for w in warm]),
        "steady_ms_per_doc": round(statistics.median([1000 * w["run_s"] / n_docs for w in warm]), 3),
        "steady_chars_per_s": round(statistics.median([chars / w["run_s"] for w in warm])),
        "steady_cpu_per_wall": round(statistics.median([w["run_cpu_s"] / w["run_s"] for w in warm]), 2),
    }


def ratios(per_tool: dict[str, list[dict]]) -> dict:
    """domainlm's rate over the peer's (the peer's time over domainlm's), per repeat: the two ran in the same
    repeat, minutes apart. Wall-clock and CPU-time versions of the whole-run and the steady rate."""
    measures = {
        "whole_run": ("cold", "wall_s"),
        "whole_run_cpu": ("cold", "cpu_s"),
        "steady": ("warm", "run_s"),
        "steady_cpu": ("warm", "run_cpu_s"),
    }
    out = {}
    for peer in TOOLS[1:]:
        pairs = list(zip(per_tool["domainlm"], per_tool[peer], strict=True))
        out[f"domainlm/{peer}"] = {
            name: summarise([p[mode][key] / d[mode][key] for d, p in pairs]) for name, (mode, key) in measures.items()
        }
    return out


def provenance() -> dict:
    """Which code was measured: the commit, and the domainlm files that differ from it at run time."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], check=False, cwd=HERE.parent, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_domainlm_files": git("status", "--porcelain", "--", "src/domainlm").splitlines(),
    }


def versions() -> dict[str, str | None]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def preflight(paths: dict[str, Path], scratch: Path) -> None:
    """Every tool once on the warm-up batch: a missing peer stops the run before anything is timed."""
    for tool in TOOLS:
        run_worker(tool, "cold", {"corpus": paths["warmup"], "warmup": paths["warmup"]}, scratch)


def measure_repeat(repeat: int, paths: dict[str, Path], scratch: Path, per_tool: dict, probes: dict) -> None:
    """Every tool, cold then warm; the order rotates between repeats so that no tool always runs first."""
    order = TOOLS[repeat % len(TOOLS) :] + TOOLS[: repeat % len(TOOLS)]
    for tool in order:
        cold = run_worker(tool, "cold", paths, scratch)
        warm = run_worker(tool, "warm", paths, scratch, probe=tool in PROBES and tool not in probes)
        if "probe" in warm:
            probes[tool] = warm.pop("probe")
        per_tool[tool].append({"cold": cold, "warm": warm})
        print(
            f"repeat {repeat + 1} {tool}: whole run {cold['wall_s']:.2f} s (start-up {cold['startup_s']:.2f} s), "
            f"steady {warm['run_s']:.2f} s ({warm['run_cpu_s']:.2f} CPU s), load {cold['load_avg_1min']:.1f}",
            flush=True,
        )


def tool_results(per_tool: dict[str, list[dict]], docs: list[dict], injected: dict) -> dict:
    chars = sum(len(d["text"]) for d in docs)
    results = {}
    for tool, runs in per_tool.items():
        outputs = [r[mode]["kept"] for r in runs for mode in ("cold", "warm")]
        results[tool] = {
            **tool_summary(runs, len(docs), chars),
            **score_output(outputs[-1], injected),
            "same_output_every_run": all(o == outputs[0] for o in outputs),
            **({"dropped_by": runs[-1]["warm"]["dropped_by"]} if runs[-1]["warm"]["dropped_by"] else {}),
        }
    return results


def print_table(report: dict) -> None:
    print(f"{'tool':16} {'whole docs/s':>12} {'start-up s':>10} {'steady docs/s':>13} {'docs/CPU-s':>10} {'kept':>5}")
    for tool, r in report["results"].items():
        print(
            f"{tool:16} {r['whole_run_docs_per_s']['median']:12.1f} {r['startup_s']['median']:10.2f} "
            f"{r['steady_docs_per_s']['median']:13.1f} {r['steady_docs_per_cpu_s']['median']:10.1f} {r['docs_out']:5}"
        )
    for pair, r in report["ratios_domainlm_over_peer"].items():
        print(pair, {name: (v["min"], v["median"], v["max"]) for name, v in r.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-docs", type=int, default=100)
    parser.add_argument("--out", help="result file (default benchmarks/results/clean_throughput.json; none with --quick)")
    parser.add_argument("--quick", action="store_true", help="60 documents, 1 repeat: keeps the script working")
    # The worker's own arguments (the parent passes them; not for direct use).
    parser.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("cold", "warm"), help=argparse.SUPPRESS)
    for name in ("--input", "--warmup-input", "--work", "--result"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.docs, args.repeats, args.warmup_docs = 60, 1, 10
    if args.docs < 1 or args.repeats < 1 or args.warmup_docs < 1:
        sys.exit("clean_throughput: --docs, --repeats and --warmup-docs must be at least 1")
    out = Path(args.out) if args.out else None if args.quick else HERE / "results" / "clean_throughput.json"

    all_docs, injected = make_corpus(args.docs + args.warmup_docs)
    docs, warmup = all_docs[: args.docs], all_docs[args.docs :]
    scratch = Path(tempfile.mkdtemp(prefix="clean_bench_"))
    paths = {"corpus": scratch / "input" / "corpus.jsonl", "warmup": scratch / "warmup" / "warmup.jsonl"}
    write_jsonl(paths["corpus"], docs)
    write_jsonl(paths["warmup"], warmup)
    started = datetime.datetime.now(datetime.UTC)
    per_tool: dict[str, list[dict]] = {t: [] for t in TOOLS}
    probes: dict[str, dict] = {}
    code_at_start = provenance()  # domainlm may change under a long run: both ends are recorded
    try:
        preflight(paths, scratch)
        for repeat in range(args.repeats):
            measure_repeat(repeat, paths, scratch, per_tool, probes)
            # Written after every repeat, so that a run cut short still leaves the repeats it finished.
            report = build_report(args, started, code_at_start, docs, warmup, injected, per_tool, probes)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(report)


def build_report(
    args, started, code_at_start: dict, docs: list[dict], warmup: list[dict], injected: dict, per_tool: dict, probes: dict
) -> dict:
    loads = [r[mode]["load_avg_1min"] for runs in per_tool.values() for r in runs for mode in ("cold", "warm")]
    return {
        "benchmark": "clean_throughput",
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "gpu": None,
            "python": platform.python_version(),
            "load_avg_1min_min_max": [round(min(loads), 2), round(max(loads), 2)],
        },
        "code_at_start": code_at_start,
        "code_at_end": provenance(),
        "command": f"python benchmarks/clean_throughput.py --docs {args.docs} --repeats {args.repeats}",
        "versions": versions(),
        "input": {
            "docs": len(docs),
            "chars": sum(len(d["text"]) for d in docs),
            "warmup_docs": len(warmup),
            "source": "CMRC 2018 dev passages + UHGEval dev news, injected noise",
        },
        "method": "each tool in its own process per repeat and mode; cold = whole run as the parent sees it "
        "(interpreter start, imports, operators, cleaning, output); warm = start-up, then a warm-up batch, "
        "then the timed steady run; one core each (thread limits in env), tools in rotating order; "
        "CPU seconds next to wall seconds because the machine is shared",
        "repeats": args.repeats,
        "repeats_done": len(per_tool["domainlm"]),
        "results": tool_results(per_tool, docs, injected),
        "ratios_domainlm_over_peer": ratios(per_tool),
        "data_juicer_pii_probe": probes.get("data-juicer"),
        "datatrove_tokenizer_probe": probes.get("datatrove"),
    }


if __name__ == "__main__":
    main()
