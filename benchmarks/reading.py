"""Does the demo's model read its passages? Tuned closed-book vs tuned + KB on facts it was and was not taught.

The demo promises that a knowledge base helps the tuned model on knowledge questions. That needs a model
that takes answers from passages it is shown. This script builds the sample domain as ``domainlm demo``
does (clean → kb → synth → cpt → sft, the demo's settings), then scores the sft model on the synthesized
knowledge questions, split into facts taught in sft and **held-out** facts (``seen_in_train: false``,
answerable only from the KB), closed-book and with the KB's passages (``--kb``, k = 3, as eval's ``tuned+kb``).
The KB's extractive reader (no model) answers the same questions as the reference reader. Every sft
budget in ``--steps`` is trained from the same cpt model, so the row for a budget is the demo's model at
that budget.

    python benchmarks/reading.py                       # small sample, sft 300 and 600 steps, probes 400 steps
    python benchmarks/reading.py --quick               # tiny sample, 2 steps (keeps the script working)

Two skill probes isolate why: ``tiny`` trained from scratch for ``--probe-steps`` on nothing but (a) copying a
span of a sample document (``复述：<span>`` → ``<span>``) and (b) looking up a value by its key among 2–6
``编号<key>：<value>`` lines, scored by exact match on 64 held-out rows. Reading a passage needs both.

The KB is built without the dense embedder (``kb.embedder=none``: BM25 only) to keep the run short; the
sample's questions name their product and attribute, so BM25 finds the passage.
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
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _split_scores(items: list[dict], records: list[dict]) -> dict[str, dict]:
    """F1 and 'answer contained' of the qa records, for taught and held-out facts."""
    by_id = {item["id"]: item for item in items}
    out = {}
    for split, seen in (("taught", True), ("held-out", False)):
        chosen = [r for r in records if by_id[r["id"]]["type"] == "qa" and by_id[r["id"]]["meta"]["seen_in_train"] is seen]
        out[split] = {"n": len(chosen), "f1": _mean([r["score"] for r in chosen]),
                      "contains": _mean([float(r.get("contains", 0.0)) for r in chosen])}
    return out


def _probe_rows(texts: list[str], task: str, n: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(f"{task}/{seed}")

    def span(low: int, high: int) -> str:
        text = rng.choice(texts)
        size = rng.randint(low, high)
        start = rng.randint(0, max(0, len(text) - size))
        return text[start : start + size].replace("\n", " ")

    rows = []
    for _ in range(n):
        if task == "copy":
            value = span(8, 40)
            prompt = "复述：" + value
        else:
            keys = rng.sample(range(100, 1000), rng.randint(2, 6))
            values = [span(3, 10) for _ in keys]
            asked = rng.randrange(len(keys))
            prompt = "\n".join(f"编号{k}：{v}" for k, v in zip(keys, values, strict=True)) + f"\n编号{keys[asked]}是什么？"
            value = values[asked]
        rows.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": value}]})
    return rows


def probe(texts: list[str], task: str, steps: int, work: Path) -> dict:
    """Exact match of ``tiny`` trained from scratch for ``steps`` on one skill (copy | lookup)."""
    from domainlm.io import write_jsonl
    from domainlm.models import load_model
    from domainlm.train.config import TrainConfig
    from domainlm.train.stage import train

    rows = _probe_rows(texts, task, 6000, seed=0)
    held_out, rows = rows[:64], rows[64:]
    write_jsonl(work / f"probe-{task}.jsonl", rows)
    started = time.perf_counter()
    train("tiny", [work / f"probe-{task}.jsonl"], work / f"probe-{task}", TrainConfig(
        stage="sft", max_steps=steps, lr=2e-3, seq_len=256, batch_size=8))
    train_s = round(time.perf_counter() - started, 1)
    model = load_model(str(work / f"probe-{task}"))
    outputs = []
    for start in range(0, len(held_out), 16):
        outputs += model.chat([[r["messages"][0]] for r in held_out[start : start + 16]], max_new_tokens=48, temperature=0.0)
    model.close()
    exact = sum(o.strip() == r["messages"][1]["content"].strip() for o, r in zip(outputs, held_out, strict=True))
    return {"system": f"tiny from scratch, {task} only", "probe": task, "steps": steps, "train_s": train_s,
            "exact_match": round(exact / len(held_out), 4), "n": len(held_out)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", default=None, help="Comma-separated sft step budgets (default 300,900).")
    parser.add_argument("--probe-steps", type=int, default=None, help="Steps of each skill probe (default 400).")
    parser.add_argument("--work", default=None, help="Working folder (default: a temporary one).")
    parser.add_argument("--out", default=str(HERE / "results" / "reading.json"))
    args = parser.parse_args(argv)

    import yaml

    from domainlm.evals import score
    from domainlm.evals.aggregate import all_items, score_predictions
    from domainlm.evals.tasks import load_suite
    from domainlm.io import iter_jsonl
    from domainlm.pipeline import build
    from domainlm.pipeline.demo import demo_config
    from domainlm.pipeline.extractive import extractive_predictions
    from domainlm.sample import generate_sample

    size = "tiny" if args.quick else "small"
    steps = [int(s) for s in (args.steps or ("2" if args.quick else "300,600")).split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="reading-bench-"))
    generate_sample(work / "sample", seed=0, size=size)
    config = demo_config("tiny", size, 0)
    config.update({"kb": {"embedder": "none"}, "compress": {"targets": []}})
    config_path = work / "domainlm.yaml"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    build(config_path, until="synth")

    artifacts = work / "artifacts"
    kb, suite = artifacts / "kb", artifacts / "synth" / "eval"
    items = all_items([load_suite(suite)])
    rows = []

    reader = {r["id"]: r for r in extractive_predictions(kb, [str(suite)])}
    rows.append({"system": "KB extractive reader (no model)", "sft_steps": 0,
                 **_split_scores(items, score_predictions(items, reader))})
    for budget in steps:
        started = time.perf_counter()
        build(config_path, [f"train.sft.max_steps={budget}"], until="train")
        train_s = round(time.perf_counter() - started, 1)
        model = str(artifacts / "models" / "sft")
        for label, with_kb in (("tuned (closed-book)", None), ("tuned + KB", str(kb))):
            records = score(model, [load_suite(suite)], kb=with_kb, label=label).records
            rows.append({"system": label, "sft_steps": budget, "train_s": train_s, **_split_scores(items, records)})
        print(json.dumps(rows[-2:], ensure_ascii=False), file=sys.stderr)

    texts = [r["text"] for r in iter_jsonl(work / "sample" / "truth" / "documents.jsonl")]
    probes = [probe(texts, task, args.probe_steps or (2 if args.quick else 400), work) for task in ("copy", "lookup")]
    print(json.dumps(probes, ensure_ascii=False), file=sys.stderr)

    ratios = {}
    for budget in steps:
        closed, with_kb = [r for r in rows if r["sft_steps"] == budget and r["system"] != "KB extractive reader (no model)"]
        if closed["held-out"]["f1"]:
            ratios[f"held-out F1, tuned + KB / tuned, {budget} steps"] = round(with_kb["held-out"]["f1"] / closed["held-out"]["f1"], 3)
    result = {
        "benchmark": "reading",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                    "python": platform.python_version()},
        "command": "python benchmarks/reading.py" + (" --quick" if args.quick else "") + (f" --steps {args.steps}" if args.steps else "")
        + (f" --probe-steps {args.probe_steps}" if args.probe_steps else ""),
        "versions": {"domainlm": version("domainlm"), "torch": version("torch"), "transformers": version("transformers")},
        "sample_size": size,
        "results": rows,
        "probes": probes,
        "ratios": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'system':32} {'steps':>5} {'taught F1':>9} {'held-out F1':>11} {'held-out contains':>17}")
    for row in rows:
        print(f"{row['system']:32} {row['sft_steps']:>5} {row['taught']['f1'] or 0:>9.3f} {row['held-out']['f1'] or 0:>11.3f} "
              f"{row['held-out']['contains'] or 0:>17.3f}")
    for row in probes:
        print(f"probe {row['probe']:7} {row['steps']:>5} steps: exact match {row['exact_match']:.3f} on {row['n']} held-out rows")
    return result


if __name__ == "__main__":
    main()
