"""Tool calls in each family's own format, read by ``domainlm.parsing`` as serve and the eval read them.

Every example is written the way the family's chat template (llama.cpp's ``models/templates``, llama-cpp-python
0.3.36) renders an assistant tool-call turn, so these are the strings a model trained on that template emits.
The matrix in ``tests/models/test_family_conformance.py`` checks the same round trip with the real tokenizers.
"""

from __future__ import annotations

import json

from domainlm.parsing import extract_tool_call, parse_tool_calls

TOOLS = [
    {"type": "function", "function": {
        "name": "get_exchange_rate", "description": "查询两种货币之间的实时汇率",
        "parameters": {"type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
                       "required": ["base", "quote"]}}},
    {"type": "function", "function": {
        "name": "transfer", "description": "转账",
        "parameters": {"type": "object", "properties": {
            "payee": {"type": "string"}, "card_tail": {"type": "string"}, "amount": {"type": "number"},
            "urgent": {"type": "boolean"}, "memo": {"type": "string"}}}}},
]


def calls(parsed) -> list[tuple[str, dict]]:
    """``(name, arguments)`` of each call, after checking it has OpenAI's shape."""
    out = []
    for call in parsed.tool_calls:
        assert set(call) == {"id", "type", "function"} and call["type"] == "function"
        assert call["id"].startswith("call_") and set(call["function"]) == {"name", "arguments"}
        assert isinstance(call["function"]["arguments"], str)  # a JSON string, as OpenAI sends it
        out.append((call["function"]["name"], json.loads(call["function"]["arguments"])))
    assert len({c["id"] for c in parsed.tool_calls}) == len(parsed.tool_calls)
    return out


# ---------------------------------------------------------------------------------------------------
# Qwen2.5 / Qwen3 (Hermes): <tool_call>{json}</tool_call> — unchanged
# ---------------------------------------------------------------------------------------------------


def test_hermes_json_blocks_are_read_as_before():
    text = ('先查汇率。\n<tool_call>\n{"name": "get_exchange_rate", "arguments": {"base": "USD", "quote": "CNY"}}\n'
            '</tool_call>\n<tool_call>\n{"name": "transfer", "arguments": {"payee": "张三"}}\n</tool_call>')
    parsed = parse_tool_calls(text)
    assert calls(parsed) == [("get_exchange_rate", {"base": "USD", "quote": "CNY"}), ("transfer", {"payee": "张三"})]
    assert parsed.content == "先查汇率。" and parsed.finish_reason == "tool_calls"
    assert '"张三"' in parsed.tool_calls[1]["function"]["arguments"]  # Chinese written as itself, not \u escapes


# ---------------------------------------------------------------------------------------------------
# Qwen3.5 (Qwen3.5-4B.jinja; Qwen3-Coder writes the same)
# ---------------------------------------------------------------------------------------------------

QWEN35_TWO = (
    "我先查汇率，再转账。\n\n"
    "<tool_call>\n<function=get_exchange_rate>\n<parameter=base>\n美元\n</parameter>\n"
    "<parameter=quote>\n人民币\n</parameter>\n</function>\n</tool_call>\n"
    "<tool_call>\n<function=transfer>\n<parameter=payee>\n李四\n</parameter>\n<parameter=card_tail>\n0012\n"
    "</parameter>\n<parameter=amount>\n5000\n</parameter>\n<parameter=urgent>\nTrue\n</parameter>\n"
    "<parameter=memo>\n房租\n三月\n</parameter>\n</function>\n</tool_call>"
)


def test_qwen35_calls_with_chinese_values_types_from_the_schema_and_content_kept():
    parsed = parse_tool_calls(QWEN35_TWO, TOOLS)
    assert calls(parsed) == [
        ("get_exchange_rate", {"base": "美元", "quote": "人民币"}),
        # the template writes one newline around each value; the value's own newline stays
        ("transfer", {"payee": "李四", "card_tail": "0012", "amount": 5000, "urgent": True, "memo": "房租\n三月"}),
    ]
    assert parsed.content == "我先查汇率，再转账。"


def test_qwen35_without_the_tools_reads_json_values_and_keeps_the_rest_as_written():
    got = calls(parse_tool_calls(QWEN35_TWO))
    assert got[1][1] == {"payee": "李四", "card_tail": "0012", "amount": 5000, "urgent": "True", "memo": "房租\n三月"}


