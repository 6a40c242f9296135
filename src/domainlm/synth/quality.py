"""What synth reports about itself: every candidate seen, why each dropped one was dropped (with an
example), what was kept, what the teacher cost, and a warning when too few eval items were made."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from domainlm.evals import FEW_ITEMS
from domainlm.synth.config import SynthConfig


@dataclass
class Tally:
    """What the quality report counts: every candidate seen, and why each dropped one was dropped."""

    sentences: int = 0
    candidates: int = 0
    dropped: Counter = field(default_factory=Counter)
    dropped_examples: dict = field(default_factory=dict)

    def drop(self, reason: str, example: str) -> None:
        self.dropped[reason] += 1
        self.dropped_examples.setdefault(reason, example)


def warnings_for(n_chunks: int, n_facts: int, n_eval: int, config: SynthConfig) -> list[str]:
    if n_facts == 0:
        return [f"no question could be made from {n_chunks} chunks: the rules found no sentence stating a date, "
                "quantity, named entity or attribute they could stand behind; add task files, or use --teacher"]
    if n_eval < FEW_ITEMS:
        return [f"only {n_eval} eval questions from {n_chunks} chunks (fewer than {FEW_ITEMS}): scores on them have "
                "wide intervals; add documents or task files, or use --teacher"]
    return []


def quality_summary(tally: Tally, generators: list[str], train: list[dict], evaluation: list[dict], refusals: list[dict],
             cost: dict, warnings: list[str]) -> dict:
    examples = [{"question": item["question"], "answer": item["answer"], "evidence": item["evidence"],
                 "generator": item["meta"]["generator"]} for item in evaluation[:10]]
    return {
        "sentences_seen": tally.sentences,
        "candidates": tally.candidates,
        "facts_kept": len(generators),
        "items": {"train_qa": len(train), "eval_qa": len(evaluation), "refusals": len(refusals)},
        "by_generator": dict(Counter(generators).most_common()),
        "dropped": dict(tally.dropped.most_common()),
        "dropped_examples": tally.dropped_examples,
        "teacher_cost": cost,
        "warnings": warnings,
        "examples": examples,
    }


def quality_markdown(quality: dict) -> str:
    lines = ["# synth quality report", "",
             f"- sentences seen: {quality['sentences_seen']}",
             f"- candidate questions: {quality['candidates']}",
             f"- facts kept: {quality['facts_kept']} ({', '.join(f'{k} {v}' for k, v in quality['by_generator'].items()) or 'none'})",
             f"- items: {', '.join(f'{k} {v}' for k, v in quality['items'].items())}"]
    if quality["teacher_cost"]:
        lines.append(f"- teacher: {', '.join(f'{k} {v}' for k, v in quality['teacher_cost'].items())}")
    lines += ["", *[f"**Warning:** {w}" for w in quality["warnings"]], "", "## Dropped, by reason", "",
              "| reason | count | example |", "|---|---|---|"]
    for reason, count in quality["dropped"].items():
        example = quality["dropped_examples"].get(reason, "").replace("|", "\\|").replace("\n", " ")[:120]
        lines.append(f"| {reason} | {count} | {example} |")
    lines += ["", "## Examples (eval)", "", "| question | answer | generator |", "|---|---|---|"]
    for ex in quality["examples"]:
        lines.append(f"| {ex['question']} | {ex['answer']} | {ex['generator']} |")
    return "\n".join(lines) + "\n"
