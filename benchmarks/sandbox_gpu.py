"""Sandbox on a GPU: proxy-run throughput, muP learning-rate transfer to a 16x wider model, loss predicted
at 10x compute against the measured loss, and knowledge bits per parameter at saturation.

The "peers" are the goals of the sandbox issue and the published figures they come from:
  * LR predicted for a 16x wider model vs its measured best: goal within a factor of 1.25 (muTransfer,
    Yang et al. 2022);
  * loss predicted at 10x the largest proxy's compute vs measured: goal within 1% (scaling-law fits);
  * bits of knowledge per parameter at saturation: goal >= 1.6, published ~2 (Allen-Zhu & Li 2024).

    python benchmarks/sandbox_gpu.py                 # CUDA when present (full shapes)
    python benchmarks/sandbox_gpu.py --quick         # tiny shapes on CPU (what the tests run); 4x not 16x

Writes benchmarks/results/sandbox_gpu.json (or sandbox_gpu_quick.json with --quick).
Data: the Harbor Bank sample domain (generated from seed 0) mixed 50/50 with CMRC 2018 passages as
general Chinese text, from ../shared/benchmarks.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CMRC = HERE.parent.parent / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"

# name: (base width, widths of the proxies, wide multiple, depth, seq_len, batch, proxy tokens, lrs,
#        token multiples for the compute fit, capacity people, capacity exposures, sample size)
SHAPES = {
    "full": dict(w0=32, proxy_mults=[1, 2, 4], wide_mult=16, depth=4, seq_len=128, batch_size=32,
                 tokens=4_000_000, lrs=[0.0025, 0.005, 0.01, 0.02, 0.04, 0.08], token_mults=[1, 2, 4],
                 scaling_lr_factors=[0.7, 1.0, 1.4], cap_people=2000, cap_exposures=[100, 300, 1000], cap_width=32,
                 cap_depth=2, sample="small", workers=4, threads=0),
    "quick": dict(w0=16, proxy_mults=[1, 2], wide_mult=4, depth=1, seq_len=32, batch_size=8,
                  tokens=2_500, lrs=[0.01, 0.03, 0.09, 0.27], token_mults=[1, 2, 4], scaling_lr_factors=[1.0],
                  cap_people=4, cap_exposures=[1, 4], cap_width=16, cap_depth=1, sample="tiny", workers=1, threads=1),
}


def machine() -> dict:
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": gpu,
            "python": platform.python_version()}


def sweep(name: str, out: Path, sources: dict, shape: dict, device: str, space: dict, base: dict) -> tuple[list, float]:
    from domainlm.sandbox.sweep import SweepConfig, run_sweep

    cfg = SweepConfig.model_validate({
        "name": name,
        "data": {"sources": sources, "max_chars": 2_000_000},
        "base": {"depth": shape["depth"], "base_width": shape["w0"], "seq_len": shape["seq_len"],
                 "batch_size": shape["batch_size"], "tokens": shape["tokens"], "eval_windows": 64, **base},
        "search": {"method": "grid", "space": space},
        "workers": shape["workers"], "threads": shape["threads"], "device": device,
    })
    started = time.time()
    records = run_sweep(cfg, out / name, progress=True)
    return records, time.time() - started


def best_lr(records: list[dict], width: int) -> float:
    from domainlm.sandbox.fit import optimum_1d

    line = {r["config"]["lr"]: r["val_loss"] for r in records if r["config"]["width"] == width and r["val_loss"] is not None}
    return optimum_1d(list(line), list(line.values()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes on CPU (tests)")
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    parser.add_argument("--work", type=Path, default=None, help="folder for runs (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from domainlm.sample.generate import generate_sample
    from domainlm.sandbox.capacity import PUBLISHED_BITS_PER_PARAM, CapacityConfig, run_capacity
    from domainlm.sandbox.fit import fit_runs, predict
    from domainlm.sandbox.trainer import pick_device

    shape = SHAPES["quick" if args.quick else "full"]
    device = pick_device(args.device or ("cpu" if args.quick else "auto"))
    out_path = args.out or HERE / "results" / ("sandbox_gpu_quick.json" if args.quick else "sandbox_gpu.json")
    work = args.work or Path(tempfile.mkdtemp(prefix="sandbox_gpu_"))
    sample = generate_sample(work / "sample", seed=0, size=shape["sample"])
    sources = {"industry": {"path": str(sample), "weight": 0.5}, "general": {"path": str(CMRC), "weight": 0.5}}
    w0 = shape["w0"]
    proxy_widths = [w0 * m for m in shape["proxy_mults"]]
    wide = w0 * shape["wide_mult"]

    # 1. LR sweep on the proxies (also the throughput measurement: packed runs per GPU-hour)
    proxies, proxy_wall = sweep("proxies", work, sources, shape, device, {"lr": shape["lrs"], "width": proxy_widths}, {})
    runs_per_hour = len(proxies) / (proxy_wall / 3600)
    base_best = {w: best_lr(proxies, w) for w in proxy_widths}

    # 2. Token scaling of the proxies at the transferred LR (muP: the base width's best LR for every width)
    lr0 = base_best[w0]
    scaling, _ = sweep("scaling", work, sources, shape, device,
                       {"width": proxy_widths, "tokens": [shape["tokens"] * m for m in shape["token_mults"]],
                        "lr": [round(lr0 * f, 6) for f in shape["scaling_lr_factors"]]}, {})
    fit = fit_runs(proxies + scaling, n_boot=200, seed=0)  # loss laws: every size and token count
    lr_fit = fit_runs(proxies, n_boot=200, seed=0)  # LR vs scale at the proxies' one token count: width only

    # 3. the wide model: predicted LR (fit on proxies) vs its own measured best
    wide_runs, _ = sweep("wide", work, sources, shape, device, {"lr": shape["lrs"], "width": [wide]}, {})
    wide_params = next(r["params"] for r in wide_runs)
    predicted = predict(lr_fit, wide_params, shape["tokens"])
    lr_pred, lr_meas = predicted["lr"]["value"], best_lr(wide_runs, wide)
    lr_ratio = max(lr_pred / lr_meas, lr_meas / lr_pred)
    # an optimum on the edge of the LR grid is a bound, not a measurement: say so in the result
    lr_at_edge = {"wide": lr_meas in (min(shape["lrs"]), max(shape["lrs"])),
                  "proxies": any(v in (min(shape["lrs"]), max(shape["lrs"])) for v in base_best.values())}

    # 4. loss at 10x the largest proxy compute: a 2x wider model trained on more tokens
    biggest = max(r["flops"] for r in scaling if r["status"] == "ok")
    target_width = proxy_widths[-1] * 2
    from domainlm.sandbox.trainer import RunConfig, build_model

    target_params = build_model(RunConfig(width=target_width, depth=shape["depth"], base_width=w0)).num_params()
    target_tokens = int(10 * biggest / (6 * target_params))
    big_pred = predict(fit, target_params, target_tokens)
    big_runs, _ = sweep("ten_x", work, sources, shape, device,
                        {"width": [target_width], "tokens": [target_tokens], "lr": [round(lr0, 6)]}, {})
    big = big_runs[0]
    # L(N, D) when it could be fitted (needs >= 6 (N, D) groups), else L(C)
    loss_pred = big_pred.get("loss") or big_pred.get("loss_at_compute") or {"value": None}
    loss_err = (abs(loss_pred["value"] - big["val_loss"]) / big["val_loss"]
                if big["val_loss"] and loss_pred["value"] is not None else None)

    # 5. knowledge capacity at (or towards) saturation
    cap_cfg = CapacityConfig(people=shape["cap_people"], lang="zh", exposures=shape["cap_exposures"],
                             width=shape["cap_width"], depth=shape["cap_depth"], lr=0.01 if not args.quick else 0.03,
                             seq_len=128 if not args.quick else 64, batch_size=64 if not args.quick else 8)
    started = time.time()
    capacity = run_capacity(cap_cfg, device=device)
    cap_wall = time.time() - started
    saturated = capacity[-1]

    results = [
        {"system": "domainlm sandbox", "metric": "proxy runs per device-hour", "value": runs_per_hour},
        {"system": "domainlm sandbox", "metric": f"lr predicted for {shape['wide_mult']}x wider", "value": lr_pred,
         "interval": [predicted["lr"].get("low"), predicted["lr"].get("high")]},
        {"system": "measured", "metric": f"best lr of the {shape['wide_mult']}x wider model", "value": lr_meas},
        {"system": "domainlm sandbox", "metric": "loss predicted at 10x compute", "value": loss_pred["value"],
         "interval": [loss_pred.get("low"), loss_pred.get("high")]},
        {"system": "measured", "metric": "loss at 10x compute", "value": big["val_loss"]},
        {"system": "domainlm sandbox", "metric": "bits per parameter (highest exposures)",
         "value": saturated["bits_per_param"], "exposures": saturated["exposures"]},
        {"system": "published (Allen-Zhu & Li 2024)", "metric": "bits per parameter", "value": PUBLISHED_BITS_PER_PARAM},
    ]
    report = {
        "benchmark": "sandbox_gpu",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "device": device,
        "machine": machine(),
        "command": "python benchmarks/sandbox_gpu.py" + (" --quick" if args.quick else ""),
        "versions": {"torch": torch.__version__},
        "shape": shape,
        "results": results,
        "ratios": {
            "lr predicted / measured (wide)": lr_pred / lr_meas,
            "lr transfer factor (goal <= 1.25)": lr_ratio,
            "loss relative error at 10x compute (goal <= 0.01)": loss_err,
            "bits per param / published 2.0 (goal >= 0.8)": saturated["bits_per_param"] / PUBLISHED_BITS_PER_PARAM,
        },
        "details": {"proxy_best_lr": base_best, "lr_optimum_at_grid_edge": lr_at_edge, "proxy_runs": len(proxies), "proxy_wall_s": proxy_wall,
                    "wide_width": wide, "wide_params": wide_params, "target": {"width": target_width,
                    "params": target_params, "tokens": target_tokens, "compute": 6 * target_params * target_tokens},
                    "fit": {k: v["params"] for k, v in fit["fits"].items()},
                    "lr_fit": lr_fit["fits"]["lr"]["params"], "capacity": capacity,
                    "capacity_wall_s": cap_wall},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nsandbox_gpu ({report['mode']}, device {device}, gpu {report['machine']['gpu']})")
    print(f"{'metric':<70} {'value':>12}")
    for row in results:
        value = "n/a" if row["value"] is None else f"{row['value']:.4g}"
        print(f"{row['system'] + ': ' + row['metric']:<70.70} {value:>12}")
    for key, value in report["ratios"].items():
        print(f"{key:<70.70} {value if value is None else round(value, 4):>12}")
    print(f"wrote {out_path}")
    return report


if __name__ == "__main__":
    main()