def test_qwen35_block_without_its_function_end_stays_text():
    broken = "<tool_call>\n<function=transfer>\n<parameter=payee>\n李四\n</parameter>\n</tool_call>"
    parsed = parse_tool_calls(broken, TOOLS)
    assert parsed.tool_calls == [] and parsed.content == broken
    # cut by max_tokens after </function>: the call is whole
    cut = "<tool_call>\n<function=transfer>\n<parameter=payee>\n李四\n</parameter>\n</function>\n</tool"
    assert calls(parse_tool_calls(cut, TOOLS)) == [("transfer", {"payee": "李四"})]


# ---------------------------------------------------------------------------------------------------
# GLM-4.6 (GLM-4.6.jinja): the value is written as is when a string, else as JSON
# ---------------------------------------------------------------------------------------------------

GLM_TWO = (
    "\n<think>用户要汇率和转账。</think>\n好的。"
    "\n<tool_call>get_exchange_rate\n<arg_key>base</arg_key>\n<arg_value>美元</arg_value>\n"
    "<arg_key>quote</arg_key>\n<arg_value>人民币</arg_value>\n</tool_call>"
    "\n<tool_call>transfer\n<arg_key>payee</arg_key>\n<arg_value>王五</arg_value>\n"
    "<arg_key>card_tail</arg_key>\n<arg_value>1234</arg_value>\n<arg_key>amount</arg_key>\n<arg_value>88.5</arg_value>\n"
    "<arg_key>memo</arg_key>\n<arg_value>{\"用途\": \"学费\"}</arg_value>\n</tool_call>"
)


def test_glm_calls_with_chinese_and_json_values():
    parsed = parse_tool_calls(GLM_TWO)
    assert calls(parsed) == [
        ("get_exchange_rate", {"base": "美元", "quote": "人民币"}),
        ("transfer", {"payee": "王五", "card_tail": 1234, "amount": 88.5, "memo": {"用途": "学费"}}),
    ]
    assert parsed.content == "<think>用户要汇率和转账。</think>\n好的。"
    typed = calls(parse_tool_calls(GLM_TWO, TOOLS))[1][1]
    assert typed["card_tail"] == "1234" and typed["amount"] == 88.5  # the schema says string / number
    assert typed["memo"] == '{"用途": "学费"}'  # a string parameter keeps the model's characters


def test_glm_malformed_and_cut_blocks():
    unclosed_value = "<tool_call>transfer\n<arg_key>payee</arg_key>\n<arg_value>王五\n</tool_call>"
    assert parse_tool_calls(unclosed_value).tool_calls == []
    assert parse_tool_calls(unclosed_value).content == unclosed_value
    prose = "<tool_call>我想查一下汇率</tool_call>"  # not a function name: never a call
    assert parse_tool_calls(prose).content == prose and not parse_tool_calls(prose).tool_calls
    # cut by max_tokens after an argument: more may have followed, so it is not a call ...
    lost = "<tool_call>transfer\n<arg_key>payee</arg_key>\n<arg_value>王五</arg_value>\n"
    assert parse_tool_calls(lost).tool_calls == []
    assert parse_tool_calls(lost + "<").tool_calls == []  # "<" may open another <arg_key>
    # ... but cut inside the closing tag it is whole
    assert calls(parse_tool_calls(lost + "</tool_")) == [("transfer", {"payee": "王五"})]
    assert calls(parse_tool_calls("<tool_call>list_branches\n</tool_call>")) == [("list_branches", {})]


# ---------------------------------------------------------------------------------------------------
# MiniCPM5 (openbmb-MiniCPM5-1B.jinja): CDATA around values with <, & or a newline
# ---------------------------------------------------------------------------------------------------


def test_minicpm_calls_with_cdata_and_chinese_values():
    text = ("我来处理。\n<function name=\"get_exchange_rate\"><param name=\"base\">欧元</param>"
            "<param name=\"quote\">人民币</param></function>\n<function name=\"transfer\">"
            "<param name=\"payee\">赵六 & 孙七</param><param name=\"memo\"><![CDATA[第一行\n<第二行> & 备注]]></param>"
            "<param name=\"amount\">200</param></function>")
    parsed = parse_tool_calls(text, TOOLS)
    assert calls(parsed) == [
        ("get_exchange_rate", {"base": "欧元", "quote": "人民币"}),
        ("transfer", {"payee": "赵六 & 孙七", "memo": "第一行\n<第二行> & 备注", "amount": 200}),
    ]
    assert parsed.content == "我来处理。"


def test_minicpm_malformed_block_stays_text():
    broken = '<function name="transfer"><param name="payee">赵六</function>'
    parsed = parse_tool_calls(broken)
    assert parsed.tool_calls == [] and parsed.content == broken
    stray = '说明：<function name="transfer">这里不是参数</function>'
    assert parse_tool_calls(stray).content == stray


