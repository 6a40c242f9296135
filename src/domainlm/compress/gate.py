"""The quality gate: score the source and the result on the same eval suites, then promote or refuse.

Scoring is :func:`domainlm.evals.score`, the eval stage's own (suites, prompts, scorers), so a gate score
is the number ``domainlm eval`` would print. Both sides are prompted the same way: where one backend gives no
log-probabilities (llama.cpp), multiple-choice items are answered by generation on both sides.

Retention (result score / source score) comes with a 95% interval from a paired bootstrap over the items:
on a few dozen items, int8 "retaining 1.08" of its source is noise, and ``gate.json`` says so rather than
calling it a gain. The gate refuses a result whose outputs are mostly empty or degenerate, and a source
that scores 0 (then there is nothing to retain, and no ratio to measure).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.evals import Scores, Suite, count_silent, load_suite, paired_bootstrap, ratio_interval, score, task_counts
from domainlm.models import load_scoring_model, parse_spec


def size_on_disk(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def gate_suites(suites: list[Suite], *, generate_mcq: bool) -> list[Suite]:
    """The suites as the gate asks them: multiple choice by generation when one side has no log-probabilities,
    and no judge model (the gate compares the scorers' own verdicts, so both sides are graded by rule)."""
    update = {"judge": None, **({"mcq_mode": "generate"} if generate_mcq else {})}
    return [dataclasses.replace(s, config=s.config.model_copy(update=update)) for s in suites]


def score_model(spec: str, suites: list[Suite], *, batch_size: int = 8, seed: int = 0,
                speed_prompts: list[list[int]] | None = None, limit: int = 0) -> tuple[dict, Scores]:
    """Score, load time, tokens/s and size of one model on the suites (on CPU, where an edge model runs);
    with its :class:`~domainlm.evals.Scores`, whose items and verdicts the paired bootstrap of
    :func:`gate_verdict` needs."""
    started = time.perf_counter()
    lm = load_scoring_model(spec, batch_size=batch_size, device="cpu")
    load_s = time.perf_counter() - started
    try:
        scores = score(lm, suites, batch_size=batch_size, seed=seed, limit=limit)
        speed = lm.decode_speed(speed_prompts) if speed_prompts else None
    finally:
        lm.close()
    overall = scores.results["overall"]
    summary = {"spec": spec, "score": overall["score"], "ci95": overall.get("ci95"), "n": overall["n"],
               "degenerate": overall["degenerate"], "empty": overall["empty"],
               "tasks": {t: b["score"] for t, b in scores.results.get("tasks", {}).items()},
               "load_s": round(load_s, 3), "tokens_per_s": round(speed, 2) if speed else None,
               "eval_wall_s": round(scores.usage.get("wall_s", 0.0), 3), "size_bytes": size_on_disk(spec)}
    return summary, scores


# A result more than half of whose outputs are empty, punctuation or loops is broken, whatever its score
# ratio: its few real answers cannot stand for the model (the int8 of a model that answered "" to 33 of
# 34 questions "retained 1.083").
MAX_DEGENERATE_SHARE = 0.5


def retention(source_score: float, result_score: float) -> float | None:
    """result / source, or None when the source scores 0: there is nothing to retain, so no ratio."""
    if source_score <= 0:
        return None
    return result_score / source_score


def describe_retention(kept: float | None, ci: list[float] | None) -> tuple[str | None, str]:
    """(note, sentence) for a retention and its interval. The note is "within noise" whenever the interval
    holds 1: then the result is neither better nor worse than the source as far as these items can tell,
    and a ratio above 1 is no gain."""
    if kept is None:
        return None, "retention cannot be measured: the source scores 0"
    text = f"retention {kept:.3f}"
    if ci is None:
        return None, text
    text += f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})"
    if ci[0] <= 1 <= ci[1]:
        note = "within noise"
        return note, f"{text}: within noise of the source (these items cannot tell the two apart)"
    note = "above the source" if ci[0] > 1 else "below the source"
    return note, f"{text}: {note} beyond noise"


