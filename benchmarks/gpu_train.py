"""GPU fine-tuning speed: domainlm's trainer vs plain transformers + peft, side by side in one run.

For Qwen2-0.5B/1.5B/7B-shaped models (random weights: speed does not depend on them) and LoRA / full
fine-tuning, measures tokens/s, peak GPU memory and MFU of

* ``plain``: the usual transformers + peft step: ``model(input_ids, labels=...)`` (full logits, HF loss),
  ``loss.backward()``, ``AdamW.step()``, optionally with gradient checkpointing;
* ``domainlm``: ``domainlm.train.loop.train_loop`` itself (the code behind ``domainlm train``): packed
  sequences, the loss over the vocabulary in chunks (Liger's fused linear cross-entropy on CUDA when
  installed), fused AdamW, optional torch.compile.

Both see the same random token sequences of ``--seq`` tokens. MFU counts model FLOPs only (6N per token
for full training, 4N for LoRA, plus attention; recomputation not counted) against 989 TFLOP/s (H100
dense bf16). ``--tiny`` runs a tiny shape on CPU for two steps (the CI smoke test of this script).

    python benchmarks/gpu_train.py                       # on a GPU machine
    python benchmarks/gpu_train.py --tiny --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from domainlm.train.plan import KNOWN_SHAPES, Shape, plan  # noqa: E402

PEAK = {"cuda": 989e12, "cpu": 1e12}
TINY = Shape(vocab=512, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, tied=True, qkv_bias=True)


def build_model(shape: Shape, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.kv_heads, tie_word_embeddings=shape.tied,
                         max_position_embeddings=32768, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    return model


def random_batches(shape: Shape, seq: int, n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, shape.vocab, (seq,), generator=g).tolist() for _ in range(n)]


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_plain(shape, method, seq, batch, steps, warmup, grad_ckpt, device):
    """The plain transformers + peft training step, timed after warm-up."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = build_model(shape, device, dtype)
    if grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    seqs = random_batches(shape, seq, batch * (steps + warmup))
    t0 = None
    for step in range(steps + warmup):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        ids = torch.tensor(seqs[step * batch : (step + 1) * batch], device=device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return (time.perf_counter() - t0), float(loss)


def run_domainlm(shape, method, seq, batch, steps, warmup, grad_ckpt, compile_model, device, out_dir):
    """domainlm's own training loop (train_loop) on the same kind of sequences."""
    import torch

    from domainlm.train.config import TrainConfig
    from domainlm.train.data import Example
    from domainlm.train.model_setup import prepare_for_training

    # same weight dtype as the plain run (bf16 on GPU), autocast on top
    cfg = TrainConfig(stage="cpt", method=method, dtype="bfloat16" if device == "cuda" else "float32",
                      max_steps=steps + warmup, batch_size=batch, seq_len=seq, lr=1e-5,
                      warmup_ratio=0.0, grad_checkpointing=grad_ckpt, compile=compile_model, eval_fraction=0.0,
                      max_grad_norm=0.0, log_every=1)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = prepare_for_training(build_model(shape, device, dtype), cfg)
    examples = [Example(s, list(s), list(range(seq))) for s in random_batches(shape, seq, batch * (steps + warmup))]
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    from domainlm.train.loop import train_loop

    result = train_loop(model, tokenizer, examples, [], cfg, Path(out_dir), resume=False)
    hist = result.history
    # time of the measured steps only: elapsed at the last step minus elapsed at the end of warm-up
    seconds = hist[-1]["elapsed_s"] - hist[warmup - 1]["elapsed_s"] if warmup else hist[-1]["elapsed_s"]
    return seconds, hist[-1]["loss"]


def measure(kind, shape_name, shape, method, seq, batch, steps, warmup, grad_ckpt, compile_model, device, tmp):
    import torch

    row = {"impl": kind, "shape": shape_name, "method": method, "seq": seq, "batch": batch,
           "grad_checkpointing": grad_ckpt, "compile": compile_model}
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        if kind == "plain":
            seconds, loss = run_plain(shape, method, seq, batch, steps, warmup, grad_ckpt, device)
        else:
            seconds, loss = run_domainlm(shape, method, seq, batch, steps, warmup, grad_ckpt, compile_model, device, tmp)
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
        return row
    except Exception as exc:  # a failing variant is recorded, the others still run
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        traceback.print_exc()
        return row
    finally:
        import gc

        gc.collect()
    tokens = steps * batch * seq
    tps = tokens / seconds
    flops = plan(shape, method="full" if method == "full" else "lora", seq=seq).flops_per_token
    row.update(tokens_per_s=round(tps, 1), step_s=round(seconds / steps, 4), final_loss=round(loss, 4),
               mfu=round(tps * flops / PEAK[device], 4))
    if device == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def variants(args):
    """(shape, method, impl, batch, grad_ckpt, compile) in run order."""
    if args.variants:  # shape:method:impl:batch:ckpt:compile, e.g. qwen2-1.5b:lora:domainlm:3:0:1
        return [(n, m, i, int(b), bool(int(c)), bool(int(k))) for n, m, i, b, c, k in (v.split(":") for v in args.variants)]
    if args.tiny:
        return [("tiny", m, impl, 2, g, False) for m in ("lora", "full") for impl, g in (("plain", True), ("domainlm", False))]
    out = []
    for name in args.shapes:
        for method in args.methods:
            if name == "qwen2-7b" and method == "full":
                continue  # 7B full fine-tuning needs several GPUs (ZeRO/FSDP)
            b = args.batch if name != "qwen2-7b" else max(1, args.batch // 2)
            out.append((name, method, "plain", b, True, False))  # the reference configuration
            out.append((name, method, "plain", b, False, False))
            out.append((name, method, "domainlm", b, False, False))
            if args.compile:
                out.append((name, method, "domainlm", b, False, True))
            if name != "qwen2-0.5b":  # same memory budget as plain + checkpointing: ours with checkpointing too
                out.append((name, method, "domainlm", b, True, False))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["qwen2-0.5b", "qwen2-1.5b", "qwen2-7b"])
    parser.add_argument("--methods", nargs="+", default=["lora", "full"])
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure domainlm with torch.compile")
    parser.add_argument("--variants", nargs="+", help="run only these, as shape:method:impl:batch:ckpt:compile")
    parser.add_argument("--tiny", action="store_true", help="tiny shape on CPU, 2 steps (smoke test)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_train.json"))
    args = parser.parse_args(argv)

    import tempfile

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if args.tiny:
        args.seq, args.steps, args.warmup = 64, 2, 1
    if device == "cpu" and not args.tiny:
        print("no CUDA GPU: run with --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, method, impl, batch, ckpt, comp in variants(args):
            shape = TINY if name == "tiny" else KNOWN_SHAPES[name]
            row = measure(impl, name, shape, method, args.seq, batch, args.steps, args.warmup, ckpt, comp, device, tmp)
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"benchmark": "gpu_train", "partial": True, "rows": rows}, indent=2))
    # ratio of domainlm's best against plain with gradient checkpointing (the reference setting), per shape/method
    summary = []
    for name in sorted({r["shape"] for r in rows}):
        for method in ("lora", "full"):
            group = [r for r in rows if r["shape"] == name and r["method"] == method and "tokens_per_s" in r]
            ref = [r for r in group if r["impl"] == "plain" and r["grad_checkpointing"]]
            ours = [r for r in group if r["impl"] == "domainlm"]
            if not ref or not ours:
                continue
            best = max(ours, key=lambda r: r["tokens_per_s"])
            within = [r for r in ours if r.get("peak_mem_gib", 0) <= ref[0].get("peak_mem_gib", 0) * 1.0001]
            entry = {"shape": name, "method": method, "plain_ckpt_tokens_per_s": ref[0]["tokens_per_s"],
                     "domainlm_best_tokens_per_s": best["tokens_per_s"],
                     "speedup": round(best["tokens_per_s"] / ref[0]["tokens_per_s"], 3)}
            if within and device == "cuda":
                top = max(within, key=lambda r: r["tokens_per_s"])
                entry["speedup_at_equal_or_lower_memory"] = round(top["tokens_per_s"] / ref[0]["tokens_per_s"], 3)
            summary.append(entry)
    env = {"device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "python": platform.python_version()}
    import importlib.metadata

    for lib in ("transformers", "peft", "accelerate", "liger-kernel"):
        try:
            env[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            env[lib] = None
    result = {"benchmark": "gpu_train", "env": env, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
              "rows": rows, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\nshape        method  plain+ckpt tok/s  domainlm best tok/s  speedup")
    for s in summary:
        print(f"{s['shape']:12s} {s['method']:6s}  {s['plain_ckpt_tokens_per_s']:16,.0f}  "
              f"{s['domainlm_best_tokens_per_s']:19,.0f}  {s['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
