"""Task items as prompts: one rendering for training, evaluation and serving.

A model is asked at evaluation exactly the way it was taught: ``domainlm train`` turns a task item into
its user turn with :func:`render_prompt` and its reply with :func:`render_answer`, and ``domainlm eval``
builds its prompts with the same two functions (retrieved passages included, for ``--kb`` variants).
A mismatch here is the most common reason a fine-tuned model scores worse than it should.
"""

from __future__ import annotations

import json
import re

LETTERS = "ABCDEFGH"  # mcq options; larger label sets are listed by name
CJK = re.compile(r"[\u3400-\u9fff]")

TEMPLATES = {
    "zh": {
        "mcq": "{context}{question}\n{choices}\n请只回答正确选项的字母。",
        "yesno": "{context}{question}\n上述说法是否正确？请只回答“是”或“否”。",
        "qa": "{context}{question}\n请简短回答。",
        "intent": "从以下意图中选出用户的意图，只输出意图名称：{labels}\n用户：{question}",
        "ner": "抽取下文中的实体（类型：{labels}），输出 JSON 列表，形如 [{{\"type\": \"类型\", \"text\": \"实体\"}}]。\n{question}",
        "tool_call": "{question}\n如需调用工具，只输出 JSON：{{\"name\": 工具名, \"arguments\": {{参数}}}}。",
        "json": "{context}{question}\n按以下 JSON Schema 只输出 JSON：{schema}",
        "refusal": "{context}{question}\n如果资料中没有答案，请说明无法回答。",
        "generation": "{context}{question}",
    },
    "en": {
        "mcq": "{context}{question}\n{choices}\nAnswer with the letter of the correct option only.",
        # The verdict words stay 是/否: the scorer and log-likelihood options read those in either language.
        "yesno": "{context}{question}\nIs the statement correct? Answer only 是 (yes) or 否 (no).",
        "qa": "{context}{question}\nAnswer briefly.",
        "intent": "Pick the user's intent from: {labels}. Output the intent name only.\nUser: {question}",
        "ner": "Extract the entities (types: {labels}) from the text below as a JSON list like "
        "[{{\"type\": \"type\", \"text\": \"entity\"}}].\n{question}",
        "tool_call": "{question}\nIf a tool is needed, output only JSON: {{\"name\": tool, \"arguments\": {{...}}}}.",
        "json": "{context}{question}\nOutput only JSON that follows this JSON Schema: {schema}",
        "refusal": "{context}{question}\nIf the documents do not contain the answer, say that you cannot answer.",
        "generation": "{context}{question}",
    },
}
# Types whose prompt has room for reading material: the ones a knowledge base can help with.
CONTEXT_TYPES = frozenset(kind for kind, template in TEMPLATES["zh"].items() if "{context}" in template)
REFUSAL = {
    "zh": "知识库中没有相关信息，无法回答这个问题。",
    "en": "The knowledge base does not say.",
}
_CONTEXT = {"zh": ("资料：", "参考资料："), "en": ("Context: ", "Passages:")}
_LABEL_JOIN = {"zh": "、", "en": ", "}


def lang_of(text: str) -> str:
    """'zh' when at least a fifth of the letters are CJK characters, else 'en'."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "zh"
    return "zh" if sum(bool(CJK.match(ch)) for ch in letters) / len(letters) >= 0.2 else "en"


def item_lang(item: dict) -> str:
    """The item's language: its own ``lang`` (or ``meta.lang``) when it says, else read from the question."""
    for value in (item.get("lang"), (item.get("meta") or {}).get("lang")):
        if value in TEMPLATES:
            return value
    return lang_of(str(item.get("question", "")))


def item_context(item: dict, retrieved: list[str] | None = None, lang: str | None = None) -> str:
    """The reading material placed before the question: the item's own context, then numbered passages."""
    own, passages = _CONTEXT[lang or item_lang(item)]
    parts = []
    context = item.get("context") or (item.get("raw") or {}).get("context")
    if context:
        parts.append(f"{own}{context}\n")
    if retrieved:
        parts.append(passages + "\n" + "\n".join(f"[{i + 1}] {t}" for i, t in enumerate(retrieved)) + "\n")
    return "".join(parts)


def _choice_lines(choices) -> str:
    if isinstance(choices, dict):
        return "\n".join(f"{key}. {value}" for key, value in choices.items())
    if len(choices) > len(LETTERS):  # label sets (intents: 20+) are listed by name in {labels} instead
        return ""
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def render_prompt(item: dict, template: str | None = None, retrieved: list[str] | None = None) -> str:
    """The user turn for ``item``: ``template`` (a suite's own) or the default for its type and language."""
    lang = item_lang(item)
    template = template or TEMPLATES[lang][item.get("type") or "qa"]
    choices = item.get("choices") or []
    fields = {
        "question": item.get("question", ""),
        "context": item_context(item, retrieved, lang),
        "choices": _choice_lines(choices),
        "labels": _LABEL_JOIN[lang].join(str(c) for c in (choices.values() if isinstance(choices, dict) else choices)),
        "schema": json.dumps(item.get("schema") or {}, ensure_ascii=False),
        "tools": json.dumps(item.get("tools") or [], ensure_ascii=False),
    }
    return template.format(**fields)


def render_answer(item: dict) -> str:
    """The reference reply as text, as a model should write it (training targets, few-shot examples)."""
    answer = item.get("answer")
    kind = item.get("type") or "qa"
    if kind == "refusal" and (answer is None or (isinstance(answer, str) and not answer.strip())):
        return REFUSAL[item_lang(item)]
    if kind == "ner":
        spans = item.get("entities", answer) or []
        return json.dumps([{"type": e.get("type"), "text": e.get("text")} for e in spans if isinstance(e, dict)],
                          ensure_ascii=False)
    if kind == "tool_call" and isinstance(answer, dict):
        return json.dumps({"name": answer.get("name"), "arguments": answer.get("arguments") or {}}, ensure_ascii=False)
    if isinstance(answer, (dict, list)):
        return json.dumps(answer, ensure_ascii=False)
    return "" if answer is None else str(answer)
