"""The quality gate: score the source and the result on the same eval suites, then promote or refuse.

Scoring is :func:`domainlm.evals.score`, the eval stage's own (suites, prompts, scorers), so a gate score
is the number ``domainlm eval`` would print. Both sides are prompted the same way: where one backend gives no
log-probabilities (llama.cpp), multiple-choice items are answered by generation on both sides.

Retention (result score / source score) comes with a 95% interval from a paired bootstrap over the items:
on a few dozen items, int8 "retaining 1.08" of its source is noise, and ``gate.json`` says so rather than
calling it a gain. The overall retention is not enough: the gate also compares every category (``gate_by``)
with :func:`domainlm.evals.compare_per_category`, the comparison the flywheel's promotion uses too, and
refuses a result worse than its source on any of them beyond the interval, however good its overall
ratio. It refuses a result whose outputs are mostly (or all) empty or degenerate, and a source that scores
0 (retention undefined: nothing to retain, no ratio); empty outputs score 0 everywhere, refusals included.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.evals import (
    FEW_ITEMS,
    MAX_SILENT_SHARE,
    Scores,
    Suite,
    compare_per_category,
    load_suite,
    score,
)
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


def retention(source_score: float, result_score: float) -> float | None:
    """result / source, or None when the source scores 0: there is nothing to retain, so no ratio."""
    if source_score <= 0:
        return None
    return result_score / source_score


def describe_retention(kept: float | None, ci: list[float | None] | None, confidence: float = 0.95) -> tuple[str | None, str]:
    """(note, sentence) for a retention and its interval. The note is "within noise" whenever the interval
    holds 1: then the result is neither better nor worse than the source as far as these items can tell,
    and a ratio above 1 is no gain."""
    if kept is None:
        return None, "retention undefined: the source scores 0, so retention cannot be measured (nothing to retain)"
    text = f"retention {kept:.3f}"
    if ci is None:
        return None, text
    lo, hi = ci[0], ci[1] if ci[1] is not None else float("inf")
    text += f" ({confidence:.0%} CI {lo:.3f}-{hi:.3f})"
    if lo <= 1 <= hi:
        note = "within noise"
        return note, f"{text}: within noise of the source (these items cannot tell the two apart)"
    note = "above the source" if lo > 1 else "below the source"
    return note, f"{text}: {note} beyond noise"


def gate_verdict(items: list[dict], source_records: list[dict], result_records: list[dict], *, min_retention: float,
                 seed: int = 0, levels: tuple[str, ...] | list[str] = ("category",), confidence: float = 0.95,
                 min_items: int = FEW_ITEMS, few_items: str = "point", max_silent_share: float = MAX_SILENT_SHARE) -> dict:
    """Whether the result may be promoted, from both sides' verdicts on the same items (with the reasons if not).

    Refused when: the source scores 0 (retention undefined); the overall retention is below
    ``min_retention``; the result is worse than the source on any group (``levels``) beyond the group's
    paired-bootstrap interval, whatever the overall retention (:func:`domainlm.evals.compare_per_category`
    says how groups with too few items are decided); or the result's outputs are mostly (or all) empty or
    degenerate. Empty and degenerate outputs score 0 throughout, refusal items included."""
    comparison = compare_per_category(items, source_records, result_records, levels=levels, min_retention=min_retention,
                                      confidence=confidence, min_items=min_items, few_items=few_items,
                                      max_silent_share=max_silent_share, names=("source", "result"), seed=seed)
    overall = comparison["overall"]
    kept = retention(overall["reference"], overall["candidate"])
    ci = overall["retention_ci"] if kept is not None else None
    silent, n = comparison["silent"], comparison["silent"]["n"]
    reasons = []
    if kept is None:
        reasons.append("the source scores 0 on the gate suites, so retention is undefined (nothing to retain; "
                       "check that the suites fit the model, and the source's own outputs)")
    if kept is not None and kept < min_retention:
        reasons.append(f"retention {kept:.3f} < {min_retention}")
    reasons += comparison["refusals"]
    note, sentence = describe_retention(kept, ci, confidence)
    passed = not reasons
    reason = "; ".join(reasons) if reasons else None
    return {"retention": round(kept, 4) if kept is not None else None, "retention_ci95": ci, "retention_note": note,
            "passed": passed, "reason": reason, "refusals": reasons, "warnings": comparison["warnings"],
            "message": f"{sentence}; {'passed' if passed else 'refused: ' + reason}",
            "degenerate_share": {"source": round(silent["source"] / n, 4) if n else 0.0,
                                 "result": round(silent["result"] / n, 4) if n else 0.0},
            "overall_difference": overall["difference"], "overall_difference_ci": overall["difference_ci"],
            "groups": comparison["groups"],
            "rule": {k: comparison[k] for k in ("levels", "min_retention", "confidence", "min_items", "few_items",
                                                "max_silent_share")}}


def run_gate(source: str | Path, result: str | Path, suite_paths: list[str], *, min_retention: float,
             batch_size: int = 8, seed: int = 0, limit: int = 0, speed_prompts: list[list[dict]] | None = None,
             **rule) -> dict:
    """Score ``source`` and ``result`` (on at most ``limit`` items per task, the same items for both);
    the report says whether the result may be promoted. ``speed_prompts`` (conversations) are what decoding
    is timed on; without them ``tokens_per_s`` is None. ``rule``: the per-group settings of
    :func:`gate_verdict` (``CompressConfig.gate_rule()``)."""
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
                           seed=seed, **rule)
    return {"suites": [str(s.path) for s in suites], "mcq_by_generation": generate_mcq, "limit": limit,
            "source": src, "result": res, "min_retention": min_retention,
            "size_ratio": round(res["size_bytes"] / max(src["size_bytes"], 1), 4), **verdict}


def _prompt_ids(source: str | Path, conversations: list[list[dict]]) -> list[list[int]]:
    """The same prompt ids for both sides, from the source's tokenizer (parity has shown both tokenize alike)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    return [tokenizer(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False)["input_ids"] for c in conversations]
