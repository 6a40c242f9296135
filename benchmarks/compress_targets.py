"""Compression targets on the sample domain: size, tokens/s and domain-score retention, GGUF beside transformers.

One run, one machine: a tiny Qwen2 model (the ``tiny`` recipe shape, tokenizer learned from the sample
documents) is trained on the sample's training tasks and documents; then every target is built
with ``domainlm.compress.compress`` and its quality gate scores source and result on the sample's
``tasks/eval``. The peer of a GGUF file is the same model run in transformers (the gate's "source" row):
tokens/s of llama.cpp vs transformers on the same prompts, greedy, CPU threads as the machine has.

    python benchmarks/compress_targets.py                # full run
    python benchmarks/compress_targets.py --quick        # smaller model, fewer steps (keeps the script working)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ["merge", "int8", "int4", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "distill", "prune"]


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--work", default=None, help="Working folder (default: a temporary one).")
    args = parser.parse_args()

    from domainlm.compress import CompressConfig, compress
    from domainlm.compress.data import training_examples
    from domainlm.compress.distill import train_student
    from domainlm.compress.merge import save_hf
    from domainlm.errors import DomainlmError
    from domainlm.io import iter_jsonl, read_json
    from domainlm.models.hf import load_hf
    from domainlm.models.testing import make_tiny_model
    from domainlm.sample.defaults import SPEED_PROMPTS
    from domainlm.sample.defaults import gate_suite as default_suite

    work = Path(args.work or tempfile.mkdtemp(prefix="compress-bench-"))
    suite = default_suite()
    root = suite.parent.parent
    texts = [r["text"] for r in iter_jsonl(root / "truth" / "documents.jsonl")]
    shape = (dict(vocab_size=1500, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=128)
             if args.quick else
             dict(vocab_size=4096, hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=2, intermediate_size=768))
    steps = args.train_steps or (80 if args.quick else 300)
    started = time.perf_counter()
    base = make_tiny_model(work / "base", vocab_from=texts, **shape)
    train_files = sorted(str(p) for p in (root / "tasks" / "train").glob("*.jsonl"))
    documents = str(root / "truth" / "documents.jsonl")
    model, tokenizer = load_hf(base, device="cpu", dtype="float32")
    examples, _ = training_examples(train_files + [documents], tokenizer, 512)
    # plain cross-entropy (the compress stage's loop without a teacher): the expert every target starts from
    train_student(model, None, examples, CompressConfig(target="distill", steps=steps, lr=2e-3), tokenizer.pad_token_id,
                  kd_weight=0.0)
    save_hf(model, tokenizer, work / "expert")
    print(f"trained the expert in {time.perf_counter() - started:.0f}s", file=sys.stderr)

    rows = []
    for target in args.targets.split(","):
        cfg = CompressConfig(target=target, min_retention=0.0, steps=40 if args.quick else 150,
                             suites=[str(suite)], data=train_files + [documents])
        t0 = time.perf_counter()
        try:
            compress(str(work / "expert"), work / target, cfg, force=True, speed_prompts=SPEED_PROMPTS)
        except DomainlmError as exc:
            rows.append({"target": target, "error": str(exc)})
            print(f"{target}: {exc}", file=sys.stderr)
            continue
        gate = read_json(work / target / "gate.json")
        parity = read_json(work / target / "parity.json")
        row = {"target": target, "build_and_gate_s": round(time.perf_counter() - t0, 1),
               "size_bytes": gate["result"]["size_bytes"], "source_size_bytes": gate["source"]["size_bytes"],
               "size_ratio": gate["size_ratio"], "tokens_per_s": gate["result"]["tokens_per_s"],
               "source_tokens_per_s": gate["source"]["tokens_per_s"], "load_s": gate["result"]["load_s"],
               "score": gate["result"]["score"], "source_score": gate["source"]["score"],
               "retention": gate["retention"], "mcq_by_generation": gate["mcq_by_generation"],
               "parity_tokens_identical": parity["tokens_identical"],
               "greedy_agree": f"{parity['greedy_agree']}/{parity['prompts']}"}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    ratios = {}
    for row in rows:
        if "error" in row:
            continue
        ratios[f"{row['target']} size / source"] = row["size_ratio"]
        if row["source_tokens_per_s"]:
            ratios[f"{row['target']} tokens/s / transformers source"] = round(row["tokens_per_s"] / row["source_tokens_per_s"], 3)
        ratios[f"{row['target']} retention"] = row["retention"]
    result = {
        "benchmark": "compress_targets",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                    "python": platform.python_version()},
        "command": "python benchmarks/compress_targets.py" + (" --quick" if args.quick else ""),
        "versions": {n: _version(n) for n in ("torch", "transformers", "torchao", "llama-cpp-python", "gguf")},
        "model": {**shape, "train_steps": steps, "suite": str(suite)},
        "results": rows,
        "ratios": ratios,
    }
    out = HERE / "results" / "compress_targets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'target':<14}{'size MB':>9}{'x src':>7}{'tok/s':>9}{'src tok/s':>10}{'score':>8}{'src':>8}{'retain':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['target']:<14} error: {row['error'][:80]}")
            continue
        print(f"{row['target']:<14}{row['size_bytes'] / 1e6:>9.2f}{row['size_ratio']:>7.2f}{row['tokens_per_s'] or 0:>9.1f}"
              f"{row['source_tokens_per_s'] or 0:>10.1f}{row['score']:>8.3f}{row['source_score']:>8.3f}{row['retention']:>8.3f}")


if __name__ == "__main__":
    main()
