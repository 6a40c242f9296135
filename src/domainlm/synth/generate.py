"""``synthesize``: knowledge QA and refusal items from a knowledge base, optionally with a teacher model."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from domainlm.errors import DomainlmError
from domainlm.io import sha256_text, write_json, write_jsonl, write_text
from domainlm.kb import open_kb
from domainlm.manifest import StageResult, stage_run
from domainlm.prompts import render_prompt
from domainlm.synth import pos
from domainlm.synth.checks import check_pair
from domainlm.synth.config import SynthConfig
from domainlm.synth.facts import detect_lang, find_facts, sentences
from domainlm.synth.quality import Tally, quality_markdown, quality_summary, warnings_for
from domainlm.synth.questions import question_candidates
from domainlm.synth.teacher import teacher_pairs

# Train and eval phrasings never overlap, so eval measures knowledge, not memorised wording. The words are
# the language's own, never a domain's: an attribute question is asked of whatever subject the text names.
TEMPLATES = {
    "zh": {
        "train": ["{s}的{a}是{w}？", "请问{s}的{a}是{w}？", "{s}的{a}具体是{w}？"],
        "eval": ["想了解一下，{s}的{a}是{w}？", "麻烦问一下，{s}的{a}是{w}？"],
    },
    "en": {
        "train": ["What is the {a} of {s}?", "Could you tell me what the {a} of {s} is?", "{s}: what {a} applies?"],
        "eval": ["I'd like to know: what is the {a} for {s}?", "How about the {a} of {s}, what is it?"],
    },
}
# A question made from a sentence (see synth.questions) is trained as written and asked in eval with a
# lead-in, so train and eval wording differ there too.
SPAN_TRAIN_PREFIX = {"zh": ["", "请问，"]}
SPAN_EVAL_PREFIX = {"zh": ["想了解一下，", "麻烦问一下，"]}
# Task names are prefixed so that a synthesized suite sits beside a user's own tasks in one eval run.
QA_TASK, REFUSAL_TASK = "synth_knowledge_qa", "synth_unanswerable"
READING_FILE = "synth_reading"  # chat rows for sft (train only): answer from the passages, not from memory
# Category names match the sample domain's taxonomy, so one report groups them together.
CATEGORY = {"zh": ("knowledge", "hallucination"), "en": ("knowledge", "hallucination")}

@dataclass
class SynthResult:
    out_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    quality: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Seed:
    """One fact to ask about: where it is stated, its answer, and the questions that ask for it."""

    chunk: dict
    sentence: str
    answer: str
    lang: str
    generator: str
    kind: str
    train_questions: list[str]
    eval_question: str
    subject: str = ""
    attribute: str = ""


def _item_id(task: str, question: str) -> str:
    return f"{task}-{sha256_text(question)[:12]}"


def _span(chunk: dict, sentence: str, answer: str) -> list[int] | None:
    """Character offsets of the answer in the chunk, inside its sentence."""
    at = chunk["text"].find(sentence)
    if at < 0:
        return None
    inner = sentence.find(answer)
    return [at + inner, at + inner + len(answer)] if inner >= 0 else None


def _qa_item(seed: Seed, question: str, split: str, seen_in_train: bool) -> dict:
    category, _ = CATEGORY[seed.lang]
    chunk = seed.chunk
    return {
        "id": _item_id(QA_TASK, question),
        "task": QA_TASK,
        "category": category,
        "subcategory": chunk.get("title") or seed.subject or "",
        "type": "qa",
        "question": question,
        "choices": None,
        "answer": seed.answer,
        "doc_id": chunk["doc_id"],
        "chunk_id": chunk["id"],
        "evidence": seed.sentence,
        "span": _span(chunk, seed.sentence, seed.answer),
        "meta": {"subject": seed.subject, "attribute": seed.attribute, "lang": seed.lang, "split": split,
                 "seen_in_train": seen_in_train, "generator": seed.generator, "answer_kind": seed.kind},
    }


def _refusal_item(subject: str, attribute: str, lang: str, question: str, reason: str, generator: str = "rules") -> dict:
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
        "meta": {"subject": subject, "attribute": attribute, "lang": lang, "generator": generator},
    }


def _value_word(value: str, lang: str) -> str:
    """The question word an attribute's value calls for: 多少 for amounts, 何时 for dates, else 什么."""
    if lang != "zh":
        return ""
    if re.search(r"\d{4}年|\d{1,2}月\d{1,2}日", value):
        return "何时"
    return "多少" if re.search(r"\d", value) else "什么"


