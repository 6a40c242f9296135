"""Failure mining: downvoted and corrected answers grouped by task / intent / tool, with redacted examples."""

from __future__ import annotations

import json

import pytest

from domainlm.serve.failures import failure_report, format_report
from domainlm.serve.store import FeedbackStore

TOOLS = [{"type": "function", "function": {"name": "query_balance", "parameters": {"type": "object", "properties": {
    "account": {"type": "string"}}}}}, {"type": "function", "function": {"name": "report_lost_card", "parameters": {}}}]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from domainlm.sample import generate_sample

    root = generate_sample(tmp_path_factory.mktemp("sample") / "harbor")
    return root / "tasks" / "eval"


def _intent_questions(suite) -> tuple[str, list[str]]:
    """The intent with the most Chinese eval questions, and those questions (users ask the same way)."""
    from collections import Counter

    items = [json.loads(line) for line in (suite / "intent.jsonl").read_text("utf-8").splitlines()]
    items = [i for i in items if i.get("lang", "zh") == "zh" and not i["question"].isascii()]
    intent = Counter(i["answer"] for i in items).most_common(1)[0][0]
    return intent, [i["question"] for i in items if i["answer"] == intent]


def _store(tmp_path, suite) -> FeedbackStore:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")

    def served(question, answer, tools=None, **feedback):
        request = {"messages": [{"role": "user", "content": question}], **({"tools": tools} if tools else {})}
        rid = store.add_response(model="m", request=request, response=answer, user="u")
        store.add_feedback(rid, user="u", **feedback)

    _, asked = _intent_questions(suite)
    for question in asked[:3]:
        served(question, "您好，请问还有什么可以帮您？", rating="down")
    served(asked[3], "可以在手机银行办理。", rating="up")
    call = json.dumps([{"name": "query_balance", "arguments": {"account": "储蓄卡"}}], ensure_ascii=False)
    served("查一下我信用卡的余额，手机13912345678", call, TOOLS,
           correction=json.dumps({"name": "query_balance", "arguments": {"account": "信用卡"}}, ensure_ascii=False))
    served("卡丢了怎么办", "请去柜台。", TOOLS, correction='<tool_call>\n{"name": "report_lost_card", "arguments": {}}\n</tool_call>')
    served("火星上的天气怎么样？", "晴。", rating="down")
    served("火星上的天气怎么样？", "晴。", comment="a comment alone is no verdict")
    return store


def test_failures_grouped_by_intent_and_tool(tmp_path, suite):
    store = _store(tmp_path, suite)
    report = failure_report(store.iter_feedback(), [suite])
    groups = {g["group"]: g for g in report["groups"]}
    intent, _ = _intent_questions(suite)
    loan = next(g for name, g in groups.items() if name.endswith("/" + intent))
    assert loan["failures"] == 3 and loan["exchanges"] == 4 and loan["failure_rate"] == 0.75
    assert groups["tool_call/query_balance"]["how"] == {"wrong arguments": 1}
    assert groups["tool_call/report_lost_card"]["how"] == {"missed call": 1}
    assert groups["chat"]["failures"] == 1  # like no suite item: its own group
    assert report["groups"][0] is loan  # most failures first
    text = json.dumps(report, ensure_ascii=False)
    assert "13912345678" not in text and "[MOBILE]" in text
    lines = format_report(report)
    assert "anecdotes" in lines and "3 of 4 failed (75%)" in lines


def test_cli_failures_json(tmp_path, suite, capsys):
    from domainlm.cli import main

    _store(tmp_path, suite).close()
    assert main(["feedback", "failures", "--db", f"sqlite:///{tmp_path / 'fb.db'}", "--suite", str(suite), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["exchanges"] == 7 and report["failures"] == 6
