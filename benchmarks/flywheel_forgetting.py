"""Forgetting in the flywheel, with and without replay: the score on the original suite before and after one
flywheel round trained on a handful of corrections.

1. The sample domain (`tiny` size) and an expert: `tiny` fine-tuned on the sample's train tasks.
2. Users correct answers: 12 corrections, each the gold answer of a train question of one task (knowledge_qa),
   as a reviewer would type them.
3. One flywheel round from the expert, twice on the same feedback: `replay_per_row` 0 (feedback alone) and 4
   (four rows of the original sft data per correction). The gate is a fixed slice of the sample's eval suite
   (every task), so "before" is the expert's score on it and "after" the candidate's; the per-category rows show
   where a round without replay forgets.

Run: python benchmarks/flywheel_forgetting.py [--steps 200] [--gate-items 20]
     -> benchmarks/results/flywheel_forgetting.json  (CPU; about 10-20 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def gate_slice(eval_dir: Path, out: Path, per_task: int, seed: int = 0) -> Path:
    """The first ``per_task`` items of each eval task (shuffled once), with the sample's taxonomy."""
    out.mkdir(parents=True)
    rng = random.Random(seed)
    for file in sorted(eval_dir.glob("*.jsonl")):
        items = [json.loads(line) for line in file.read_text("utf-8").splitlines() if line.strip()]
        rng.shuffle(items)
        (out / file.name).write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items[:per_task]),
                                     encoding="utf-8")
    taxonomy = eval_dir.parent / "taxonomy.json"
    if taxonomy.is_file():
        (out / "taxonomy.json").write_text(taxonomy.read_text("utf-8"), encoding="utf-8")
    return out


def corrections(train_dir: Path, n: int, seed: int = 1) -> list[tuple[str, str]]:
    items = [json.loads(line) for line in (train_dir / "knowledge_qa.jsonl").read_text("utf-8").splitlines()]
    random.Random(seed).shuffle(items)
    return [(i["question"], str(i["answer"])) for i in items[:n]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200, help="sft steps of the expert")
    parser.add_argument("--gate-items", type=int, default=20, help="gate items per eval task")
    parser.add_argument("--corrections", type=int, default=12)
    parser.add_argument("--round-steps", type=int, default=60, help="training steps of the flywheel round")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "flywheel_forgetting.json")
    args = parser.parse_args()

    from domainlm.sample import generate_sample
    from domainlm.serve.flywheel import FlywheelConfig, init_registry, run_flywheel
    from domainlm.serve.store import FeedbackStore
    from domainlm.train import TrainConfig, train

    work = Path(tempfile.mkdtemp(prefix="flywheel-forgetting-"))
    started = time.time()
    sample = generate_sample(work / "sample", seed=0, size="tiny")
    expert = work / "expert"
    train("tiny", [sample / "tasks" / "train"], expert,
          TrainConfig(stage="sft", max_steps=args.steps, lr=2e-3, batch_size=8, seq_len=256, seed=0))
    gate = gate_slice(sample / "tasks" / "eval", work / "gate", args.gate_items)
    fixes = corrections(sample / "tasks" / "train", args.corrections)

    runs = {}
    for ratio in (0.0, 4.0):
        name = f"replay_{ratio:g}"
        registry, db = work / name / "registry", f"sqlite:///{work / name / 'fb.db'}"
        init_registry(registry, str(expert / "model") if (expert / "model").is_dir() else str(expert))
        store = FeedbackStore(db)
        for question, answer in fixes:
            rid = store.add_response(model="expert", request={"messages": [{"role": "user", "content": question}]},
                                     response="抱歉，我不清楚。")
            store.add_feedback(rid, rating="down", correction=answer, user="reviewer")
        store.close()
        cfg = FlywheelConfig(registry=str(registry), db=db, gate=[str(gate)], replay_data=[str(sample / "tasks" / "train")],
                             replay_per_row=ratio, max_steps=args.round_steps, lr=1e-3, batch_size=4, seq_len=256,
                             gate_few_items="interval",
                             holdback=0.0)  # every correction trained on: the published rounds predate the held-back slice
        decision = run_flywheel(cfg)
        gate_detail = decision.get("gate") or {}
        runs[name] = {
            "replay_per_row": ratio, "replay_rows": decision.get("replay_rows"), "feedback_rows": decision.get("rows"),
            "before": decision.get("current_score"), "after": decision.get("candidate_score"),
            "decision": decision.get("decision"), "reason": decision.get("reason"),
            "groups": [{k: g.get(k) for k in ("name", "n", "reference", "candidate", "retention", "worse")}
                       for g in gate_detail.get("groups", [])],
        }
        print(f"{name}: before {runs[name]['before']:.4f} after {runs[name]['after']:.4f} -> {runs[name]['decision']}")
    result = {"sample": "tiny, seed 0", "expert_steps": args.steps, "round_steps": args.round_steps,
              "corrections": len(fixes), "gate_items_per_task": args.gate_items, "runs": runs,
              "wall_s": round(time.time() - started, 1)}
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