def _seeds(chunks: list[dict], config: SynthConfig, rng: random.Random, tally: Tally) -> list[Seed]:
    """Facts to ask about, from attribute statements and from sentences with a typed span (Chinese)."""
    seeds: list[Seed] = []
    seen: set[tuple[str, str]] = set()
    for chunk in chunks:
        lang = detect_lang(chunk["text"])
        facts = {fact.sentence: fact for fact in find_facts(chunk["text"], lang)}
        for sentence in sentences(chunk["text"], lang):
            tally.sentences += 1
            fact = facts.get(sentence)
            if fact is not None:
                tally.candidates += 1
                if (fact.subject, fact.attribute) in seen:
                    tally.drop("same fact already asked", sentence)
                    continue
                seen.add((fact.subject, fact.attribute))
                word = _value_word(fact.value, lang)
                fill = {"s": fact.subject, "a": fact.attribute, "w": word}
                train = [t.format(**fill) for t in rng.sample(TEMPLATES[lang]["train"], config.train_phrasings)]
                seeds.append(Seed(chunk, sentence, fact.value, lang, "rules:attribute", "attribute", train,
                                  rng.choice(TEMPLATES[lang]["eval"]).format(**fill), fact.subject, fact.attribute))
                continue
            if lang != "zh":
                continue  # English prose: attribute statements only (see docs/synth.md)
            kept, dropped = question_candidates(sentence)
            tally.candidates += len(kept) + sum(1 for d in dropped if d.answer)
            for d in dropped:
                tally.drop(d.reason, f"{d.sentence} → {d.answer}" if d.answer else d.sentence)
            for candidate in kept:
                if (candidate.question, candidate.answer) in seen:
                    tally.drop("same fact already asked", candidate.question)
                    continue
                seen.add((candidate.question, candidate.answer))
                prefixes = rng.sample(SPAN_TRAIN_PREFIX["zh"], min(config.train_phrasings, len(SPAN_TRAIN_PREFIX["zh"])))
                seeds.append(Seed(chunk, sentence, candidate.answer, lang, f"rules:{candidate.kind}", candidate.kind,
                                  [p + candidate.question for p in prefixes],
                                  rng.choice(SPAN_EVAL_PREFIX["zh"]) + candidate.question))
    return seeds


def _mentioned_together(subject: str, attribute: str, chunks: list[dict]) -> bool:
    return any(subject in chunk["text"] and attribute in chunk["text"] for chunk in chunks)


def _refusals(seeds: list[Seed], chunks: list[dict], config: SynthConfig, rng: random.Random) -> list[dict]:
    """Questions the documents cannot answer.

    - an attribute the documents state for other subjects, asked of a subject no chunk mentions it with;
    - a question made from a sentence, with its named place or organisation swapped for another of the same
      kind from another document, kept only when no chunk mentions the new name together with the
      question's verb (so the documents cannot answer it).
    """
    attributes: dict[str, set[str]] = defaultdict(set)
    by_subject: dict[tuple[str, str], set[str]] = defaultdict(set)
    for seed in seeds:
        if seed.attribute:
            attributes[seed.lang].add(seed.attribute)
            by_subject[(seed.lang, seed.subject)].add(seed.attribute)
    items = []
    for (lang, subject), has in sorted(by_subject.items()):
        missing = [a for a in sorted(attributes[lang] - has) if not _mentioned_together(subject, a, chunks)]
        for attribute in rng.sample(missing, min(config.refusal_per_subject, len(missing))):
            fill = {"s": subject, "a": attribute, "w": "什么"}
            question = rng.choice(TEMPLATES[lang]["eval"]).format(**fill)
            items.append(_refusal_item(subject, attribute, lang, question, "missing_attribute"))
    if config.refusal_per_subject:
        items += _swapped_entity_refusals([s for s in seeds if not s.attribute], chunks, rng)
    return items


