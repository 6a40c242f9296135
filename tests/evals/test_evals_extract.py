"""Answer extractors: hand-checked cases and the labelled adversarial set (>= 300 outputs, >= 99%)."""

import json
from pathlib import Path

import pytest

from domainlm.evals.extract import (
    extract_choice,
    extract_entities,
    extract_label,
    extract_yes_no,
    is_refusal,
)
from domainlm.parsing import extract_json, extract_tool_call

DATA = Path(__file__).parent / "data" / "adversarial_extraction.jsonl"


def _extract(row):
    if row["kind"] == "mcq":
        return extract_choice(row["output"], row["n_options"], row.get("choices"))
    if row["kind"] == "yesno":
        return extract_yes_no(row["output"])
    return is_refusal(row["output"])


def test_adversarial_set_accuracy_at_least_99_percent():
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300
    assert {r["kind"] for r in rows} == {"mcq", "yesno", "refusal"}
    wrong = [(r["id"], r["output"], r["gold"], _extract(r)) for r in rows if _extract(r) != r["gold"]]
    accuracy = 1 - len(wrong) / len(rows)
    assert accuracy >= 0.99, wrong


@pytest.mark.parametrize(
    "output,expected",
    [
        ("答案不是A，而是C", "C"),            # a first-letter harness says A
        ("A股市场上涨，所以选B", "B"),        # "A股" is A-shares, not option A
        ("A和B都不对，C正确", "C"),
        ("A选项错误，B选项错误，C选项错误", "D"),  # elimination
        ("A bank deposit is safe. So the answer is D", "D"),  # English article
        ("我一开始以为是B，但最终答案是A。", "A"),  # self-revision
        ("正确的是A、C", "AC"),
        ("答案：AC", "AC"),
        ("答案：A，B选项错误", "A"),
        ("此题不确定，可能是A也可能是B。", None),
        ("A、B、C、D都有可能。", None),
        ("", None),
    ],
)
def test_extract_choice_hand_checked(output, expected):
    assert extract_choice(output, 4) == expected


def test_extract_choice_by_option_text_prefers_the_longer_option():
    assert extract_choice("年化收益率10%以上", 4, ["10%", "10%以上", "5%", "5%以下"]) == "B"
    assert extract_choice("不是活期存款，而是大额存单", 4, ["活期存款", "定期存款", "大额存单", "国债"]) == "C"


def test_extract_choice_respects_option_count():
    assert extract_choice("答案是E", 5) == "E"
    assert extract_choice("答案是E", 4) is None


@pytest.mark.parametrize(
    "output,expected",
    [("是的。", "是"), ("这个说法是错误的。", "否"), ("不，这不是事实。", "否"), ("并不正确。", "否"),
     ("这种说法并非错误。", "是"), ("是否正确取决于具体条款。", None), ("This statement is incorrect.", "否")],
)
def test_extract_yes_no(output, expected):
    assert extract_yes_no(output) == expected


def test_refusal_detection_distinguishes_answers_that_use_negative_words():
    assert is_refusal("文档中没有提及该产品的年费。")
    assert is_refusal("I cannot answer this question based on the documents.")
    assert not is_refusal("没有手续费。")
    assert not is_refusal("我们无法提供上门服务，但您可以在任一网点办理。")
    assert not is_refusal("这并非无法回答的问题：利率为3%。")


def test_json_and_tool_call_extraction():
    assert extract_json('好的：```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json("结果是 {\"fee\": 100} 元") == {"fee": 100}
    assert extract_json("no json here") is None
    qwen = '<tool_call>\n{"name": "get_balance", "arguments": {"card_tail": "1234"}}\n</tool_call>'
    assert extract_tool_call(qwen) == {"name": "get_balance", "arguments": {"card_tail": "1234"}}
    openai_style = '{"tool_calls": [{"function": {"name": "f", "arguments": "{\\"x\\": 2}"}}]}'
    assert extract_tool_call(openai_style) == {"name": "f", "arguments": {"x": 2}}


@pytest.mark.parametrize("output", [
    # Qwen3.5 / Qwen3-Coder
    "<tool_call>\n<function=get_balance>\n<parameter=card_tail>\n1234\n</parameter>\n<parameter=币种>\n人民币\n"
    "</parameter>\n</function>\n</tool_call>",
    # GLM-4.6
    "<think></think>\n<tool_call>get_balance\n<arg_key>card_tail</arg_key>\n<arg_value>1234</arg_value>\n"
    "<arg_key>币种</arg_key>\n<arg_value>人民币</arg_value>\n</tool_call>",
    # MiniCPM5
    '<function name="get_balance"><param name="card_tail">1234</param><param name="币种">人民币</param></function>',
    # DeepSeek-V3.1, as written before decoding drops its special tokens
    '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_balance<｜tool▁sep｜>{"card_tail": "1234", "币种": "人民币"}'
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    # Llama 3.x: plain JSON with "parameters"
    '{"name": "get_balance", "parameters": {"card_tail": "1234", "币种": "人民币"}}',
])
def test_tool_call_extraction_reads_each_family_format(output):
    call = extract_tool_call(output)
    assert call["name"] == "get_balance"
    # the schema, when the eval item passes its tools, keeps a string parameter a string
    tools = [{"type": "function", "function": {"name": "get_balance", "parameters": {
        "type": "object", "properties": {"card_tail": {"type": "string"}, "币种": {"type": "string"}}}}}]
    assert extract_tool_call(output, tools) == {"name": "get_balance", "arguments": {"card_tail": "1234", "币种": "人民币"}}


def test_tool_call_extraction_leaves_a_malformed_block_unread():
    assert extract_tool_call("<tool_call>\n<function=get_balance>\n<parameter=card_tail>\n1234\n</tool_call>") is None
    assert extract_tool_call('<function name="get_balance"><param name="card_tail">1234</function>') is None


def test_entity_and_label_extraction():
    assert extract_entities('[{"type": "PER", "text": "张三"}]') == [("PER", "张三")]
    assert extract_entities('{"ORG": ["海港银行", "央行"]}') == [("ORG", "海港银行"), ("ORG", "央行")]
    assert extract_entities("人名：张三、李四\n机构：海港银行") == [("人名", "张三"), ("人名", "李四"), ("机构", "海港银行")]
    assert extract_entities("无实体") == []
    labels = ["查询余额", "转账", "查询转账记录"]
    assert extract_label("用户的意图是查询转账记录", labels) == "查询转账记录"
    assert extract_label("转账", labels) == "转账"
    assert extract_label("不知道", labels) is None
