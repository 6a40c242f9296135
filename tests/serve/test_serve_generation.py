"""Output parsing helpers: tool calls, JSON extraction, stop strings across stream deltas."""

from __future__ import annotations

import json

from domainlm.parsing import json_text as extract_json
from domainlm.parsing import parse_tool_calls
from domainlm.serve.generation import stop_stream


def test_tool_calls_are_parsed_and_bad_blocks_stay_text():
    out = parse_tool_calls('先查一下。<tool_call>\n{"name": "get_rate", "arguments": {"product": "定期"}}\n</tool_call>')
    assert out.content == "先查一下。" and out.finish_reason == "tool_calls"
    assert out.tool_calls[0]["function"] == {"name": "get_rate", "arguments": '{"product": "定期"}'}
    two = parse_tool_calls('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b"}</tool_call>')
    assert [c["function"]["name"] for c in two.tool_calls] == ["a", "b"] and two.content is None
    unclosed = parse_tool_calls('<tool_call>\n{"name": "a", "arguments": {"x": 1}}')  # cut by max_tokens
    assert unclosed.tool_calls[0]["function"]["arguments"] == '{"x": 1}'
    half_tag = parse_tool_calls('<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_')
    assert half_tag.tool_calls[0]["function"]["name"] == "a" and half_tag.content is None
    broken = parse_tool_calls("<tool_call>{name: a}</tool_call>")
    assert broken.tool_calls == [] and broken.content == "<tool_call>{name: a}</tool_call>"


def test_extract_json():
    assert json.loads(extract_json('```json\n{"a": 1}\n```')) == {"a": 1}
    assert json.loads(extract_json('答案是 {"fee": 200} 元')) == {"fee": 200}
    assert extract_json("no json here") is None


def test_stop_strings_spanning_deltas_and_cancel():
    closed = []

    def deltas():
        try:
            yield from ["The gold ca", "rd fe", "e is 2", "00 yuan"]
        finally:
            closed.append(True)

    assert "".join(stop_stream(deltas(), ["card fee"])) == "The gold "
    assert closed == [True]  # the generator behind the stream was closed at the stop
    assert "".join(stop_stream(iter(["ab", "cd"]), ["zz"])) == "abcd"
    assert "".join(stop_stream(iter(["ab", "cd"]), None)) == "abcd"
    assert "".join(stop_stream(iter(["stop", "x"]), ["stop"])) == ""
