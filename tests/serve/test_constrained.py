"""Constrained decoding: response_format and tool_choice hold while decoding, even for untrained models.

Two random (untrained) models behind real servers on 127.0.0.1, read with the official ``openai`` client
and LangChain: the ``tiny`` spec (Qwen2, the sample domain's tokenizer) and a test-recipe Llama. Every
answer is sampled at temperature 1.0, so without the grammar almost none would parse.
"""

from __future__ import annotations

import json
import math

import pytest
from serve_support import KEY, LiveServer, make_state

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("llguidance")

ASK = [{"role": "user", "content": "请把客户信息整理成 JSON：张三，35 岁，上海"}]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "tier": {"enum": ["gold", "silver", "basic"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "number"}},
                    "required": ["city", "zip"], "additionalProperties": False},
    },
    "required": ["name", "age", "score", "tier", "tags", "address"],
    "additionalProperties": False,
}
STRICT = {"type": "json_schema", "json_schema": {"name": "customer", "schema": SCHEMA, "strict": True}}
TOOLS = [
    {"type": "function", "function": {"name": "get_rate", "description": "A product's interest rate",
                                      "parameters": {"type": "object", "properties": {
                                          "product": {"type": "string"}, "years": {"type": "integer"}},
                                          "required": ["product", "years"]}}},
    {"type": "function", "function": {"name": "convert", "description": "Convert an amount of money",
                                      "parameters": {"type": "object", "properties": {
                                          "amount": {"type": "number"}, "to": {"enum": ["CNY", "USD", "EUR"]}},
                                          "required": ["amount", "to"], "additionalProperties": False}}},
]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
SAMPLES = 5


@pytest.fixture(scope="module", params=["tiny", "random-llama"])
def server(request, tmp_path_factory):
    """A server over an untrained model: the ``tiny`` spec, or a random Llama with the test recipe."""
    torch = pytest.importorskip("torch")
    from domainlm.serve.server import make_asgi

    torch.set_num_threads(1)  # two cores shared with the server threads (see serve_support.tiny_dir)

    spec = "tiny"
    if request.param == "random-llama":
        from domainlm.models.testing import make_tiny_model

        spec = str(make_tiny_model(tmp_path_factory.mktemp("models") / "tiny", arch="llama"))
    db = tmp_path_factory.mktemp("db") / "f.db"
    with LiveServer(make_asgi(make_state(spec, f"sqlite:///{db}"))) as live:
        live.client = openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0)
        yield live


def finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def sample(server, seed: int, max_tokens: int = 64, **request):
    return server.client.chat.completions.create(model="tiny", messages=ASK, max_tokens=max_tokens, temperature=1.0,
                                                 seed=seed, **request).choices[0]


def test_json_object_is_always_a_json_object_with_finite_numbers(server):
    for seed in range(SAMPLES):
        choice = sample(server, seed, response_format={"type": "json_object"})
        value = json.loads(choice.message.content)
        assert isinstance(value, dict) and finite(value) and choice.finish_reason == "stop", choice.message.content


def test_a_strict_json_schema_always_validates(server):
    answers = set()
    for seed in range(SAMPLES):
        choice = sample(server, seed, max_tokens=96, response_format=STRICT)
        value = json.loads(choice.message.content)
        jsonschema.validate(value, SCHEMA)
        assert finite(value) and choice.finish_reason == "stop"
        answers.add(choice.message.content)
    assert len(answers) > 1  # sampled, not one canned answer


def check_call(call, names: set[str]) -> str:
    assert call.type == "function" and call.function.name in names
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMETERS[call.function.name])
    assert finite(arguments)
    return call.function.name


def test_tool_choice_required_always_calls_a_given_tool(server):
    for seed in range(SAMPLES):
        choice = sample(server, seed, tools=TOOLS, tool_choice="required")
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
        check_call(choice.message.tool_calls[0], {"get_rate", "convert"})


def test_a_named_tool_choice_always_calls_that_function(server):
    for seed in range(SAMPLES):
        choice = sample(server, seed, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "convert"}})
        assert choice.finish_reason == "tool_calls"
        assert [check_call(c, {"convert"}) for c in choice.message.tool_calls] == ["convert"]


def test_constrained_answers_stream_too(server):
    text, finish, calls = "", None, []
    for event in server.client.chat.completions.create(model="tiny", messages=ASK, max_tokens=96, temperature=1.0,
                                                       seed=3, response_format=STRICT, stream=True):
        for choice in event.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    jsonschema.validate(json.loads(text), SCHEMA)
    assert finish == "stop"
    for event in server.client.chat.completions.create(model="tiny", messages=ASK, max_tokens=96, temperature=1.0,
                                                       seed=3, tools=TOOLS, tool_choice="required", stream=True):
        for choice in event.choices:
            calls += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and calls[0].function.name in PARAMETERS


def test_max_tokens_below_the_shortest_answer_is_cut_not_refused(server):
    choice = sample(server, 0, response_format=STRICT, max_tokens=4)
    assert choice.finish_reason == "length" and choice.message.content.startswith("{")


@pytest.mark.parametrize("request_, param", [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
])
def test_a_constraint_that_cannot_be_built_is_a_400_naming_it(server, request_, param):
    with pytest.raises(openai.BadRequestError) as refused:
        server.client.chat.completions.create(model="tiny", messages=ASK, max_tokens=8, **request_)
    assert refused.value.body["param"] == param


def test_langchain_structured_output_by_function_calling_and_by_json_schema(server):
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Customer(BaseModel):
        name: str
        age: int
        city: str

    llm = ChatOpenAI(model="tiny", base_url=server.url + "/v1", api_key=KEY, temperature=1.0, max_tokens=96,
                     max_retries=0)
    for method in ("function_calling", "json_schema"):
        customer = llm.with_structured_output(Customer, method=method).invoke("张三，35 岁，住在上海。")
        assert isinstance(customer, Customer), method
        assert isinstance(customer.age, int) and isinstance(customer.name, str)


def test_numbers_are_bounded_and_infinity_is_caught():
    from domainlm.serve.constrained import NUMBER_LIMIT, bound_numbers, finite_json

    bounded = bound_numbers({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": ["integer", "null"]},
                                                                "c": {"type": "number", "minimum": 0}}})
    a, b, c = (bounded["properties"][k] for k in "abc")
    assert (a["minimum"], a["maximum"]) == (-NUMBER_LIMIT, NUMBER_LIMIT)
    assert isinstance(b["maximum"], int) and c["minimum"] == 0 and c["maximum"] == NUMBER_LIMIT
    assert finite_json('{"a": [1.5, 2]}') and not finite_json('{"a": [1e999]}') and not finite_json("{")