def gate_verdict(items: list[dict], source_records: list[dict], result_records: list[dict], *, min_retention: float,
                 seed: int = 0) -> dict:
    """Retention, its paired-bootstrap interval, and whether the result may be promoted (with the reason if
    not), from both sides' verdicts on the same items."""
    if [r["id"] for r in source_records] != [r["id"] for r in result_records]:
        raise DomainlmError("gate: source and result were not scored on the same items")
    tasks_src, tasks_res = task_counts(items, source_records), task_counts(items, result_records)

    def overall(tasks: dict) -> float:
        # the macro mean over tasks, as results.json's overall score
        return sum(float(main(counts.sum(axis=0))) for counts, main in tasks.values()) / len(tasks) if tasks else 0.0

    src_score, res_score = overall(tasks_src), overall(tasks_res)
    kept = retention(src_score, res_score)
    ci = None
    if kept is not None:
        samples_src, samples_res = paired_bootstrap(tasks_src, tasks_res, seed=seed)
        ci = ratio_interval(samples_src, samples_res)
    n = len(items)
    silent_src, silent_res = count_silent(source_records)["degenerate"], count_silent(result_records)["degenerate"]
    reasons = []
    if kept is None:
        reasons.append("the source scores 0 on the gate suites, so retention cannot be measured "
                       "(check that the suites fit the model, and the source's own outputs)")
    if n and silent_res / n > MAX_DEGENERATE_SHARE:
        reasons.append(f"{silent_res} of {n} result outputs are empty or degenerate (source: {silent_src} of {n})")
    if kept is not None and kept < min_retention:
        reasons.append(f"retention {kept:.3f} < {min_retention}")
    note, sentence = describe_retention(kept, ci)
    passed = not reasons
    reason = "; ".join(reasons) if reasons else None
    return {"retention": round(kept, 4) if kept is not None else None, "retention_ci95": ci, "retention_note": note,
            "passed": passed, "reason": reason,
            "message": f"{sentence}; {'passed' if passed else 'refused: ' + reason}",
            "degenerate_share": {"source": round(silent_src / n, 4) if n else 0.0,
                                 "result": round(silent_res / n, 4) if n else 0.0}}


def run_gate(source: str | Path, result: str | Path, suite_paths: list[str], *, min_retention: float,
             batch_size: int = 8, seed: int = 0, limit: int = 0, speed_prompts: list[list[dict]] | None = None) -> dict:
    """Score ``source`` and ``result`` (on at most ``limit`` items per task, the same items for both);
    the report says whether the result may be promoted. ``speed_prompts`` (conversations) are what decoding
    is timed on; without them ``tokens_per_s`` is None."""
    if not suite_paths:
        raise DomainlmError("the quality gate needs suites to score on: pass --gate SUITE (or turn the gate off)")
    generate_mcq = any(parse_spec(str(s)).kind in ("gguf", "openai") for s in (source, result))
    suites = gate_suites([load_suite(p) for p in suite_paths], generate_mcq=generate_mcq)
    prompt_ids = _prompt_ids(source, speed_prompts) if speed_prompts else None
    src, src_scores = score_model(str(source), suites, batch_size=batch_size, seed=seed, speed_prompts=prompt_ids,
                                  limit=limit)
    res, res_scores = score_model(str(result), suites, batch_size=batch_size, seed=seed, speed_prompts=prompt_ids,
                                  limit=limit)
    verdict = gate_verdict(src_scores.items, src_scores.records, res_scores.records, min_retention=min_retention,
                           seed=seed)
    return {"suites": [str(s.path) for s in suites], "mcq_by_generation": generate_mcq, "limit": limit,
            "source": src, "result": res, "min_retention": min_retention,
            "size_ratio": round(res["size_bytes"] / max(src["size_bytes"], 1), 4), **verdict}


def _prompt_ids(source: str | Path, conversations: list[list[dict]]) -> list[list[int]]:
    """The same prompt ids for both sides, from the source's tokenizer (parity has shown both tokenize alike)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    return [tokenizer(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False)["input_ids"] for c in conversations]
