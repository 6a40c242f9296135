"""Live evaluation: prompt a model on suite items, collect raw outputs and measure the compute spent.

Works with any backend from :mod:`domainlm.models` (``generate``/``chat``/``loglikelihood``/``info``).
Greedy decoding; the models contract makes greedy outputs independent of batch size, so the
predictions here are the same whatever ``batch_size`` is.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from domainlm.errors import DomainlmError
from domainlm.evals.agent import run_agent_items
from domainlm.evals.density import request_flops
from domainlm.evals.tasks import SuiteConfig
from domainlm.kb import passage_retriever
from domainlm.prompts import CONTEXT_TYPES, LETTERS, render_answer, render_prompt


def raw_prompt(conversation: list[dict]) -> str:
    """A chat turned into a plain completion prompt, for base models without a chat template."""
    lines = []
    for message in conversation:
        lines.append(("问：" if message["role"] == "user" else "答：") + message["content"])
    return "\n".join(lines) + "\n答："


RAW_STOP = ["\n问："]


def _closed_options(item: dict) -> list[str] | None:
    """Continuations to score by log-likelihood, for types whose answer is one of a closed set."""
    if item["type"] == "mcq" and item.get("choices"):
        return list(LETTERS[: len(item["choices"])])
    if item["type"] == "yesno":
        return ["是", "否"]
    return None


class TokenCounter:
    """Real token counts where the backend exposes its tokenizer; else an estimate (1 per CJK char, 1 per 4 other chars)."""

    def __init__(self, model):
        self.tokenizer = getattr(model, "tokenizer", None)
        self.render = getattr(model, "render_chat", None)
        self.estimated = self.tokenizer is None

    def count(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        cjk = len(re.findall(r"[\u3400-\u9fff]", text))
        return cjk + (len(text) - cjk + 3) // 4

    def chat_text(self, conversation: list[dict], tools=None, chat: bool = True) -> str:
        if not chat:
            return raw_prompt(conversation)
        if self.render is not None:
            try:
                return self.render(conversation, tools)
            except DomainlmError:  # a model without a chat template: count the raw turns
                pass
        return "\n".join(m["content"] for m in conversation)


@dataclass
class Job:
    """One item, ready to send: its conversation, and how to ask (log-likelihood options or generation)."""

    item: dict
    conversation: list[dict]
    tools: list[dict] | None
    max_new_tokens: int
    options: list[str] | None
    retrieved: list[str] | None
    chat: bool


def _record(job: Job, output: str, prompt_tokens: int, output_tokens: int, **extra) -> dict:
    record = {"id": job.item["id"], "output": output, **extra, "prompt_tokens": prompt_tokens,
              "output_tokens": output_tokens}
    if job.retrieved is not None:
        record["retrieved"] = job.retrieved
    return record


def build_jobs(items: list[dict], configs: dict[str, SuiteConfig], supports_logprobs: bool,
               retrieve: Callable[[str], list[str]] | None = None) -> list[Job]:
    by_task: dict[str, list[dict]] = {}
    for item in items:
        by_task.setdefault(item["task"], []).append(item)
    jobs = []
    for task_items in by_task.values():
        for item in task_items:
            cfg = configs[item["_suite"]]
            template = cfg.templates.get(item["type"])  # None: the default for the item's type and language
            # Passages only where the prompt has room for them (the same rule as retrieval-augmented training).
            retrieved = retrieve(item.get("question", "")) if retrieve and item["type"] in CONTEXT_TYPES else None
            conversation = []
            # Few-shot: the first k other items of the same task, as earlier turns.
            for shot in [x for x in task_items if x["id"] != item["id"]][: cfg.few_shot]:
                conversation.append({"role": "user", "content": render_prompt(shot, template)})
                conversation.append({"role": "assistant", "content": render_answer(shot)})
            prompt = render_prompt(item, template, retrieved)
            if item.get("tools") and not cfg.chat:
                # Without a chat template there is no tools slot: the model reads them in the prompt.
                prompt = "可用工具：" + json.dumps(item["tools"], ensure_ascii=False) + "\n" + prompt
            conversation.append({"role": "user", "content": prompt})
            use_ll = cfg.mcq_mode == "loglikelihood" or (cfg.mcq_mode == "auto" and supports_logprobs)
            jobs.append(Job(item, conversation, item.get("tools") if item["type"] == "tool_call" else None,
                            cfg.max_new_tokens, _closed_options(item) if use_ll else None, retrieved, cfg.chat))
    return jobs


def run_model(model, items: list[dict], configs: dict[str, SuiteConfig], *, kb: str | None = None, kb_k: int = 3,
              batch_size: int = 8, seed: int = 0, progress: Callable[[int], None] | None = None) -> tuple[dict, dict]:
    """Outputs for every item (``{id: {"output", ...}}``) and usage (tokens, FLOPs, wall time)."""
    counter = TokenCounter(model)
    info = getattr(model, "info", {}) or {}
    started = time.perf_counter()
    retrieve = passage_retriever(kb, kb_k) if kb else None
    # Agent items run a loop of their own against a simulated environment (domainlm.evals.agent).
    agent_items = [i for i in items if i["type"] == "agent"]
    jobs = build_jobs([i for i in items if i["type"] != "agent"], configs, getattr(model, "supports_logprobs", False),
                      retrieve)
    predictions: dict[str, dict] = {}
    usage = {"items": len(items), "tokens_in": 0, "tokens_out": 0, "flops": 0.0, "tokens_estimated": counter.estimated}

    # Closed-answer items by log-likelihood: one request per option; the backend batches them.
    ll_jobs = [j for j in jobs if j.options]
    contexts = {j.item["id"]: counter.chat_text(j.conversation, chat=j.chat) for j in ll_jobs}
    requests = [(contexts[j.item["id"]], option) for j in ll_jobs for option in j.options]
    scores: list[float] = []
    for start in range(0, len(requests), batch_size):
        scores.extend(model.loglikelihood(requests[start : start + batch_size]))
    pos = 0
    for job in ll_jobs:
        lls = scores[pos : pos + len(job.options)]
        pos += len(job.options)
        best = max(range(len(lls)), key=lambda i: (lls[i], -i))  # ties go to the earlier option
        context_tokens = counter.count(contexts[job.item["id"]])
        predictions[job.item["id"]] = _record(job, job.options[best], context_tokens, 0, loglikelihoods=lls)
        usage["tokens_in"] += context_tokens * len(job.options)
        for option in job.options:
            usage["flops"] += request_flops(info, context_tokens + counter.count(option), 0) or 0.0
        if progress:
            progress(1)

    # Generation, batched by (length limit, tools, chat or raw); greedy outputs do not depend on batching.
    groups: dict[tuple, list[Job]] = {}
    for job in (j for j in jobs if not j.options):
        tools_key = json.dumps(job.tools, sort_keys=True, ensure_ascii=False) if job.tools else ""
        groups.setdefault((job.max_new_tokens, tools_key, job.chat), []).append(job)
    for (max_new, _, chat), group in groups.items():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            if chat:
                outputs = model.chat([j.conversation for j in chunk], max_new_tokens=max_new, temperature=0.0,
                                     tools=chunk[0].tools, seed=seed)
            else:
                outputs = model.generate([raw_prompt(j.conversation) for j in chunk], max_new_tokens=max_new,
                                         temperature=0.0, stop=RAW_STOP, seed=seed)
            for job, output in zip(chunk, outputs, strict=True):
                prompt_tokens = counter.count(counter.chat_text(job.conversation, job.tools, chat=chat))
                output_tokens = counter.count(output)
                predictions[job.item["id"]] = _record(job, output, prompt_tokens, output_tokens)
                usage["tokens_in"] += prompt_tokens
                usage["tokens_out"] += output_tokens
                usage["flops"] += request_flops(info, prompt_tokens, output_tokens) or 0.0
                if progress:
                    progress(1)
    for suite in sorted({i["_suite"] for i in agent_items}):
        predictions.update(run_agent_items(model, [i for i in agent_items if i["_suite"] == suite],
                                           max_new_tokens=configs[suite].max_new_tokens, batch_size=batch_size,
                                           seed=seed, counter=counter, usage=usage, info=info, progress=progress))
    usage["wall_s"] = time.perf_counter() - started
    if not usage["flops"]:
        usage["flops"] = None
    return predictions, usage


_SCORE = re.compile(r"[1-5](?:\.\d+)?")


def judge_generations(judge_model, items: list[dict], predictions: dict[str, dict], prompt: str,
                      batch_size: int = 8) -> None:
    """Score ``generation`` outputs 1–5 with a judge model; stores ``judge_score`` in [0, 1] and its raw output."""
    todo = [i for i in items if i["type"] == "generation" and i["id"] in predictions]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        conversations = [[{"role": "user", "content": prompt.format(
            question=i.get("question", ""), reference=i["answer"], output=predictions[i["id"]]["output"])}] for i in chunk]
        outputs = judge_model.chat(conversations, max_new_tokens=8, temperature=0.0)
        for item, out in zip(chunk, outputs, strict=True):
            match = _SCORE.search(out or "")
            pred = predictions[item["id"]]
            pred["judge_output"] = out
            # An unreadable judgement scores 0: the judge did not vouch for the answer.
            pred["judge_score"] = (min(5.0, float(match.group(0))) - 1) / 4 if match else 0.0