# ---------------------------------------------------------------------------------------------------
# DeepSeek (V3.1: NAME<｜tool▁sep｜>{json}; V3/R1: function<｜tool▁sep｜>NAME + ```json fence)
# ---------------------------------------------------------------------------------------------------

DS_BEGIN, DS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DS_CALL, DS_SEP, DS_CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"


def test_deepseek_v31_calls_read_from_the_raw_text():
    text = (f"好的，我来查询。{DS_BEGIN}{DS_CALL}get_exchange_rate{DS_SEP}{{\"base\": \"美元\", \"quote\": \"日元\"}}"
            f"{DS_CALL_END}{DS_CALL}transfer{DS_SEP}{{\"payee\": \"周八\", \"amount\": 100}}{DS_CALL_END}{DS_END}")
    parsed = parse_tool_calls(text)
    assert calls(parsed) == [("get_exchange_rate", {"base": "美元", "quote": "日元"}),
                             ("transfer", {"payee": "周八", "amount": 100})]
    assert parsed.content == "好的，我来查询。"


def test_deepseek_r1_fenced_form():
    text = (f"{DS_BEGIN}{DS_CALL}function{DS_SEP}get_exchange_rate\n```json\n{{\"base\": \"港币\", \"quote\": \"人民币\"}}"
            f"\n```{DS_CALL_END}{DS_END}")
    assert calls(parse_tool_calls(text)) == [("get_exchange_rate", {"base": "港币", "quote": "人民币"})]


def test_deepseek_malformed_and_cut_calls_stay_text():
    bad = f"{DS_BEGIN}{DS_CALL}transfer{DS_SEP}{{payee: 周八}}{DS_CALL_END}"
    good = f"{DS_CALL}get_exchange_rate{DS_SEP}{{\"base\": \"美元\", \"quote\": \"人民币\"}}{DS_CALL_END}{DS_END}"
    parsed = parse_tool_calls(bad + good)
    assert calls(parsed) == [("get_exchange_rate", {"base": "美元", "quote": "人民币"})]
    assert parsed.content == bad  # the model's broken call, as written
    cut = f"{DS_BEGIN}{DS_CALL}transfer{DS_SEP}{{\"payee\": \"周八\"}}"  # no end marker: never finished
    assert parse_tool_calls(cut).tool_calls == []


# ---------------------------------------------------------------------------------------------------
# Llama 3.x (meta-llama-Llama-3.1-8B-Instruct.jinja): the whole answer is {"name", "parameters"}
# ---------------------------------------------------------------------------------------------------

LLAMA = '{"name": "get_exchange_rate", "parameters": {"base": "英镑", "quote": "人民币"}}'


def test_llama_bare_json_is_a_call_only_for_an_offered_tool():
    parsed = parse_tool_calls(LLAMA, TOOLS)
    assert calls(parsed) == [("get_exchange_rate", {"base": "英镑", "quote": "人民币"})]
    assert parsed.content is None
    assert calls(parse_tool_calls(LLAMA, ["get_exchange_rate"])) == calls(parsed)  # names are enough
    # the old behaviour without tools: untagged JSON is the answer itself
    assert parse_tool_calls(LLAMA).tool_calls == [] and parse_tool_calls(LLAMA).content == LLAMA
    assert parse_tool_calls(LLAMA, ["transfer"]).tool_calls == []  # a function nobody offered


def test_a_json_answer_is_never_taken_for_a_llama_call():
    answer = '{"name": "get_exchange_rate", "parameters": {"base": "英镑"}, "说明": "汇率接口"}'
    assert parse_tool_calls(answer, TOOLS).tool_calls == []  # more keys than a call has
    around = f"调用如下：{LLAMA}"
    assert parse_tool_calls(around, TOOLS).content == around  # not the whole answer
    assert parse_tool_calls('{"name": "transfer", "parameters": "付款"}', TOOLS).tool_calls == []


# ---------------------------------------------------------------------------------------------------
# the eval reads every format the server reads
# ---------------------------------------------------------------------------------------------------


def test_extract_tool_call_reads_each_family_format_first_call():
    assert extract_tool_call(QWEN35_TWO) == {"name": "get_exchange_rate", "arguments": {"base": "美元", "quote": "人民币"}}
    assert extract_tool_call(GLM_TWO)["arguments"] == {"base": "美元", "quote": "人民币"}
    assert extract_tool_call(LLAMA) == {"name": "get_exchange_rate", "arguments": {"base": "英镑", "quote": "人民币"}}
    assert extract_tool_call("<tool_call>我想查一下汇率</tool_call>") is None
