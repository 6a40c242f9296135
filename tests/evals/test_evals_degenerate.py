"""Degenerate outputs (empty, whitespace, punctuation only, a loop to the end) are recognised, and real text,
however short, is not: no false positive on hundreds of real Chinese news sentences and reading-comprehension
answers."""

import json

import pytest

from domainlm.evals.degenerate import degenerate_reason


@pytest.mark.parametrize(
    "output,reason",
    [
        (None, "empty"),
        ("", "empty"),
        ("  \n\t", "whitespace"),
        ("\u3000\u200b", "whitespace"),  # ideographic space, zero-width space
        ("。。。", "punctuation only"),
        ("……", "punctuation only"),
        ("?!", "punctuation only"),
        ("的的的的的的的的的的的的", "repeated token"),
        ("好的好的好的好的好的", "repeated token"),
        ("好的好的好的好的好的好", "repeated token"),  # cut off mid-unit by max_new_tokens
        ("A A A A A", "repeated token"),
        ("A\nA\nA\nA\nA\nA", "repeated token"),
        ("the the the the the the", "repeated token"),
        ("答案是B。。。。。。。。。。。。", "repeated token"),  # an answer, then a punctuation loop
        ("好好好好好好好好好好！", "repeated token"),
        ("无法回答无法回答无法回答无法回答", "repeated token"),  # a looping "refusal" is no refusal
        ("海港金卡年费为100元，" + "的" * 16, "repeated token"),  # a long loop after some words
        ("年费为100元。年费为100元。年费为100元。年费为100元。", "repeated phrase"),
        ("abcde" * 8, "repeated phrase"),
        ("0" * 30, "repeated token"),
    ],
)
def test_degenerate_outputs(output, reason):
    assert degenerate_reason(output) == reason


@pytest.mark.parametrize(
    "output",
    [
        "3年", "B", "是", "否", "100元", "A", "好的", "哈哈哈哈", "谢谢谢谢", "ok ok ok", "好的……", "嗯。",
        '{"name": "transfer", "arguments": {"amount": 100, "to": "张三"}}',
        '{"product": "海港金卡", "fee": 100}',
        "[]", "{}", "```json\n[]\n```", "[ ]",  # an empty list / object is an answer: "no entities"
        "1. a\n2. b",
        "- 身份证\n- 银行卡\n- 手机",
        # numbers end in runs of one digit
        "1000000000", "100000000元", "0.3333333333333333", "0.09090909090909091", "1,000,000,000",
        "抱歉，资料中没有相关信息，无法回答。",
        "I cannot answer that from the documents.",
        "答案是C。",
        "raise_credit_limit",
    ],
)
def test_real_short_answers_are_not_degenerate(output):
    assert degenerate_reason(output) is None


def test_loops_from_a_real_model_are_caught():
    # Tails of chatglm2-6b outputs in LawBench's published predictions (cut off by its token limit).
    loops = [
        "小区自己供暖是否需要交余热费不交余热费物业把水停了" * 5 + "小区自己供",
        "欠侯某乙借款20000元； " * 6 + "欠侯某乙借款2000",
        "被告反诉原告，原告申请执行，" * 10 + "被告反诉原告，原告申请",
    ]
    for text in loops:
        assert degenerate_reason(text) in ("repeated token", "repeated phrase"), text


def test_no_false_positive_on_real_chinese_text(shared_benchmarks):
    """UHGEval's human-written news continuations and CMRC 2018's answers and passages: real Chinese
    text of every length, from a two-character answer to a whole passage. None of it is degenerate."""
    uhg = [json.loads(line) for line in (shared_benchmarks / "uhgeval" / "uhgeval_concise.dev.jsonl").open(encoding="utf-8")]
    texts = [row["realContinuation"] for row in uhg] + [row["newsBeginning"] for row in uhg]
    cmrc = json.loads((shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))["data"]
    paragraphs = [p for doc in cmrc for p in doc["paragraphs"]]
    answers = [a["text"] for p in paragraphs for q in p["qas"] for a in q["answers"]]
    texts += answers[:3000] + [p["context"] for p in paragraphs[:300]]
    assert len(texts) >= 4000 and min(len(t.strip()) for t in answers[:3000]) <= 2
    flagged = [(t[:60], degenerate_reason(t)) for t in texts if degenerate_reason(t)]
    assert flagged == []
