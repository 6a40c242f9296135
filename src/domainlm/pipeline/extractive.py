"""The "no model" variant: the knowledge base's extractive reader answers the eval suites.

It answers what a reader can answer — knowledge questions and unanswerable ones (type ``qa`` and
``refusal``); other items get no prediction and score as missing, which the report states.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.evals import EvalConfig, evaluate, select_items
from domainlm.io import write_jsonl
from domainlm.kb import answer, open_kb
from domainlm.manifest import StageResult, stage_run

ANSWERABLE_TYPES = {"qa", "refusal"}


def extractive_predictions(kb_path: str | Path, suites: list[str], *, limit: int = 0, seed: int = 0) -> list[dict]:
    """The reader's answers to the items :func:`domainlm.evals.score` would score for this limit and seed."""
    kb = open_kb(kb_path)
    records = []
    for item in select_items(suites, limit=limit, seed=seed):
        if item["type"] not in ANSWERABLE_TYPES:
            continue
        reply = answer(kb, item["question"])
        # A refusal's answer is already domainlm.prompts.REFUSAL in the question's language.
        records.append({"id": item["id"], "output": reply.answer, "refused": reply.refused, "reason": reply.reason,
                        "citations": [c.chunk_id for c in reply.citations]})
    return records


def extractive_eval(kb_path: str | Path, suites: list[str], out: str | Path, *, seed: int = 0, limit: int = 0,
                    force: bool = False) -> StageResult:
    """Answer the suites with the extractive reader (a cached stage in ``out/reader``) and score the answers
    as stored predictions; returns the eval stage's result for ``out`` (:func:`domainlm.evals.evaluate`:
    ``outputs["results"]``, ``["predictions"]``, ``["report"]``; ``metrics["score"]``, ``["n"]``)."""
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
