"""Constrained decoding: domainlm's llguidance processor against xgrammar's, and against no constraint.

    python benchmarks/constrained_decoding.py [--model tiny] [--seeds 5] [--max-tokens 256] [--quick]

Two measurements, one strict JSON schema (nested object, enum, array, integer and number fields):

1. **Per token, outside generate()**: the grammar's logits processor replays one valid answer (Chinese and
   English text) token by token; best of 5 repeats. Vocabularies: the `tiny` model's, and a 32k byte-level
   BPE trained on CMRC 2018 contexts (real Chinese text, ``../shared/benchmarks/cmrc2018``), where the
   mask over a realistic vocabulary is the cost that matters.
2. **End to end**: ``generate()`` on the model (random weights), temperature 1.0, one run per seed, with
   no processor (forced to ``--max-tokens`` tokens) and with each grammar processor; ms per new token,
   ms per step inside the processor, and how many answers parse and validate. A constrained answer ends
   sooner than the forced baseline and shorter sequences are cheaper per token, so the overhead to read
   is the processor's time per step over the unconstrained time per token (in ``ratios``).

Times are CPU time of the calling thread with torch on one thread (the build box is shared: wall time is
noisy). The peer, xgrammar, runs only where it is importable (``pip install xgrammar`` in a separate
environment: it pulls in triton, ~1 GB, so it is not installed beside domainlm); otherwise the output says
so and only llguidance is measured. xgrammar's HF processor has no closing phase (domainlm's reserve, see
``domainlm.serve.constrained``), so its answers from random weights may run out of tokens unclosed.
Results: benchmarks/results/constrained_decoding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
CMRC = HERE.parent / ".." / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "score": {"type": "number"},
        "kind": {"enum": ["a", "b", "c"]}, "tags": {"type": "array", "items": {"type": "string"}},
        "addr": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "number"}},
                 "required": ["city", "zip"], "additionalProperties": False},
    },
    "required": ["name", "age", "score", "kind", "tags", "addr"],
    "additionalProperties": False,
}
ANSWER = {"name": "张三", "age": 35, "score": 88.5, "kind": "b", "tags": ["定期存款", "理财", "VIP customer"],
          "addr": {"city": "上海市浦东新区陆家嘴环路1000号", "zip": 200120}}
ANSWER_TEXT = json.dumps(ANSWER, ensure_ascii=False)  # the layout the grammar asks for: ", " and ": "
PROMPT = [{"role": "user", "content": "给出客户信息 JSON"}]


# ---------------------------------------------------------------------------------------------------
# The two grammar engines, behind one signature: (tokenizer, vocab size, stop ids) -> make a processor
# ---------------------------------------------------------------------------------------------------
def llguidance_factory(tokenizer, vocab_size: int, stop_ids: list[int], prompt_len: int, max_new: int,
                       closing: bool) -> Callable[[], object]:
    from domainlm.serve.constrained import GrammarVocab, constraint_for, logits_processor, reserve_tokens

    vocab = GrammarVocab(tokenizer, vocab_size, stop_ids)
    constraint = constraint_for({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, None, None)
    reserve = reserve_tokens(constraint, lambda s: len(tokenizer.encode(s, add_special_tokens=False))) if closing else 0
    return lambda: logits_processor(constraint, vocab, reserve, prompt_len, max_new)


def xgrammar_factory(tokenizer, vocab_size: int, stop_ids: list[int], prompt_len: int, max_new: int,
                     closing: bool) -> Callable[[], object]:
    import xgrammar as xgr
    import xgrammar.contrib.hf as xhf

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA), any_whitespace=False,
                                                            separators=(", ", ": "))
    return lambda: xhf.LogitsProcessor(compiled)


def engines() -> tuple[dict[str, Callable], str | None]:
    """The engines to compare, and a line saying why xgrammar is left out when it is."""
    found = {"llguidance": llguidance_factory}
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        return found, "xgrammar is not importable here: measured llguidance only (pip install xgrammar in a separate env)"
    found["xgrammar"] = xgrammar_factory
    return found, None


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------
# 1. Per token, replaying a valid answer
# ---------------------------------------------------------------------------------------------------
def cmrc_texts(limit: int) -> list[str]:
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    return [p["context"] for doc in data for p in doc["paragraphs"]][:limit]


def vocabularies(quick: bool) -> Iterator[tuple[str, object, list[int]]]:
    from domainlm.models import load_model
    from domainlm.models.tiny import train_tokenizer

    model = load_model("tiny")
    yield "tiny", model.tokenizer, model.stop_ids
    if not CMRC.exists():
        print(f"{CMRC}: not found, the CMRC 2018 vocabulary is skipped", file=sys.stderr)
        return
    size = 8000 if quick else 32000
    tok = train_tokenizer(cmrc_texts(300 if quick else 100_000) + [ANSWER_TEXT], size)
    yield f"bpe-{size // 1000}k on cmrc2018 ({len(tok)} tokens)", tok, [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]


def replay_ms_per_token(make: Callable[[], object], ids: list[int], vocab_size: int, repeats: int) -> float:
    """Best-of-``repeats`` CPU ms per step of one processor fed a valid answer; each token must stay allowed."""
    import torch

    best = float("inf")
    for _ in range(repeats):
        processor = make()
        seq = torch.tensor([[0] + ids])
        started = time.thread_time()
        for i in range(len(ids) + 1):
            out = processor(seq[:, : 1 + i], torch.zeros(1, vocab_size))
            if i < len(ids) and not out[0, ids[i]] > -1e30:
                raise RuntimeError(f"the grammar refused token {i} ({ids[i]}) of a valid answer")
        best = min(best, (time.thread_time() - started) / (len(ids) + 1))
    return best * 1e3


def per_token(found: dict[str, Callable], quick: bool) -> list[dict]:
    rows = []
    for name, tok, stops in vocabularies(quick):
        size = len(tok)
        ids = tok.encode(ANSWER_TEXT, add_special_tokens=False) + [stops[0]]
        for engine, factory in found.items():
            make = factory(tok, size, stops, prompt_len=1, max_new=10_000, closing=False)
            ms = replay_ms_per_token(make, ids, size, repeats=2 if quick else 5)
            rows.append({"measure": "replay", "vocabulary": name, "engine": engine, "answer_tokens": len(ids),
                         "ms_per_token": round(ms, 4)})
            print(f"replay  {name:36s} {engine:10s} {ms:.3f} ms/token", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------------------------------
# 2. End to end, generate() with and without the grammar
# ---------------------------------------------------------------------------------------------------
def valid(text: str) -> bool:
    import jsonschema

    from domainlm.serve.constrained import finite_json

    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return finite_json(text)


def generate_once(model, ids, processor, max_new: int, seed: int) -> tuple[float, list[float], str]:
    """One sampled generation: CPU ms per new token, CPU seconds per processor call, the decoded answer."""
    import torch

    spent: list[float] = []

    def timed(input_ids, scores):
        started = time.thread_time()
        out = processor(input_ids, scores)
        spent.append(time.thread_time() - started)
        return out

    torch.manual_seed(seed)
    options = {"logits_processor": [timed]} if processor is not None else {"min_new_tokens": max_new}
    started = time.thread_time()
    out = model.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                               do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=model.stop_ids,
                               pad_token_id=model.tokenizer.pad_token_id, **options)
    new = out[0, ids.shape[1]:].tolist()
    ms_per_token = (time.thread_time() - started) / len(new) * 1e3
    return ms_per_token, spent, model.tokenizer.decode(new, skip_special_tokens=True)


def end_to_end(found: dict[str, Callable], model_spec: str, seeds: int, max_new: int) -> list[dict]:
    import torch

    from domainlm.models import load_model

    model = load_model(model_spec)
    tok = model.tokenizer
    ids = torch.tensor([tok(model.render_chat(PROMPT, None), add_special_tokens=False)["input_ids"]])
    size = int(model.model.config.vocab_size)
    rows = []
    systems: dict[str, Callable[[], object] | None] = {"unconstrained": None}
    for engine, factory in found.items():
        started = time.thread_time()
        systems[engine] = factory(tok, size, model.stop_ids, prompt_len=ids.shape[1], max_new=max_new, closing=True)
        print(f"{engine} setup (tokenizer + schema): {(time.thread_time() - started) * 1e3:.0f} ms", file=sys.stderr)
    for system, make in systems.items():
        per_tok, in_proc, n_valid = [], [], 0
        for seed in range(seeds):
            ms, spent, text = generate_once(model, ids, make() if make else None, max_new, seed)
            per_tok.append(ms)
            in_proc += spent
            n_valid += make is not None and valid(text)
        rows.append({"measure": "generate", "model": model_spec, "vocab_size": size, "engine": system,
                     "ms_per_token": round(statistics.mean(per_tok), 4),
                     "processor_ms_per_step": round(statistics.mean(in_proc) * 1e3, 4) if in_proc else None,
                     "valid": None if make is None else f"{n_valid}/{seeds}"})
        print(f"generate {system:14s} {statistics.mean(per_tok):.2f} ms/token", file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------
def ratios(rows: list[dict]) -> dict[str, float]:
    out = {}
    gen = {r["engine"]: r for r in rows if r["measure"] == "generate"}
    if "unconstrained" in gen:
        for engine, row in gen.items():
            if engine != "unconstrained":
                base = gen["unconstrained"]["ms_per_token"]
                out[f"generate ms/token {engine} / unconstrained"] = round(row["ms_per_token"] / base, 3)
                # Length-independent: the unconstrained run is forced to --max-tokens while a grammar ends the
                # answer sooner, and a shorter sequence is cheaper per token, so the ratio above understates.
                out[f"processor ms per step {engine} / unconstrained ms per token"] = round(row["processor_ms_per_step"] / base, 3)
    replay = {(r["vocabulary"], r["engine"]): r["ms_per_token"] for r in rows if r["measure"] == "replay"}
    for (vocab, engine), ms in replay.items():
        peer = replay.get((vocab, "xgrammar"))
        if engine == "llguidance" and peer:
            out[f"replay ms/token llguidance / xgrammar ({vocab})"] = round(ms / peer, 3)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| measure | vocabulary / model | engine | ms per token | processor ms per step | valid |", "|---|---|---|---|---|---|"]
    for r in rows:
        where = r.get("vocabulary") or f"{r['model']} (vocab {r['vocab_size']})"
        step = r.get("processor_ms_per_step")
        lines.append(f"| {r['measure']} | {where} | {r['engine']} | {r['ms_per_token']:.3f} | "
                     f"{'-' if step is None else f'{step:.3f}'} | {r.get('valid') or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="model spec for the end-to-end run (default: tiny)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="small vocabulary, 2 seeds, 128 tokens: keeps the script working")
    parser.add_argument("--out", default=str(HERE / "results" / "constrained_decoding.json"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.max_tokens = min(args.seeds, 2), min(args.max_tokens, 128)

    import torch

    torch.set_num_threads(1)
    found, missing = engines()
    if missing:
        print(missing)
    rows = per_token(found, args.quick) + end_to_end(found, args.model, args.seeds, args.max_tokens)
    result = {
        "benchmark": "constrained_decoding",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(), "gpu": None,
                    "environment": sys.prefix},  # xgrammar lives in its own environment
        "command": "python benchmarks/constrained_decoding.py " + " ".join(sys.argv[1:]),
        "versions": {name: version(name) for name in ("domainlm", "llguidance", "xgrammar", "torch", "transformers")},
        "notes": [missing] if missing else [],
        "results": rows,
        "ratios": ratios(rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(rows))
    for name, value in result["ratios"].items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
