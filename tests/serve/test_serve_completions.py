"""Several choices (``n``) and the legacy ``/v1/completions``, through the official ``openai`` client against a
real server on 127.0.0.1 serving the taught tiny model."""

from __future__ import annotations

import httpx
import pytest
from serve_support import KEY

openai = pytest.importorskip("openai")

FEE = [{"role": "user", "content": "What is the card fee?"}]  # taught answer: "The gold card fee is 200 yuan a year."


@pytest.fixture(scope="module")
def client(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def fee_prompt(live) -> str:
    """The chat prompt of FEE as the model's template writes it: a text completion of it is the chat answer."""
    return live.state.model.prompt_text(FEE, None)


def test_n_choices_are_each_sampled_with_their_own_seed(client, live):
    many = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=10, temperature=2.0, seed=5, n=3)
    assert [c.index for c in many.choices] == [0, 1, 2]
    alone = [client.chat.completions.create(model="tiny", messages=FEE, max_tokens=10, temperature=2.0, seed=5 + i)
             for i in range(3)]
    assert [c.message.content for c in many.choices] == [a.choices[0].message.content for a in alone]
    assert len({c.message.content for c in many.choices}) > 1  # hot sampling, three seeds: not one answer thrice
    # Usage: the prompt once (as OpenAI counts it), the completions summed.
    assert many.usage.prompt_tokens == alone[0].usage.prompt_tokens
    assert many.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
    assert many.usage.total_tokens == many.usage.prompt_tokens + many.usage.completion_tokens
    # Every choice is stored for feedback: the first under the completion's id, the others as ID-i.
    ack = httpx.post(live.url + "/v1/feedback", headers={"Authorization": f"Bearer {KEY}"},
                     json={"response_id": f"{many.id}-2", "rating": "up"}, timeout=30)
    assert ack.status_code == 200
    stored = [f for f in live.state.store.iter_feedback() if f.id == ack.json()["id"]]
    assert stored[0].response == many.choices[2].message.content


def test_n_choices_stream_by_index(client):
    whole = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=8, temperature=1.0, seed=3, n=2)
    texts, finishes, usage = {}, {}, None
    for event in client.chat.completions.create(model="tiny", messages=FEE, max_tokens=8, temperature=1.0, seed=3, n=2,
                                                stream=True, stream_options={"include_usage": True}):
        usage = event.usage or usage
        for c in event.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            finishes[c.index] = c.finish_reason or finishes.get(c.index)
    assert [texts[i].rstrip() for i in (0, 1)] == [c.message.content for c in whole.choices]
    assert [finishes[i] for i in (0, 1)] == [c.finish_reason for c in whole.choices]
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_n_above_the_limit_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny", messages=FEE, max_tokens=2, n=17)
    assert refused.value.body["param"] == "n"


def test_a_text_completion_continues_the_prompt_as_it_is(client, fee_prompt):
    chat = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=30)
    text = client.completions.create(model="tiny", prompt=fee_prompt, max_tokens=30)
    assert text.object == "text_completion" and text.id.startswith("cmpl-")
    assert text.choices[0].text.strip() == chat.choices[0].message.content
    assert text.choices[0].finish_reason == "stop"
    assert text.usage.prompt_tokens == chat.usage.prompt_tokens
    cut = client.completions.create(model="tiny", prompt=fee_prompt, max_tokens=4)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 4
    assert text.choices[0].text.startswith(cut.choices[0].text)
    stopped = client.completions.create(model="tiny", prompt=fee_prompt, max_tokens=30, stop=[" card"])
    assert stopped.choices[0].text == text.choices[0].text.split(" card")[0]


def test_several_prompts_and_n_choices_come_in_prompt_order(client, fee_prompt):
    other = "你好"
    r = client.completions.create(model="tiny", prompt=[fee_prompt, other], max_tokens=6, n=2, temperature=1.0, seed=9)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    one = [client.completions.create(model="tiny", prompt=p, max_tokens=6, temperature=1.0, seed=9 + i)
           for p in (fee_prompt, other) for i in range(2)]
    assert [c.text for c in r.choices] == [o.choices[0].text for o in one]
    assert r.usage.prompt_tokens == one[0].usage.prompt_tokens + one[2].usage.prompt_tokens  # each prompt once
    assert r.usage.completion_tokens == sum(o.usage.completion_tokens for o in one)


def test_legacy_logprobs_and_streaming(client, fee_prompt):
    r = client.completions.create(model="tiny", prompt=fee_prompt, max_tokens=10, logprobs=2)
    lp, text = r.choices[0].logprobs, r.choices[0].text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    assert "".join(lp.tokens) == text  # an ASCII answer: every token is whole characters
    assert lp.text_offset[0] == len(fee_prompt) and lp.text_offset == sorted(lp.text_offset)
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) <= 2 and value <= 0 and max(top.values()) >= value and token in top  # greedy
    pieces, finish, usage, streamed_tokens = [], None, None, []
    for event in client.completions.create(model="tiny", prompt=fee_prompt, max_tokens=10, logprobs=2, stream=True,
                                           stream_options={"include_usage": True}):
        usage = event.usage or usage
        for c in event.choices:
            pieces.append(c.text)
            finish = c.finish_reason or finish
            streamed_tokens += c.logprobs.tokens if c.logprobs else []
    assert "".join(pieces) == text and finish == r.choices[0].finish_reason
    assert streamed_tokens == lp.tokens and usage.completion_tokens == r.usage.completion_tokens


@pytest.mark.parametrize("option", [{"echo": True}, {"suffix": "x"}, {"best_of": 3}])
def test_completion_options_the_server_cannot_honour_are_a_400_naming_them(client, option):
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="tiny", prompt="hello", max_tokens=2, **option)
    (name,) = option
    assert refused.value.body["param"] == name


def test_text_completions_need_a_key_and_a_known_model(live, client):
    assert httpx.post(live.url + "/v1/completions", json={"model": "tiny", "prompt": "hi"}).status_code == 401
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", max_tokens=2)
