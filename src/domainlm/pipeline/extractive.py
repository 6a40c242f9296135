"""The "no model" variant: the knowledge base's extractive reader answers the eval suites.

It answers what a reader can answer — knowledge questions and unanswerable ones (type ``qa`` and
``refusal``); other items get no prediction and score as missing, which the report states.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.io import write_jsonl
from domainlm.workspace import stage_run

ANSWERABLE_TYPES = {"qa", "refusal"}


def extractive_predictions(kb_path: str | Path, suites: list[str], *, limit: int = 0, seed: int = 0) -> list[dict]:
    from domainlm.evals.pipeline import limit_items
    from domainlm.evals.scoring import all_items
    from domainlm.evals.tasks import load_suite
    from domainlm.kb import answer, open_kb

    kb = open_kb(kb_path)
    records = []
    for item in limit_items(all_items([load_suite(s) for s in suites]), limit, seed):
        if item["type"] not in ANSWERABLE_TYPES:
            continue
        reply = answer(kb, item["question"])
        # A refusal's answer is already domainlm.prompts.REFUSAL in the question's language.
        records.append({"id": item["id"], "output": reply.answer, "refused": reply.refused, "reason": reply.reason,
                        "citations": [c.chunk_id for c in reply.citations]})
    return records


def extractive_eval(kb_path: str | Path, suites: list[str], out: str | Path, *, seed: int = 0, limit: int = 0,
                    force: bool = False) -> dict:
    """Answer the suites with the extractive reader and score them; returns ``results.json``'s content."""
    from domainlm.evals.pipeline import EvalConfig, evaluate

    out = Path(out)
    answers = out / "reader"
    with stage_run("kb-extractive", answers, inputs=[kb_path, *suites], config={"types": sorted(ANSWERABLE_TYPES), "limit": limit},
                   seed=seed, force=force) as run:
        if not run.skipped:
            records = extractive_predictions(kb_path, suites, limit=limit, seed=seed)
            write_jsonl(run.output("answers.jsonl"), records)
            run.metrics["answered"] = len(records)
    config = EvalConfig(suites=suites, predictions=str(answers / "answers.jsonl"), seed=seed, limit=limit)
    return evaluate(config, out, force=force)
