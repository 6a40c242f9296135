"""Multiple-choice scoring of stored predictions: domainlm vs lm-evaluation-harness, side by side.

Same predictions, same gold letters, one process, one core (pure-Python scoring; nothing is parallel):
  - domainlm: ``domainlm.evals.scorers.score_item`` (extract_choice + compare) per item
  - lm-eval "strict-match": RegexFilter with MMLU flan-CoT's answer-phrase regex, then exact_match
  - lm-eval "flexible-extract": MultiChoiceRegexFilter (regex "(\\([A-Z]\\))", then option text, then ": X"),
    then exact_match with ignore_case / ignore_punctuation — the filters MMLU flan_cot_zeroshot configures
Targets for lm-eval are "(A)".."(D)", as in that task config.

Inputs (no downloads):
  - LawBench 1-2 (JEC-QA): 3 models x 500 real outputs from ../shared/benchmarks/lawbench; options parsed
    from the question text ("A:...;B:...")
  - Fin-Eva dev multiple choice: 1,247 items with the fixed prediction file of tests/evals/data
  - the labelled adversarial set (tests/evals/data/adversarial_extraction.jsonl, mcq part): extraction
    accuracy against hand labels (gold extraction, including "unparseable")

Reported: items/s (best of --repeat runs), ratio ours / peer, and extraction accuracy on the labelled set.

    /path/to/python-with-lm-eval benchmarks/scoring_throughput.py            # full run (about a minute)
    python benchmarks/scoring_throughput.py --quick                           # 100 items per input
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / ".." / "shared" / "benchmarks"
ADVERSARIAL = HERE.parent / "tests" / "evals" / "data" / "adversarial_extraction.jsonl"
FINEVA_PREDICTIONS = HERE.parent / "tests" / "evals" / "data" / "fineva_dev_predictions.jsonl"

STRICT_REGEX = ("((?<=The answer is )(.*)(?=.)|(?<=answer is )(.*)(?=.)|(?<=The answer: )(.*)(?=.)|"
                "(?<=The final answer: )(.*)(?=.))")
_OPTION = re.compile(r"([A-D])[:：](.*?)(?=;[A-D][:：]|$)", re.DOTALL)


def lawbench_items() -> list[dict]:
    items = []
    for model in ("GPT4", "qwen-7b-chat-hf", "chatglm2-6b-hf"):
        data = json.loads((SHARED / "lawbench" / "predictions" / "zero_shot" / model / "1-2.json").read_text("utf-8"))
        for key in sorted(data, key=int):
            row = data[key]
            prompt = row["origin_prompt"]
            text = prompt[0]["prompt"] if isinstance(prompt, list) else prompt
            question = text.split("\n", 1)[-1]
            options = {m.group(1): m.group(2).strip() for m in _OPTION.finditer(question)}
            choices = [options.get(letter, letter) for letter in "ABCD"]
            items.append({"id": f"{model}/{key}", "type": "mcq", "choices": choices, "answer": row["refr"][5],
                          "output": row["prediction"]})
    return items


def fineva_items() -> list[dict]:
    outputs = {}
    for line in FINEVA_PREDICTIONS.open(encoding="utf-8"):
        rec = json.loads(line)
        outputs[rec["id"]] = rec["output"]
    items = []
    for path in sorted((SHARED / "fineva").glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            if row.get("choices") and len(row["choices"]) <= 4:  # lm-eval targets below are (A)-(D)
                items.append({"id": row["id"], "type": "mcq", "choices": row["choices"], "answer": row["answer"],
                              "output": outputs[row["id"]]})
    return items


def adversarial_items() -> list[dict]:
    items = []
    for line in ADVERSARIAL.open(encoding="utf-8"):
        row = json.loads(line)
        if row["kind"] == "mcq" and row["n_options"] == 4 and (row["gold"] is None or len(row["gold"]) == 1):
            items.append({"id": row["id"], "type": "mcq", "choices": row.get("choices") or ["甲", "乙", "丙", "丁"],
                          "answer": row["gold"] or "A", "gold_extraction": row["gold"], "output": row["output"]})
    return items


# ------------------------------------------------------------------------------------------------


def ours(items: list[dict]) -> tuple[list[str | None], float]:
    from domainlm.evals.normalize import normalize_text
    from domainlm.evals.scorers import score_item

    normalize_text.cache_clear()  # no help from an earlier repeat
    verdicts = [score_item(item, item["output"]) for item in items]
    return [v["extracted"] for v in verdicts], sum(v["score"] for v in verdicts) / len(verdicts)


def lm_eval_pipeline(items: list[dict], flexible: bool) -> tuple[list[str | None], float]:
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import MultiChoiceRegexFilter, RegexFilter

    resps = [[item["output"]] for item in items]
    docs = [{"choices": item["choices"]} for item in items]
    if flexible:
        filt = MultiChoiceRegexFilter(regex_pattern=r"(\([A-Z]\))", group_select=-1, ignore_case=True,
                                      ignore_punctuation=True)
    else:
        filt = RegexFilter(regex_pattern=STRICT_REGEX)
    filtered = [r[0] for r in filt.apply(resps, docs)]  # take_first
    targets = [f"({item['answer']})" for item in items]
    score = exact_match_hf_evaluate(predictions=filtered, references=targets, ignore_case=True,
                                    ignore_punctuation=True)["exact_match"]
    letters = []
    for text in filtered:
        m = re.fullmatch(r"\s*\(?([A-Da-d])\)?[.。]?\s*", text)
        letters.append(m.group(1).upper() if m else None)
    return letters, float(score)


SYSTEMS = {
    "domainlm": ours,
    "lm-eval strict-match": lambda items: lm_eval_pipeline(items, flexible=False),
    "lm-eval flexible-extract": lambda items: lm_eval_pipeline(items, flexible=True),
}


def timed(fn, items, repeat: int) -> tuple[float, list, float]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        extracted, score = fn(items)
        best = min(best, time.perf_counter() - start)
    return best, extracted, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 items per input, 1 repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "scoring_throughput.json"))
    args = parser.parse_args()
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        sys.exit("lm-eval is not installed: pip install lm-eval (peer for this benchmark only)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    repeat = 1 if args.quick else args.repeat
    inputs = {"lawbench 1-2 (3 models)": lawbench_items(), "fineva dev mcq": fineva_items(),
              "adversarial (labelled)": adversarial_items()}
    if args.quick:
        inputs = {k: v[:100] for k, v in inputs.items()}
    # Warm-up: imports, OpenCC dictionaries, regex compilation — not part of scoring throughput.
    for fn in SYSTEMS.values():
        fn(inputs["fineva dev mcq"][:5])

    results, ratios = [], {}
    print(f"{'input':28} {'system':26} {'items':>6} {'items/s':>10} {'(no fixed)':>10} {'score':>7} {'extract acc':>12}")
    for name, items in inputs.items():
        speed = {}
        for system, fn in SYSTEMS.items():
            seconds, extracted, score = timed(fn, items, repeat)
            # A fixed cost per call (lm-eval's flexible filter builds a punctuation table over all of
            # Unicode on every apply) is measured on a single item and reported apart.
            fixed, _, _ = timed(fn, items[:1], repeat)
            speed[system] = len(items) / seconds
            row = {"input": name, "system": system, "items": len(items), "items_per_s": round(speed[system], 1),
                   "fixed_cost_per_call_s": round(fixed, 4),
                   # Marginal rate: the (n - 1) items beyond the first. None when noise swamps it.
                   "items_per_s_excluding_fixed_cost": (round((len(items) - 1) / (seconds - fixed), 1)
                                                        if seconds - fixed > 0.01 * seconds else None),
                   "score": round(score, 4)}
            if "gold_extraction" in items[0]:
                correct = sum(1 for item, got in zip(items, extracted, strict=True) if got == item["gold_extraction"])
                row["extraction_accuracy"] = round(correct / len(items), 4)
            results.append(row)
            marginal = row["items_per_s_excluding_fixed_cost"]
            print(f"{name:28} {system:26} {len(items):6d} {speed[system]:10.0f} "
                  f"{'n/a' if marginal is None else round(marginal):>10} {score:7.4f} "
                  f"{row.get('extraction_accuracy', ''):>12}")
        for peer in ("lm-eval strict-match", "lm-eval flexible-extract"):
            ratios[f"{name}: items/s domainlm / {peer}"] = round(speed["domainlm"] / speed[peer], 3)
    report = {
        "benchmark": "scoring_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_used": 1,
                    "load_avg_1m": os.getloadavg()[0], "gpu": None, "python": platform.python_version()},
        "command": "python " + " ".join(sys.argv),
        "versions": {"domainlm": version("domainlm"), "lm_eval": version("lm_eval")},
        "results": results,
        "ratios": ratios,
    }
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for key, value in ratios.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
