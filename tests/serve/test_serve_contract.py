"""The OpenAI contract as clients read it: finish_reason, usage from token ids, sampling options honoured or
refused by name, JSON bodies whatever the Content-Type. Official ``openai`` client, real server, taught tiny."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from serve_support import KEY

openai = pytest.importorskip("openai")

FEE = [{"role": "user", "content": "What is the card fee?"}]  # taught answer: "The gold card fee is 200 yuan a year."


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0)


def streamed(client, **request):
    text, finish, usage = "", None, None
    for event in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **request):
        usage = event.usage or usage
        for choice in event.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish, usage


def test_a_reply_cut_by_max_tokens_says_length_and_counts_token_ids(client):
    cut = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    text, finish, usage = streamed(client, model="tiny", messages=FEE, max_tokens=3)
    assert (text, finish, usage.completion_tokens) == (cut.choices[0].message.content, "length", 3)
    whole = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=40)
    assert whole.choices[0].finish_reason == "stop" and 3 < whole.usage.completion_tokens < 40
    assert whole.usage.prompt_tokens == cut.usage.prompt_tokens > 0
    assert streamed(client, model="tiny", messages=FEE, max_tokens=40)[1:] == ("stop", whole.usage)


def check_logprobs(entries, text: str, top: int) -> None:
    """OpenAI's shape, and numbers that mean something: one entry per token, whose bytes spell the text;
    each token among its alternatives, which are sorted and are probabilities below 1."""
    assert b"".join(bytes(e.bytes) for e in entries).decode().strip() == text
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == top
        assert e.token == bytes(e.bytes).decode("utf-8", errors="backslashreplace")
        values = [t.logprob for t in e.top_logprobs]
        assert values == sorted(values, reverse=True) and sum(math.exp(v) for v in values) <= 1 + 1e-4
        if top:
            assert values[0] >= e.logprob  # greedy: the chosen token is the likeliest
            assert e.token in [t.token for t in e.top_logprobs]


def test_logprobs_and_top_logprobs_have_openais_shape(client):
    r = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, logprobs=True, top_logprobs=3)
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens
    check_logprobs(entries, r.choices[0].message.content, top=3)
    bare = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, logprobs=True)
    assert [(e.token, e.logprob) for e in bare.choices[0].logprobs.content] == [(e.token, e.logprob) for e in entries]
    assert all(e.top_logprobs == [] for e in bare.choices[0].logprobs.content)
    none = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12)
    assert none.choices[0].logprobs is None


def test_logprobs_of_a_chinese_answer_spell_it_byte_for_byte(client):
    hello = [{"role": "user", "content": "你好"}]  # taught answer: "您好，我是海港银行的智能助手。"
    r = client.chat.completions.create(model="tiny", messages=hello, max_tokens=30, logprobs=True, top_logprobs=1)
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens and "银行" in r.choices[0].message.content
    check_logprobs(entries, r.choices[0].message.content, top=1)
    streamed_text = ""
    for event in client.chat.completions.create(model="tiny", messages=hello, max_tokens=30, logprobs=True, stream=True):
        for choice in event.choices:
            streamed_text += choice.delta.content or ""
            got = choice.logprobs.content if choice.logprobs else []
            # A character split over tokens goes out whole, with all its tokens: every chunk decodes.
            assert b"".join(bytes(e.bytes) for e in got).decode().strip() == (choice.delta.content or "").strip()
    assert streamed_text.rstrip() == r.choices[0].message.content


def test_streamed_logprobs_go_with_their_text(client):
    whole = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, logprobs=True, top_logprobs=2)
    entries, text = [], ""
    for event in client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, logprobs=True, top_logprobs=2,
                                                stream=True):
        for choice in event.choices:
            got = choice.logprobs.content if choice.logprobs else []
            piece = choice.delta.content or ""
            # A piece's tokens spell it (the first piece also drops the answer's leading whitespace).
            assert b"".join(bytes(e.bytes) for e in got).decode().strip() == piece.strip()
            entries += got
            text += piece
    assert text.rstrip() == whole.choices[0].message.content  # a stream cannot take back trailing whitespace
    assert [e.model_dump() for e in entries] == [e.model_dump() for e in whole.choices[0].logprobs.content]


def test_a_stop_string_drops_the_logprobs_after_it(client):
    whole = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=20, logprobs=True)
    text = whole.choices[0].message.content
    word = text.split()[2]  # "The gold card fee ...": stop at the third word
    cut = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=20, logprobs=True, stop=[word])
    kept = cut.choices[0].logprobs.content
    assert cut.choices[0].message.content == text[: text.index(word)]
    assert 0 < len(kept) < len(whole.choices[0].logprobs.content)
    assert b"".join(bytes(e.bytes) for e in kept).decode().strip() in text[: text.index(word) + len(word)]


def test_top_logprobs_without_logprobs_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny", messages=FEE, max_tokens=3, top_logprobs=2)
    assert refused.value.body["param"] == "top_logprobs" and "logprobs" in refused.value.body["message"]


def test_top_p_seed_penalties_and_logit_bias_are_honoured(client, live):
    greedy = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12).choices[0].message.content
    # A nucleus this small keeps only the likeliest token: sampling becomes the greedy answer.
    narrow = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, temperature=1.5, top_p=1e-6, seed=1)
    assert narrow.choices[0].message.content == greedy
    hot = [client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, temperature=2.0, seed=7).choices[0].message.content
           for _ in range(2)]
    assert hot[0] == hot[1]  # the same seed, the same sample
    first = live.state.model.backend.tokenizer.encode(greedy, add_special_tokens=False)[0]
    banned = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, logit_bias={str(first): -100})
    assert not banned.choices[0].message.content.startswith(greedy[:3])
    penalised = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, presence_penalty=2.0, frequency_penalty=2.0)
    assert penalised.choices[0].finish_reason in ("stop", "length")


def test_json_bodies_are_read_whatever_the_content_type(live):
    body = json.dumps({"model": "tiny", "messages": FEE, "max_tokens": 3})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):  # curl -d sends the first
        headers = {"Authorization": f"Bearer {KEY}", **({"Content-Type": content_type} if content_type else {})}
        r = httpx.post(live.url + "/v1/chat/completions", content=body, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["finish_reason"] == "length"


def test_penalties_and_logit_bias_change_what_is_generated(tmp_path):
    # The untaught model's greedy answer repeats one token: exactly what the penalties exist to break.
    pytest.importorskip("torch")
    from domainlm.models.testing import make_tiny_model
    from domainlm.serve.generation import Generated, GenParams, load_served_model

    model = load_served_model(str(make_tiny_model(tmp_path / "tiny")))
    messages = [{"role": "user", "content": "hello"}]

    def answer(**options):
        generated = Generated()
        text = model.complete(messages, GenParams(max_new_tokens=12, **options), generated)
        assert generated == Generated(completion_tokens=12, finish_reason="length")
        return text

    plain = answer()
    assert answer(presence_penalty=2.0) != plain and answer(frequency_penalty=2.0) != plain
    token = model.backend.tokenizer.encode("#", add_special_tokens=False)[0]
    assert answer(logit_bias={token: 100.0}) == "#" * 12


def test_an_upstream_gets_every_option_and_a_dead_replica_is_skipped(live, client, tmp_path, monkeypatch):
    """`--model openai:DEAD,LIVE#tiny`: a front over two replicas, one refusing connections. Every sampling
    option and the tool_choice reach the live one (a domainlm server here, which honours them all)."""
    from serve_support import LiveServer, make_state

    from domainlm.serve.server import make_asgi

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    state = make_state(f"openai:http://127.0.0.1:9/v1,{live.url}/v1#tiny", f"sqlite:///{tmp_path / 'f.db'}", name="front")
    with LiveServer(make_asgi(state)) as front:
        via = openai.OpenAI(base_url=front.url + "/v1", api_key=KEY, max_retries=0)
        greedy = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12).choices[0].message.content
        first = live.state.model.backend.tokenizer.encode(greedy, add_special_tokens=False)[0]
        for options in ({"logit_bias": {str(first): -100}}, {"presence_penalty": 2.0, "frequency_penalty": 2.0},
                        {"temperature": 1.5, "top_p": 0.5, "seed": 3}):
            direct = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=12, **options)
            fronted = via.chat.completions.create(model="front", messages=FEE, max_tokens=12, **options)
            assert fronted.choices[0].message.content == direct.choices[0].message.content
        banned = via.chat.completions.create(model="front", messages=FEE, max_tokens=12, logit_bias={str(first): -100})
        assert not banned.choices[0].message.content.startswith(greedy[:3])
        r = via.chat.completions.create(model="front", messages=FEE, max_tokens=12, logprobs=True, top_logprobs=3)
        check_logprobs(r.choices[0].logprobs.content, r.choices[0].message.content, 3)
        assert r.usage.completion_tokens == len(r.choices[0].logprobs.content)  # the upstream's own count
        # A forced tool call is forwarded; the upstream constrains it, and the call comes back as a call.
        tool = {"type": "function", "function": {"name": "get_rate", "parameters": {
            "type": "object", "properties": {"product": {"type": "string"}}, "required": ["product"]}}}
        called = via.chat.completions.create(model="front", messages=FEE, max_tokens=60, tools=[tool], tool_choice="required")
        assert called.choices[0].finish_reason == "tool_calls"
        assert called.choices[0].message.tool_calls[0].function.name == "get_rate"
        assert isinstance(json.loads(called.choices[0].message.tool_calls[0].function.arguments)["product"], str)
        formatted = via.chat.completions.create(model="front", messages=FEE, max_tokens=40, response_format={"type": "json_object"})
        assert isinstance(json.loads(formatted.choices[0].message.content), dict)
        # Streams pass through with the upstream's finish_reason and token count.
        text, finish, usage = streamed(via, model="front", messages=FEE, max_tokens=3)
        assert (finish, usage.completion_tokens) == ("length", 3) and text
        # Text completions still go through generate(), which takes no top_p: refused by name.
        with pytest.raises(openai.BadRequestError) as refused:
            via.completions.create(model="front", prompt="The card", max_tokens=3, top_p=0.5)
        assert refused.value.body["param"] == "top_p"
    dead, alive = state.model.backend.replicas
    assert dead.failures >= 1 and "cannot reach the server" in dead.last_error and alive.failures == 0
    assert dead.in_flight == alive.in_flight == 0