def _swapped_entity_refusals(seeds: list[Seed], chunks: list[dict], rng: random.Random) -> list[dict]:
    """A question about a named person or place, asked of another name of the same kind.

    The names come from the answers of person/organisation/place questions (spans the rules typed with
    care), not from raw part-of-speech tags, which mix places, people and teams. "苏镜宇于哪一年加入…？" is
    kept only when no chunk mentions 苏镜宇 together with the question's verbs: the documents cannot
    answer it, and a model must say so."""
    pools: dict[str, dict[str, str]] = defaultdict(dict)  # kind -> name -> doc_id
    for seed in seeds:
        if seed.kind in ("person", "place"):  # "organisation" spans hold teams and ministries alike
            pools[seed.kind].setdefault(seed.answer, seed.chunk["doc_id"])
    items = []
    for seed in seeds:
        for kind, pool in pools.items():
            words = {w for w, _ in pos.cut(seed.eval_question)}
            named = [name for name in pool if name in words and name != seed.answer]  # whole words only
            if not named:
                continue
            name = named[0]
            others = sorted(n for n, doc in pool.items() if doc != seed.chunk["doc_id"] and n not in seed.eval_question)
            verbs = [w for w, f in pos.cut(seed.eval_question) if f.startswith("v") and len(w) >= 2]
            if not others or not verbs:
                continue
            other = rng.choice(others)
            if any(other in c["text"] and any(v in c["text"] for v in verbs) for c in chunks):
                continue
            question = seed.eval_question.replace(name, other, 1)
            items.append(_refusal_item(other, kind, seed.lang, question, "swapped_entity"))
            break
    return items


def _shape(value: str) -> str:
    return re.sub(r"\d+", "0", value)


def _differing(candidates: list[str], value: str) -> list[str]:
    """Candidates that neither equal ``value`` nor contain it or sit inside it (a swap must be visible)."""
    return [v for v in candidates if v != value and value not in v and v not in value]


def _reading_items(seeds: list[Seed], chunks: list[dict], eval_only: set[int], config: SynthConfig,
                   rng: random.Random) -> list[dict]:
    """Counterfactual reading practice: a trained fact's chunk with its answer swapped for another value of
    the same attribute (or of the same kind and shape), shown among other chunks as retrieved passages; the
    reply is the swapped value. Only reading the passage gets it right, so a model learns to take answers
    from what it is given (the skill a ``+kb`` variant needs) instead of reciting what it memorised.
    Eval-only facts are left out."""
    # Swap candidates: other values of the same attribute; where a small KB has none, values of the same
    # kind and shape (digits aside: "2.70%" for "0.35%", "800元" for "50元").
    by_attribute: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_shape: dict[tuple[str, str], list[str]] = defaultdict(list)
    for seed in seeds:
        keys = [((seed.lang, seed.attribute), by_attribute)] if seed.attribute else []
        keys.append(((seed.lang, _shape(seed.answer)), by_shape))
        for key, table in keys:
            if seed.answer not in table[key]:
                table[key].append(seed.answer)
    rows = []
    for index, seed in enumerate(seeds):
        chunk = seed.chunk
        others = (_differing(by_attribute.get((seed.lang, seed.attribute), []), seed.answer) if seed.attribute else []) \
            or _differing(by_shape[(seed.lang, _shape(seed.answer))], seed.answer)
        if index in eval_only or not others or chunk["text"].count(seed.sentence) != 1:
            continue
        for swapped in rng.sample(others, min(config.reading_per_fact, len(others))):
            passage = chunk["text"].replace(seed.sentence, seed.sentence.replace(seed.answer, swapped, 1))
            distractors = rng.sample([c["text"] for c in chunks if c["id"] != chunk["id"]],
                                     min(config.reading_passages - 1, len(chunks) - 1))
            passages = [passage, *distractors]
            rng.shuffle(passages)
            question = rng.choice(seed.train_questions)
            item = {"type": "qa", "question": question, "lang": seed.lang}
            rows.append({"id": f"synth_reading-{sha256_text(question + swapped)[:12]}", "messages": [
                {"role": "user", "content": render_prompt(item, retrieved=passages)},
                {"role": "assistant", "content": swapped}]})
    return rows


def _verified(seeds: list[Seed], tally: Tally) -> list[Seed]:
    """Seeds whose every question passes the checks a teacher's pairs pass (rules are held to the same bar)."""
    out = []
    for seed in seeds:
        failed = next((f for q in [*seed.train_questions, seed.eval_question]
                       for f in check_pair(q, seed.answer, seed.chunk["text"], seed.lang)), None)
        if failed:
            tally.drop(f"check: {failed}", f"{seed.eval_question} → {seed.answer}")
            continue
        out.append(seed)
    return out


def checked_facts(chunks: list[dict], config: SynthConfig, rng: random.Random) -> list[Seed]:
    """The facts synth asks about, after its checks: what other stages (the exam plugin) build items on, so
    they ask nothing synth would reject."""
    tally = Tally()
    return _verified(_seeds(chunks, config, rng, tally), tally)


