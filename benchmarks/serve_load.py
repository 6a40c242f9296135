"""Bounded loopback load test of `domainlm serve`, side by side with the bare backend it wraps.

    python benchmarks/serve_load.py [--model tiny] [--concurrency 1,4,16] [--requests 32] [--max-tokens 32]
                                    [--time-limit 90] [--upstream openai:http://127.0.0.1:8001/v1#NAME]

What runs, in one process tree, all on 127.0.0.1:
1. peer "bare": the same model called in-process with ``model.chat`` one request at a time (no HTTP,
   no auth, no store) — the floor the gateway adds its cost to;
2. the gateway: ``python -m domainlm serve`` in a subprocess with a fresh SQLite feedback store; at each
   concurrency a fixed number of streamed chat requests (stopped early at ``--time-limit`` seconds), each
   followed by a feedback post, so feedback is written while generation load runs;
   The gateway runs twice, same levels, same requests: with continuous batching (``--max-batch 16``, the
   default) and one request at a time (``--max-batch 1``, the path before batching); the ratio of the two
   per level is ``batched_over_one_at_a_time``;
3. after the last level the server is stopped and every acknowledged feedback id is looked up in the
   store: ``feedback_lost`` must be 0.
With ``--upstream`` (e.g. a vLLM OpenAI server on a GPU box), the same load also runs straight against
the upstream and through a gateway in front of it, and the gateway's overhead is the ratio of the two.
Results: benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
KEY = "sk-bench-0123456789"
PROMPTS = [
    "活期存款的年利率是多少？", "What is the annual fee of the gold card?", "信用卡逾期会怎样？",
    "How do I open a time deposit?", "转账手续费是多少？", "Explain the early withdrawal rule.",
    "理财产品的风险等级有哪些？", "What documents do I need for a loan?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# ---------------------------------------------------------------------------------------------------
# Peer: the bare backend, in-process
# ---------------------------------------------------------------------------------------------------
def run_bare(spec: str, n: int, max_tokens: int) -> dict:
    from domainlm.models import load_model

    model = load_model(spec)
    tok = getattr(model, "tokenizer", None)
    model.chat([[{"role": "user", "content": "warm up"}]], max_new_tokens=4)
    latencies, tokens = [], 0
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        out = model.chat([[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]], max_new_tokens=max_tokens)[0]
        latencies.append(time.perf_counter() - t0)
        tokens += len(tok.encode(out, add_special_tokens=False)) if tok is not None else len(out.split())
    wall = time.perf_counter() - started
    model.close()
    return {"requests": n, "wall_s": round(wall, 3), "requests_per_s": round(n / wall, 3),
            "tokens_per_s": round(tokens / wall, 1), "latency_p50_s": round(pct(latencies, 0.5), 4),
            "completion_tokens": tokens}


# ---------------------------------------------------------------------------------------------------
# Load over HTTP
# ---------------------------------------------------------------------------------------------------
async def one_request(client: httpx.AsyncClient, base: str, model: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
    t0 = time.perf_counter()
    ttft, rid, usage, pieces = None, None, None, 0
    async with client.stream("POST", base + "/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return {"ok": False, "status": r.status_code, "error": r.text[:200]}
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            rid = event.get("id", rid)
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    pieces += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    tokens = usage["completion_tokens"] if usage else pieces
    return {"ok": True, "id": rid, "ttft_s": ttft if ttft is not None else total, "latency_s": total, "tokens": tokens}


async def load_level(base: str, model: str, concurrency: int, n: int, max_tokens: int, time_limit: float,
                     feedback_url: str | None) -> dict:
    results: list[dict] = []
    acked: list[int] = []
    feedback_errors = 0
    next_index = 0
    deadline = time.perf_counter() + time_limit
    headers = {"Authorization": f"Bearer {KEY}"}

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index, feedback_errors
        while next_index < n and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            res = await one_request(client, base, model, PROMPTS[i % len(PROMPTS)], max_tokens)
            results.append(res)
            if feedback_url and res["ok"]:
                # Feedback rides on the same load: every answer is rated while other requests generate.
                r = await client.post(feedback_url, json={"response_id": res["id"], "rating": "up" if i % 2 else "down",
                                                          "comment": f"load {concurrency}/{i}"})
                if r.status_code == 200 and r.json().get("stored"):
                    acked.append(r.json()["id"])
                else:
                    feedback_errors += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(headers=headers, timeout=600) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "concurrency": concurrency, "requests": len(results), "errors": len(results) - len(ok),
        "wall_s": round(wall, 3), "requests_per_s": round(len(ok) / wall, 3), "tokens_per_s": round(tokens / wall, 1),
        "ttft_p50_s": round(pct([r["ttft_s"] for r in ok], 0.5) or 0, 4),
        "ttft_p95_s": round(pct([r["ttft_s"] for r in ok], 0.95) or 0, 4),
        "latency_p50_s": round(pct([r["latency_s"] for r in ok], 0.5) or 0, 4),
        "latency_p95_s": round(pct([r["latency_s"] for r in ok], 0.95) or 0, 4),
        "feedback_acked": len(acked), "feedback_errors": feedback_errors, "_acked_ids": acked,
        "stopped_by_time_limit": len(results) < n,
    }


def start_gateway(model: str, db: str, extra_args: list[str] = ()) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "domainlm", "serve", "--model", model, "--db", db, "--api-key", KEY, "--port", str(port),
         "--rate-limit", "0", "--max-queue", "64", *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise SystemExit("gateway did not start")
        time.sleep(0.25)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_gateway_levels(model_spec: str, levels: list[int], args, label: str, extra_args: list[str] = ()) -> dict:
    from domainlm.serve.store import FeedbackStore

    tmp = Path(tempfile.mkdtemp(prefix="domainlm-load-"))
    db = f"sqlite:///{tmp / 'feedback.db'}"
    proc, url = start_gateway(model_spec, db, extra_args)
    try:
        model_id = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"][0]["id"]
        asyncio.run(load_level(url + "/v1", model_id, 1, 2, 4, 60, None))  # warm-up
        rows = [asyncio.run(load_level(url + "/v1", model_id, c, args.requests, args.max_tokens, args.time_limit,
                                       url + "/v1/feedback")) for c in levels]
    finally:
        stop(proc)
    stored = {f.id for f in FeedbackStore(db).iter_feedback()}
    acked = {i for row in rows for i in row.pop("_acked_ids")}
    return {"label": label, "levels": rows, "feedback_acked": len(acked), "feedback_lost": len(acked - stored)}


def run_upstream_levels(upstream: str, levels: list[int], args) -> dict:
    url, _, name = upstream[len("openai:"):].partition("#")
    rows = []
    for c in levels:
        row = asyncio.run(load_level(url.rstrip("/"), name, c, args.requests, args.max_tokens, args.time_limit, None))
        row.pop("_acked_ids")
        rows.append(row)
    return {"label": "upstream (bare)", "levels": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="model spec served by the gateway (and run bare)")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=90.0, help="seconds per level at most")
    parser.add_argument("--upstream", default=None, help="openai:http://127.0.0.1:PORT/v1#NAME to compare against")
    parser.add_argument("--out", default=str(HERE / "results" / "serve_load.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    from domainlm.models import resolve_hf_dir

    started = time.time()
    accelerator = None
    try:
        import torch

        accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    result: dict = {"benchmark": "serve_load", "model": args.model, "max_tokens": args.max_tokens,
                    "requests_per_level": args.requests, "time_limit_s": args.time_limit,
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                                "accelerator": accelerator,
                                "load_avg_at_start": os.getloadavg()}}
    if args.upstream:
        result["upstream"] = run_upstream_levels(args.upstream, levels, args)
        result["gateway"] = run_gateway_levels(args.upstream, levels, args, "domainlm gateway → upstream")
        pairs = zip(result["gateway"]["levels"], result["upstream"]["levels"], strict=True)
        result["gateway_over_upstream_tokens_per_s"] = {str(g["concurrency"]): round(g["tokens_per_s"] / u["tokens_per_s"], 3)
                                                        for g, u in pairs if u["tokens_per_s"]}
    else:
        model_dir = str(resolve_hf_dir(args.model))  # build/cache `tiny` once, outside the timed parts
        result["bare"] = run_bare(model_dir, args.requests, args.max_tokens)
        result["gateway"] = run_gateway_levels(model_dir, levels, args, "domainlm serve, continuous batching (--max-batch 16)",
                                               ["--max-batch", "16"])
        result["one_at_a_time"] = run_gateway_levels(model_dir, levels, args, "domainlm serve, one request at a time "
                                                     "(--max-batch 1)", ["--max-batch", "1"])
        pairs = zip(result["gateway"]["levels"], result["one_at_a_time"]["levels"], strict=True)
        result["batched_over_one_at_a_time"] = {
            str(b["concurrency"]): {"tokens_per_s": round(b["tokens_per_s"] / o["tokens_per_s"], 2) if o["tokens_per_s"] else None,
                                    "latency_p95": round(b["latency_p95_s"] / o["latency_p95_s"], 2) if o["latency_p95_s"] else None}
            for b, o in pairs}
        c1 = next((lv for lv in result["gateway"]["levels"] if lv["concurrency"] == 1), None)
        if c1 and result["bare"]["tokens_per_s"]:
            result["gateway_c1_over_bare_tokens_per_s"] = round(c1["tokens_per_s"] / result["bare"]["tokens_per_s"], 3)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    result["wall_s"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
