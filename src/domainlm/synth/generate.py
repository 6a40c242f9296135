"""``synthesize``: knowledge QA and refusal items from a knowledge base, optionally with a teacher model."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from domainlm.errors import DomainlmError
from domainlm.io import sha256_text, write_jsonl, write_text
from domainlm.prompts import render_prompt
from domainlm.synth.facts import Fact, detect_lang, find_facts

# Train and eval phrasings never overlap, so eval measures knowledge, not memorised wording.
TEMPLATES = {
    "zh": {
        "train": ["{s}的{a}是多少？", "请问{s}的{a}是什么？", "{s}的{a}是怎样规定的？"],
        "eval": ["我想了解一下{s}的{a}。", "{s}这款产品的{a}是？"],
    },
    "en": {
        "train": ["What is the {a} of {s}?", "Could you tell me the {a} of {s}?", "{s}: what {a} applies?"],
        "eval": ["I'd like to know the {a} for {s}.", "How about the {a} of {s}?"],
    },
}
# Task names are prefixed so that a synthesized suite sits beside a user's own tasks in one eval run.
QA_TASK, REFUSAL_TASK = "synth_knowledge_qa", "synth_unanswerable"
READING_FILE = "synth_reading"  # chat rows for sft (train only): answer from the passages, not from memory
# Category names match the sample domain's taxonomy, so one report groups them together.
CATEGORY = {"zh": ("knowledge", "hallucination"), "en": ("knowledge", "hallucination")}
FICTIONAL_SUFFIX = {"zh": ["尊享版", "青春版", "至尊款"], "en": [" Plus", " Elite", " Junior"]}

TEACHER_PROMPT = {
    "zh": "根据下面的资料写出{n}个问答对，答案必须原文出现在资料中。只输出JSON数组，"
    '形如[{{"question": "...", "answer": "..."}}]。\n资料：\n{text}',
    "en": "Write {n} question-answer pairs about the passage below; each answer must appear verbatim in "
    'the passage. Output only a JSON array like [{{"question": "...", "answer": "..."}}].\nPassage:\n{text}',
}


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    train_phrasings: int = Field(2, ge=1, le=3, description="Train questions per fact (distinct templates).")
    eval_only_fraction: float = Field(
        0.2, ge=0, lt=1, description="Share of facts asked only in eval: answerable from the KB, never trained on."
    )
    refusal_per_subject: int = Field(1, ge=0, description="Unanswerable questions per subject.")
    reading_passages: int = Field(
        3, ge=0, description="Passages per reading item (match eval's --kb k); 0 writes no reading items.")
    reading_per_fact: int = Field(3, ge=1, description="Reading items per trained fact (each with another swapped value).")
    teacher: str | None = Field(None, description="Model spec of a teacher that writes extra questions.")
    teacher_questions_per_chunk: int = Field(3, ge=1)
    max_chunks_for_teacher: int = Field(200, ge=1)


@dataclass
class SynthResult:
    out_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0


def _item_id(task: str, question: str) -> str:
    return f"{task}-{sha256_text(question)[:12]}"


def _qa_item(fact: Fact, question: str, chunk: dict, split: str, seen_in_train: bool) -> dict:
    category, _ = CATEGORY[fact.lang]
    return {
        "id": _item_id(QA_TASK, question),
        "task": QA_TASK,
        "category": category,
        "subcategory": chunk.get("title") or fact.subject,
        "type": "qa",
        "question": question,
        "choices": None,
        "answer": fact.value,
        "doc_id": chunk["doc_id"],
        "chunk_id": chunk["id"],
        "evidence": fact.sentence,
        "meta": {"subject": fact.subject, "attribute": fact.attribute, "lang": fact.lang, "split": split,
                 "seen_in_train": seen_in_train, "generator": "rules"},
    }


def _refusal_item(subject: str, attribute: str, lang: str, question: str, reason: str) -> dict:
    _, category = CATEGORY[lang]
    return {
        "id": _item_id(REFUSAL_TASK, question),
        "task": REFUSAL_TASK,
        "category": category,
        "subcategory": reason,
        "type": "refusal",
        "question": question,
        "choices": None,
        "answer": "",
        "meta": {"subject": subject, "attribute": attribute, "lang": lang, "generator": "rules"},
    }


def _facts_by_chunk(chunks: list[dict]) -> list[tuple[dict, Fact]]:
    pairs, seen = [], set()
    for chunk in chunks:
        for fact in find_facts(chunk["text"]):
            key = (fact.subject, fact.attribute)
            if key not in seen:
                seen.add(key)
                pairs.append((chunk, fact))
    return pairs


def _mentioned_together(subject: str, attribute: str, chunks: list[dict]) -> bool:
    return any(subject in chunk["text"] and attribute in chunk["text"] for chunk in chunks)


def _refusals(pairs: list[tuple[dict, Fact]], chunks: list[dict], config: SynthConfig, rng: random.Random) -> list[dict]:
    """Questions the documents cannot answer: a real subject with an attribute no chunk mentions together
    with it, and a fictional variant of a real subject (checked absent from every chunk)."""
    corpus = "\n".join(chunk["text"] for chunk in chunks)
    attributes: dict[str, set[str]] = defaultdict(set)
    by_subject: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _, fact in pairs:
        attributes[fact.lang].add(fact.attribute)
        by_subject[(fact.lang, fact.subject)].add(fact.attribute)
    items = []
    for (lang, subject), has in sorted(by_subject.items()):
        missing = [a for a in sorted(attributes[lang] - has) if not _mentioned_together(subject, a, chunks)]
        template = rng.choice(TEMPLATES[lang]["eval"])
        for attribute in rng.sample(missing, min(config.refusal_per_subject, len(missing))):
            items.append(_refusal_item(subject, attribute, lang, template.format(s=subject, a=attribute), "missing_attribute"))
        fictional = subject + rng.choice(FICTIONAL_SUFFIX[lang])
        if config.refusal_per_subject and fictional not in corpus and has:
            attribute = sorted(has)[0]
            items.append(_refusal_item(fictional, attribute, lang, template.format(s=fictional, a=attribute), "unknown_product"))
    return items


def _shape(value: str) -> str:
    return re.sub(r"\d+", "0", value)


def _differing(candidates: list[str], value: str) -> list[str]:
    """Candidates that neither equal ``value`` nor contain it or sit inside it (a swap must be visible)."""
    return [v for v in candidates if v != value and value not in v and v not in value]


def _reading_items(pairs: list[tuple[dict, Fact]], chunks: list[dict], eval_only: set[int], config: SynthConfig,
                   rng: random.Random) -> list[dict]:
    """Counterfactual reading practice: a trained fact's chunk with its value swapped for another product's
    value of the same attribute (or of the same shape), shown among other chunks as retrieved passages; the
    reply is the swapped value. Only reading the passage gets it right, so a model learns to take answers from what it is given
    (the skill a ``+kb`` variant needs) instead of reciting what it memorised. Eval-only facts are left out."""
    # Swap candidates: other values of the same attribute; where a small KB has none, values of the same
    # shape (digits aside: "2.70%" for "0.35%", "800元" for "50元") from any attribute.
    by_attribute: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_shape: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _, fact in pairs:
        for key, table in (((fact.lang, fact.attribute), by_attribute), ((fact.lang, _shape(fact.value)), by_shape)):
            if fact.value not in table[key]:
                table[key].append(fact.value)
    rows = []
    for index, (chunk, fact) in enumerate(pairs):
        others = (_differing(by_attribute[(fact.lang, fact.attribute)], fact.value)
                  or _differing(by_shape[(fact.lang, _shape(fact.value))], fact.value))
        if index in eval_only or not others or chunk["text"].count(fact.sentence) != 1:
            continue
        for swapped in rng.sample(others, min(config.reading_per_fact, len(others))):
            passage = chunk["text"].replace(fact.sentence, fact.sentence.replace(fact.value, swapped, 1))
            distractors = rng.sample([c["text"] for c in chunks if c["id"] != chunk["id"]],
                                     min(config.reading_passages - 1, len(chunks) - 1))
            passages = [passage, *distractors]
            rng.shuffle(passages)
            question = rng.choice(TEMPLATES[fact.lang]["train"]).format(s=fact.subject, a=fact.attribute)
            item = {"type": "qa", "question": question, "lang": fact.lang}
            rows.append({"id": f"synth_reading-{sha256_text(question + swapped)[:12]}", "messages": [
                {"role": "user", "content": render_prompt(item, retrieved=passages)},
                {"role": "assistant", "content": swapped}]})
    return rows


def _parse_pairs(text: str) -> list[dict]:
    match = re.search(r"\[.*\]", text, flags=re.S)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return []
    return [d for d in data if isinstance(d, dict) and isinstance(d.get("question"), str) and isinstance(d.get("answer"), str)]


def _teacher_items(chunks: list[dict], config: SynthConfig, rng: random.Random) -> tuple[list[dict], list[dict]]:
    from domainlm.models import load_model

    teacher = load_model(config.teacher)
    picked = rng.sample(chunks, min(config.max_chunks_for_teacher, len(chunks)))
    conversations = []
    for chunk in picked:
        lang = detect_lang(chunk["text"])
        prompt = TEACHER_PROMPT[lang].format(n=config.teacher_questions_per_chunk, text=chunk["text"])
        conversations.append([{"role": "user", "content": prompt}])
    outputs = teacher.chat(conversations, max_new_tokens=512, temperature=0.0, seed=config.seed)
    kept, rejected = [], []
    for chunk, output in zip(picked, outputs, strict=True):
        pairs = _parse_pairs(output)
        if not pairs:
            rejected.append({"chunk_id": chunk["id"], "output": output, "reason": "no JSON question/answer pairs"})
        for pair in pairs:
            question, answer = pair["question"].strip(), pair["answer"].strip()
            if not question or not answer or answer not in chunk["text"]:
                rejected.append({"chunk_id": chunk["id"], "output": pair, "reason": "answer not found in the chunk"})
                continue
            lang = detect_lang(chunk["text"])
            kept.append({
                "id": _item_id(QA_TASK, question), "task": QA_TASK, "category": CATEGORY[lang][0],
                "subcategory": chunk.get("title") or "", "type": "qa", "question": question, "choices": None,
                "answer": answer, "doc_id": chunk["doc_id"], "chunk_id": chunk["id"],
                "meta": {"lang": lang, "generator": f"teacher:{config.teacher}", "split": "train"},
            })
    return kept, rejected


def synthesize(kb_path: str | Path, out_dir: str | Path, config: SynthConfig | None = None) -> SynthResult:
    """Write ``train/synth_knowledge_qa.jsonl``, ``train/synth_unanswerable.jsonl``, the same under ``eval/``
    (with a ``suite.yaml`` naming the suite), and ``rejected.jsonl`` (teacher items that failed the check)."""
    from domainlm.kb import open_kb

    config = config or SynthConfig()
    kb = open_kb(kb_path)
    if not kb.chunks:
        raise DomainlmError(f"{kb_path}: the knowledge base is empty; nothing to synthesize from")
    rng = random.Random(config.seed)
    pairs = _facts_by_chunk(kb.chunks)
    if not pairs:
        raise DomainlmError(f"{kb_path}: no attribute statements found in {len(kb.chunks)} chunks")
    order = list(range(len(pairs)))
    rng.shuffle(order)
    eval_only = set(order[: int(len(pairs) * config.eval_only_fraction)])

    train, evaluation = [], []
    for index, (chunk, fact) in enumerate(pairs):
        templates = TEMPLATES[fact.lang]
        seen = index not in eval_only
        if seen:
            for template in rng.sample(templates["train"], config.train_phrasings):
                train.append(_qa_item(fact, template.format(s=fact.subject, a=fact.attribute), chunk, "train", True))
        question = rng.choice(templates["eval"]).format(s=fact.subject, a=fact.attribute)
        evaluation.append(_qa_item(fact, question, chunk, "eval", seen))

    reading = _reading_items(pairs, kb.chunks, eval_only, config, rng) if config.reading_passages else []
    refusals = _refusals(pairs, kb.chunks, config, rng)
    half = len(refusals) // 2
    train_refusals, eval_refusals = refusals[:half], refusals[half:]

    rejected: list[dict] = []
    if config.teacher:
        teacher_items, rejected = _teacher_items(kb.chunks, config, rng)
        train_questions = {item["question"] for item in evaluation}
        train.extend(item for item in teacher_items if item["question"] not in train_questions)

    out_dir = Path(out_dir)
    counts = {
        f"train/{QA_TASK}": write_jsonl(out_dir / "train" / f"{QA_TASK}.jsonl", train),
        f"train/{REFUSAL_TASK}": write_jsonl(out_dir / "train" / f"{REFUSAL_TASK}.jsonl", train_refusals),
        f"train/{READING_FILE}": write_jsonl(out_dir / "train" / f"{READING_FILE}.jsonl", reading),
        f"eval/{QA_TASK}": write_jsonl(out_dir / "eval" / f"{QA_TASK}.jsonl", evaluation),
        f"eval/{REFUSAL_TASK}": write_jsonl(out_dir / "eval" / f"{REFUSAL_TASK}.jsonl", eval_refusals),
    }
    # The eval folder is a suite of its own for `domainlm eval` (named, so it never clashes with another "eval").
    write_text(out_dir / "eval" / "suite.yaml", "name: synth\n")
    write_jsonl(out_dir / "rejected.jsonl", rejected)
    return SynthResult(out_dir=out_dir, counts=counts, rejected=len(rejected))


def synth_stage(kb_path: str | Path, out_dir: str | Path, config: SynthConfig, *, force: bool = False) -> tuple[dict, bool]:
    """The cached stage: (metrics, skipped). ``synthesize`` runs only when the KB or config changed."""
    from domainlm.kb import open_kb
    from domainlm.workspace import stage_run

    open_kb(kb_path)  # a missing or broken KB fails here with its own one-line reason
    with stage_run("synth", out_dir, inputs=[kb_path], config=config, seed=config.seed, force=force) as run:
        if run.skipped:
            return dict(run.previous.metrics), True
        result = synthesize(kb_path, out_dir, config)
        for name in [*result.counts, "rejected", "eval/suite"]:
            run.output(f"{name}.yaml" if name == "eval/suite" else f"{name}.jsonl")
        run.metrics.update(result.counts, rejected=result.rejected)
    return dict(run.metrics), False
