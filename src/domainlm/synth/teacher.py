"""A teacher model writes question/answer pairs from chunks; each pair is held to the checks rule-made
questions pass (:func:`domainlm.synth.checks.check_pair`) before it is kept.

A reply that is not the JSON array asked for is asked again (``teacher_retries``); the cost (requests,
retries, characters, and the server's own token counts where it reports them) goes to the quality report.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from rich.console import Console

from domainlm.models import load_model
from domainlm.progress import counting_bar
from domainlm.synth.checks import check_pair
from domainlm.synth.config import SynthConfig
from domainlm.synth.facts import detect_lang, sentences
from domainlm.synth.quality import Tally

TEACHER_PROMPT = {
    "zh": "根据下面的资料写出{n}个问答对。要求：问题是完整的问句，点明所问的对象（不要用“他”“该”“这”等代词），"
    "不看资料也能读懂；答案是简短的原文片段，必须一字不差地出现在资料中。只输出JSON数组，"
    '形如[{{"question": "...", "answer": "..."}}]。\n资料：\n{text}',
    "en": "Write {n} question-answer pairs about the passage below. Each question is complete, names what it asks "
    "about (no bare pronouns) and makes sense without the passage; each answer is a short span copied verbatim "
    'from the passage. Output only a JSON array like [{{"question": "...", "answer": "..."}}].\nPassage:\n{text}',
}
TEACHER_RETRY = {
    "zh": "上次的输出不是所要求的JSON数组。请只输出JSON数组，不要任何其他文字。",
    "en": "The last output was not the JSON array asked for. Output only the JSON array, nothing else.",
}


@dataclass
class TeacherPair:
    """A question/answer pair a teacher wrote from a chunk, verified against it (the answer is in ``sentence``)."""

    chunk: dict
    sentence: str
    question: str
    answer: str
    lang: str


def parse_pairs(text: str) -> list[dict] | None:
    """Question/answer pairs from a teacher's reply; None when the reply holds no JSON array."""
    match = re.search(r"\[.*\]", text, flags=re.S)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, list):
        return None
    return [d for d in data if isinstance(d, dict) and isinstance(d.get("question"), str) and isinstance(d.get("answer"), str)]


def teacher_pairs(chunks: list[dict], config: SynthConfig, rng: random.Random, tally: Tally,
                  console: Console) -> tuple[list[TeacherPair], list[dict], dict]:
    """Pairs a teacher model writes from chunks, each verified against its chunk before it is kept.

    Returns (kept pairs, rejected records, cost): a chunk whose reply is not a JSON array is asked again
    (``teacher_retries``), and the cost counts requests and tokens (the server's own count where it
    reports one, else characters)."""
    teacher = load_model(config.teacher)
    picked = rng.sample(chunks, min(config.max_chunks_for_teacher, len(chunks)))
    cost = {"requests": 0, "retries": 0, "prompt_chars": 0, "completion_chars": 0}
    kept, rejected = [], []
    with counting_bar(console=console) as progress:
        task = progress.add_task("synth: teacher", total=len(picked))
        for chunk in picked:
            lang = detect_lang(chunk["text"])
            messages = [{"role": "user", "content": TEACHER_PROMPT[lang].format(
                n=config.teacher_questions_per_chunk, text=chunk["text"])}]
            pairs = None
            for attempt in range(config.teacher_retries + 1):
                output = teacher.chat([messages], max_new_tokens=512, temperature=0.0, seed=config.seed + attempt)[0]
                cost["requests"] += 1
                cost["retries"] += attempt > 0
                cost["prompt_chars"] += sum(len(m["content"]) for m in messages)
                cost["completion_chars"] += len(output)
                pairs = parse_pairs(output)
                if pairs is not None:
                    break
                messages = [*messages, {"role": "assistant", "content": output},
                            {"role": "user", "content": TEACHER_RETRY[lang]}]
            progress.advance(task)
            if pairs is None:
                rejected.append({"chunk_id": chunk["id"], "output": output, "reason": "no JSON question/answer pairs"})
                tally.drop("teacher: no JSON question/answer pairs", output[:200])
                continue
            for pair in pairs:
                tally.candidates += 1
                question, answer = pair["question"].strip(), pair["answer"].strip()
                failed = check_pair(question, answer, chunk["text"], lang)
                if failed:
                    rejected.append({"chunk_id": chunk["id"], "output": pair, "reason": failed[0], "checks": failed})
                    tally.drop(f"teacher: {failed[0]}", f"{question} → {answer}")
                    continue
                sentence = next((s for s in sentences(chunk["text"], lang) if answer in s), answer)
                kept.append(TeacherPair(chunk, sentence, question, answer, lang))
    usage = getattr(teacher, "usage", None)
    if usage:
        cost.update(usage)
    return kept, rejected, cost
