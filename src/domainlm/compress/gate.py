"""The quality gate: score the source and the result on the same eval suites, then promote or refuse.

Scoring is the eval stage's own (``domainlm.evals``: suites, prompts, scorers), so a gate score is the
number ``domainlm eval`` would print. Both sides are prompted the same way: where one backend gives no
log-probabilities (llama.cpp), multiple-choice items are answered by generation on both sides.
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
                generate_mcq: bool = False, limit: int = 0) -> dict:
    """Score, load time, tokens/s and size of one model on the suites."""
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
        results = summarize(items, score_predictions(items, predictions), seed=seed)
        speed = decode_speed(lm, speed_prompts) if speed_prompts else None
    finally:
        lm.close()
    return {"spec": spec, "score": results["overall"]["score"], "ci95": results["overall"].get("ci95"),
            "n": results["overall"]["n"], "tasks": {t: b["score"] for t, b in results.get("tasks", {}).items()},
            "load_s": round(load_s, 3), "tokens_per_s": round(speed, 2) if speed else None,
            "eval_wall_s": round(usage.get("wall_s", 0.0), 3), "size_bytes": size_on_disk(spec)}


def retention(source_score: float, result_score: float) -> float:
    """result / source; a source scoring 0 retains fully when the result does not fall below it."""
    if source_score <= 0:
        return 1.0 if result_score >= source_score else 0.0
    return result_score / source_score


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
    src = score_model(str(source), suites, batch_size=batch_size, seed=seed, speed_prompts=speed_prompts, generate_mcq=generate_mcq,
                      limit=limit)
    res = score_model(str(result), suites, batch_size=batch_size, seed=seed, speed_prompts=speed_prompts, generate_mcq=generate_mcq,
                      limit=limit)
    kept = retention(src["score"], res["score"])
    return {"suites": [str(s.path) for s in suites], "mcq_by_generation": generate_mcq, "limit": limit,
            "source": src, "result": res, "retention": round(kept, 4), "min_retention": min_retention,
            "size_ratio": round(res["size_bytes"] / max(src["size_bytes"], 1), 4),
            "passed": kept >= min_retention}