def plain_question(seed: Seed) -> str:
    """A fact's plainest question: the first template for an attribute statement (synth draws one at
    random), otherwise the shortest question written for it (the one without a lead-in)."""
    if seed.attribute:
        fill = {"s": seed.subject, "a": seed.attribute, "w": _value_word(seed.answer, seed.lang)}
        return TEMPLATES[seed.lang]["train"][0].format(**fill)
    return min(seed.train_questions, key=len)


def synthesize(kb_path: str | Path, out_dir: str | Path, config: SynthConfig | None = None,
               console: Console | None = None) -> SynthResult:
    """Write ``train/synth_knowledge_qa.jsonl``, ``train/synth_unanswerable.jsonl``, ``train/synth_reading.jsonl``,
    the same QA and refusal files under ``eval/`` (with a ``suite.yaml`` naming the suite), ``rejected.jsonl``
    (teacher pairs that failed a check) and ``quality.json`` / ``quality.md`` (what was seen, kept and
    dropped, and why). Too few items is said plainly in ``warnings``, never padded."""
    config = config or SynthConfig()
    console = console or Console(stderr=True)
    kb = open_kb(kb_path)
    if not kb.chunks:
        raise DomainlmError(f"{kb_path}: the knowledge base is empty; nothing to synthesize from")
    rng = random.Random(config.seed)
    tally = Tally()
    seeds = _verified(_seeds(kb.chunks, config, rng, tally), tally)
    order = list(range(len(seeds)))
    rng.shuffle(order)
    eval_only = set(order[: int(len(seeds) * config.eval_only_fraction)])

    train, evaluation = [], []
    for index, seed in enumerate(seeds):
        seen = index not in eval_only
        if seen:
            train.extend(_qa_item(seed, q, "train", True) for q in seed.train_questions)
        evaluation.append(_qa_item(seed, seed.eval_question, "eval", seen))

    reading = _reading_items(seeds, kb.chunks, eval_only, config, rng) if config.reading_passages else []
    refusals = _refusals(seeds, kb.chunks, config, rng)
    half = len(refusals) // 2
    train_refusals, eval_refusals = refusals[:half], refusals[half:]

    rejected: list[dict] = []
    cost: dict = {}
    if config.teacher:
        pairs, rejected, cost = teacher_pairs(kb.chunks, config, rng, tally, console)
        eval_questions = {item["question"] for item in evaluation}
        for pair in pairs:
            seed = Seed(pair.chunk, pair.sentence, pair.answer, pair.lang, f"teacher:{config.teacher}", "teacher",
                        [pair.question], pair.question)
            if pair.question not in eval_questions:
                train.append(_qa_item(seed, pair.question, "train", True))

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
    warnings = warnings_for(len(kb.chunks), len(seeds), len(evaluation), config)
    quality = quality_summary(tally, [seed.generator for seed in seeds], train, evaluation, refusals, cost, warnings)
    write_json(out_dir / "quality.json", quality)
    write_text(out_dir / "quality.md", quality_markdown(quality))
    return SynthResult(out_dir=out_dir, counts=counts, rejected=len(rejected), quality=quality, warnings=warnings)


def synth_stage(kb_path: str | Path, out_dir: str | Path, config: SynthConfig, *, force: bool = False) -> StageResult:
    """The cached stage: ``synthesize`` runs only when the KB or config changed. Named outputs: ``train`` and
    ``eval`` (folders of task JSONL) and ``quality`` (quality.md)."""
    open_kb(kb_path)  # a missing or broken KB fails here with its own one-line reason
    with stage_run("synth", out_dir, inputs=[kb_path], config=config, seed=config.seed, force=force) as run:
        if not run.skipped:
            result = synthesize(kb_path, out_dir, config)
            for name in [*result.counts, "rejected", "eval/suite", "quality"]:
                run.output(f"{name}.yaml" if name == "eval/suite" else f"{name}.json" if name == "quality" else f"{name}.jsonl")
            run.output("quality.md", key="quality")
            run.name_output("train", run.out_dir / "train")
            run.name_output("eval", run.out_dir / "eval")
            run.metrics.update(result.counts, rejected=result.rejected, facts=result.quality["facts_kept"],
                               candidates=result.quality["candidates"], warnings=result.warnings)
    return run.result()
