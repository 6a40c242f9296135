"""The quality gate: score the source and the result on the same eval suites, then promote or refuse.

Scoring is the eval stage's own (``domainlm.evals``: suites, prompts, scorers), so a gate score is the
number ``domainlm eval`` would print. Both sides are prompted the same way: where one backend gives no
log-probabilities (llama.cpp), multiple-choice items are answered by generation on both sides.

Retention (result score / source score) comes with a 95% interval from a paired bootstrap over the items:
on a few dozen items, int8 "retaining 1.08" of its source is noise, and ``gate.json`` says so rather than
calling it a gain. The gate refuses a result whose outputs are mostly empty or degenerate, and a source
that scores 0 (then there is nothing to retain, and no ratio to measure).
"""

from __future__ import annotations

import time
from pathlib import Path

from domainlm.errors import DomainlmError

SPEED_PROMPTS = [
    [{"role": "user", "content": "请介绍一下海港银行的信用卡产品。"}],
    [{"role": "user", "content": "What documents do I need to open a savings account?"}],
    [{"role": "user", "content": "定期存款提前支取怎么计息？"}],
    [{"role": "user", "content": "Explain the fees of a cross-border transfer."}],
]


def default_suite() -> Path:
    """The sample domain's ``tasks/eval`` (seed 0, size tiny), generated once into the cache."""
    from domainlm.models.tiny import cache_root

    folder = cache_root() / "sample" / "seed0-tiny"
    if not (folder / "tasks" / "eval").is_dir():
        try:
            from domainlm.sample import generate_sample
        except ImportError:
            raise DomainlmError("no --gate suite given and the sample domain generator is not installed") from None
        generate_sample(folder, seed=0, size="tiny")
    return folder / "tasks" / "eval"


def size_on_disk(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load(spec: str, batch_size: int):
    from domainlm.models import load_model, parse_spec

    kind = parse_spec(spec).kind
    if kind in ("tiny", "hf"):
        return load_model(spec, batch_size=batch_size, device="cpu")
    if kind == "gguf":
        return load_model(spec, n_ctx=4096)
    return load_model(spec)


def decode_speed(lm, prompts: list[list[int]], new_tokens: int = 48) -> float:
    """Greedy tokens/s, one request at a time (the edge case), exactly ``new_tokens`` per prompt.

    End-of-turn tokens are ignored so every backend decodes the same number of tokens whatever the model
    chose to say; prefill is included, as a user waits for it too."""
    if hasattr(lm, "llm"):  # llama.cpp

        def run(ids: list[int]) -> int:
            n = 0
            for _ in lm.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
                n += 1
                if n >= new_tokens:
                    break
            return n
    else:  # transformers
        import torch

        def run(ids: list[int]) -> int:
            batch = torch.tensor([ids], device=lm.device)
            with torch.inference_mode():
                out = lm.model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=False,
                                        max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                        pad_token_id=lm.tokenizer.pad_token_id)
            return out.shape[1] - batch.shape[1]

    run(prompts[0][:8])  # warm-up: first-call allocations are not speed
    started = time.perf_counter()
    produced = sum(run(ids) for ids in prompts)
    return produced / max(time.perf_counter() - started, 1e-9)


def score_model(spec: str, suites: list, *, batch_size: int = 8, seed: int = 0, speed_prompts=None,
                generate_mcq: bool = False, limit: int = 0) -> tuple[dict, list[dict], list[dict]]:
    """Score, load time, tokens/s and size of one model on the suites; with the items and their verdicts,
    which the paired bootstrap of :func:`gate_verdict` needs."""
    from domainlm.evals.pipeline import limit_items
    from domainlm.evals.runner import run_model
    from domainlm.evals.scoring import all_items, score_predictions, summarize

    started = time.perf_counter()
    lm = _load(spec, batch_size)
    load_s = time.perf_counter() - started
    try:
        configs = {s.name: (s.config.model_copy(update={"mcq_mode": "generate"}) if generate_mcq else s.config)
                   for s in suites}
        items = limit_items(all_items(suites), limit, seed)
        predictions, usage = run_model(lm, items, configs, batch_size=batch_size, seed=seed)
        records = score_predictions(items, predictions)
        results = summarize(items, records, seed=seed)
        speed = decode_speed(lm, speed_prompts) if speed_prompts else None
    finally:
        lm.close()
    overall = results["overall"]
    summary = {"spec": spec, "score": overall["score"], "ci95": overall.get("ci95"), "n": overall["n"],
               "degenerate": overall["degenerate"], "empty": overall["empty"],
               "tasks": {t: b["score"] for t, b in results.get("tasks", {}).items()},
               "load_s": round(load_s, 3), "tokens_per_s": round(speed, 2) if speed else None,
               "eval_wall_s": round(usage.get("wall_s", 0.0), 3), "size_bytes": size_on_disk(spec)}
    return summary, items, records


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
    from domainlm.evals.scoring import count_silent, task_counts
    from domainlm.evals.stats import paired_bootstrap, ratio_interval

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
             batch_size: int = 8, seed: int = 0, limit: int = 0) -> dict:
    """Score ``source`` and ``result`` (on at most ``limit`` items per task, the same items for both);
    the report says whether the result may be promoted."""
    from transformers import AutoTokenizer

    from domainlm.evals.tasks import load_suite
    from domainlm.models import parse_spec

    suites = [load_suite(p) for p in (suite_paths or [str(default_suite())])]
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    # the same prompt ids for both sides (parity has shown both tokenize them alike)
    speed_prompts = [tokenizer(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                               add_special_tokens=False)["input_ids"] for c in SPEED_PROMPTS]

    generate_mcq = any(parse_spec(str(s)).kind in ("gguf", "openai") for s in (source, result))
    src, items, src_records = score_model(str(source), suites, batch_size=batch_size, seed=seed,
                                          speed_prompts=speed_prompts, generate_mcq=generate_mcq, limit=limit)
    res, _, res_records = score_model(str(result), suites, batch_size=batch_size, seed=seed,
                                      speed_prompts=speed_prompts, generate_mcq=generate_mcq, limit=limit)
    verdict = gate_verdict(items, src_records, res_records, min_retention=min_retention, seed=seed)
    return {"suites": [str(s.path) for s in suites], "mcq_by_generation": generate_mcq, "limit": limit,
            "source": src, "result": res, "min_retention": min_retention,
            "size_ratio": round(res["size_bytes"] / max(src["size_bytes"], 1), 4), **verdict}
