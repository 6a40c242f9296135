"""What users flagged: failed answers (thumbs down, corrections) grouped so a team sees what to fix.

Each exchange's latest verdict per user counts once: a thumbs down or a correction that differs from the
served answer is a failure, a thumbs up a success. Every exchange gets a group from what it was:

- ``tool_call/<tool>``: the request offered tools and the served answer or the correction is a call (read
  by :mod:`domainlm.parsing`, as ``serve`` and ``eval`` read calls). The failure says how it failed:
  ``missed call``, ``wrong tool`` or ``wrong arguments``.
- ``structured``: the request asked for JSON (``response_format``); ``kb``: a grounded answer; ``chat``.

When eval suites are given, the user's question is matched to the most similar suite item (character
bigram overlap, which needs no tokenizer and works for Chinese and English alike) and takes its task,
subcategory and, for intent items, the intent: "14 of 20 loan questions were downvoted" points at the
data to add. A question like no item stays in its own group. Examples are PII-redacted.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from domainlm.parsing import decode_arguments, extract_tool_call, parse_tool_calls
from domainlm.serve.store import FeedbackRecord

MIN_SIMILARITY = 0.3  # bigram Jaccard below which a question is "like no suite item"


@dataclass
class Exchange:
    """One served answer with a user's latest verdict on it."""

    response_id: str
    question: str
    answer: str
    verdict: str  # "down" | "corrected" | "up"
    correction: str | None
    kind: str  # tool_call | structured | kb | chat
    detail: str | None = None  # tool_call: tool name; how a call failed in ``why``
    why: str | None = None
    suite: dict = field(default_factory=dict)  # task, subcategory, intent of the nearest suite item

    @property
    def failed(self) -> bool:
        return self.verdict != "up"

    @property
    def group(self) -> str:
        if self.kind == "tool_call":
            return f"tool_call/{self.detail}"
        if self.suite:
            parts = [self.suite.get("task"), self.suite.get("subcategory"), self.suite.get("intent")]
            return "/".join(dict.fromkeys(p for p in parts if p))
        return self.kind


def _question(record: FeedbackRecord) -> str:
    for message in reversed(record.request.get("messages") or []):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def _call(text: str | None, tools: list[dict] | None) -> dict | None:
    if not text or not tools:
        return None
    parsed = parse_tool_calls(text, tools)  # <tool_call> blocks first, then a JSON call object or list
    if parsed.tool_calls:
        fn = parsed.tool_calls[0]["function"]
        return {"name": fn["name"], "arguments": decode_arguments(fn["arguments"])}
    return extract_tool_call(text)


def _exchange(record: FeedbackRecord, verdict: str) -> Exchange:
    request = record.request
    offered = request.get("tools")
    served, fixed = _call(record.response, offered), _call(record.correction, offered)
    exchange = Exchange(record.response_id, _question(record), record.response, verdict, record.correction,
                        kind="chat")
    if served or fixed:
        exchange.kind, exchange.detail = "tool_call", (fixed or served)["name"]
        if verdict == "corrected" and fixed:
            exchange.why = ("missed call" if not served else "wrong tool" if served["name"] != fixed["name"]
                            else "wrong arguments")
    elif (request.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        exchange.kind = "structured"
    elif request.get("kb"):
        exchange.kind = "kb"
    return exchange


def exchanges(records: Iterable[FeedbackRecord]) -> list[Exchange]:
    """Each (response, user)'s latest verdict as an :class:`Exchange`; comments alone are no verdict."""
    latest: dict[tuple, tuple[FeedbackRecord, str]] = {}
    for record in records:
        if record.correction and record.correction.strip() != record.response.strip():
            verdict = "corrected"
        elif record.rating in ("up", "down"):
            verdict = record.rating
        else:
            continue
        latest[(record.response_id, record.user)] = (record, verdict)
    return [_exchange(record, verdict) for record, verdict in latest.values()]


def _bigrams(text: str) -> set[str]:
    text = re.sub(r"\s+", "", text.lower())
    return {text[i : i + 2] for i in range(len(text) - 1)} or ({text} if text else set())


class SuiteMatcher:
    """The most similar suite item to a question, by character-bigram Jaccard similarity."""

    def __init__(self, items: Sequence[dict]):
        self.items = [item for item in items if isinstance(item.get("question"), str)]
        self.grams = [_bigrams(item["question"]) for item in self.items]

    def label(self, question: str) -> dict:
        grams = _bigrams(question)
        best, best_score = None, 0.0
        for item, item_grams in zip(self.items, self.grams, strict=True):
            union = len(grams | item_grams)
            score = len(grams & item_grams) / union if union else 0.0
            if score > best_score:
                best, best_score = item, score
        if best is None or best_score < MIN_SIMILARITY:
            return {}
        label = {"task": best.get("task") or best.get("type"), "subcategory": best.get("subcategory"),
                 "similarity": round(best_score, 3), "item": best.get("id")}
        if best.get("type") == "intent" and isinstance(best.get("answer"), str):
            label["intent"] = best["answer"]
        return label


def failure_report(records: Iterable[FeedbackRecord], suites: Sequence[str | Path] = (), *, examples: int = 3,
                   redact=None) -> dict:
    """Failures grouped by what they were: ``{"exchanges", "failures", "groups": [...]}``, the groups with
    the most failures first, each with its failure rate, how calls failed, and a few redacted examples."""
    if redact is None:
        from domainlm.data import redact_pii

        def redact(text):
            return redact_pii(text).text
    found = exchanges(records)
    if suites:
        from domainlm.evals import load_suite

        matcher = SuiteMatcher([item for suite in suites for item in load_suite(suite).items])
        for exchange in found:
            if exchange.kind != "tool_call":
                exchange.suite = matcher.label(exchange.question)
    by_group: dict[str, list[Exchange]] = defaultdict(list)
    for exchange in found:
        by_group[exchange.group].append(exchange)
    groups = []
    for name, members in by_group.items():
        failed = [e for e in members if e.failed]
        if not failed:
            continue
        whys: dict[str, int] = defaultdict(int)
        for e in failed:
            if e.why:
                whys[e.why] += 1
        groups.append({
            "group": name, "failures": len(failed), "exchanges": len(members),
            "failure_rate": round(len(failed) / len(members), 3), "how": dict(whys),
            "examples": [{"question": redact(e.question), "answer": redact(e.answer), "verdict": e.verdict,
                          **({"correction": redact(e.correction)} if e.correction else {})} for e in failed[:examples]],
        })
    groups.sort(key=lambda g: (-g["failures"], -g["failure_rate"], g["group"]))
    return {"exchanges": len(found), "failures": sum(e.failed for e in found), "groups": groups}


def format_report(report: dict) -> str:
    """The report as plain text lines for the terminal."""
    lines = [f"{report['failures']} of {report['exchanges']} rated or corrected answers failed"]
    if report["exchanges"] < 20:
        lines.append(f"  (only {report['exchanges']} exchanges: the rates below are anecdotes, not statistics)")
    for g in report["groups"]:
        how = ", ".join(f"{k} {v}" for k, v in g["how"].items())
        lines.append(f"{g['group']}: {g['failures']} of {g['exchanges']} failed ({g['failure_rate']:.0%})"
                     + (f" — {how}" if how else ""))
        for ex in g["examples"]:
            lines.append(f"    Q: {ex['question'][:80]}")
            lines.append(f"    A: {ex['answer'][:80]}" + (f"  → {ex['correction'][:80]}" if ex.get("correction") else ""))
    return "\n".join(lines)
