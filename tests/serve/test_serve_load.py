"""A server under load and its operators: dropped streams free the model at once, a full queue and an
oversized prompt are refused, /metrics can be scraped with its own token.

The model here is the untaught tiny one: greedy decoding from it runs to max_tokens without a printable
token, the worst case for a dropped stream (no delta ever reaches the client, so nothing else notices).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

openai = pytest.importorskip("openai")
from serve_support import KEY, LiveServer, make_state

AUTH = {"Authorization": f"Bearer {KEY}"}
LONG = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2000, "stream": True}
SHORT = {"model": "tiny", "messages": [{"role": "user", "content": "你好"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from domainlm.models.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@contextmanager
def serving(model_dir, tmp_path, **options):
    from domainlm.serve.server import make_asgi

    state = make_state(model_dir, f"sqlite:///{tmp_path / 'feedback.db'}", max_tokens=2000, **options)
    with LiveServer(make_asgi(state)) as server:
        server.state = state
        yield server


@pytest.fixture
def raw_live(raw_dir, tmp_path):
    with serving(raw_dir, tmp_path) as server:
        yield server


def in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics", headers=AUTH).text
    return float(re.search(r"^domainlm_generations_in_flight (\S+)$", text, re.M).group(1))


def open_stream(stack: ExitStack, url: str) -> Iterator[str]:
    """A long stream, read up to its first chunk (the request is admitted then) and held open while the
    caller holds the returned lines (closing them closes the connection)."""
    raw = stack.enter_context(httpx.Client(timeout=30))
    r = stack.enter_context(raw.stream("POST", url + "/v1/chat/completions", json=LONG, headers=AUTH))
    assert r.status_code == 200
    lines = r.iter_lines()
    assert next(lines).startswith("data: ")
    return lines


def drop_after_first_chunk(url: str) -> None:
    with ExitStack() as stack:
        open_stream(stack, url)


def test_a_dropped_stream_is_cancelled_and_frees_the_model(raw_live):
    started = time.perf_counter()
    assert httpx.post(raw_live.url + "/v1/chat/completions", headers=AUTH, timeout=60, json={**LONG, "stream": False}).status_code == 200
    whole = time.perf_counter() - started
    for _ in range(3):
        drop_after_first_chunk(raw_live.url)
    started = time.perf_counter()
    short = httpx.post(raw_live.url + "/v1/chat/completions", headers=AUTH, timeout=60, json=SHORT)
    took = time.perf_counter() - started
    print(f"\n2000 tokens: {whole:.2f}s; a 2-token request after 3 dropped streams: {took:.3f}s")
    assert short.status_code == 200 and took < min(1.0, whole / 2)
    deadline = time.time() + 5
    while in_flight(raw_live.url) != 0 and time.time() < deadline:
        time.sleep(0.05)
    assert in_flight(raw_live.url) == 0


def give_up_waiting(url: str, body: dict) -> None:
    """A non-streaming request whose client gives up (times out and closes the connection) before the answer."""
    with httpx.Client(timeout=0.3) as raw, pytest.raises(httpx.ReadTimeout):
        raw.post(url, json=body, headers=AUTH)


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {**LONG, "stream": False}),
    ("/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 2000}),
])
def test_a_client_that_gives_up_on_a_whole_answer_frees_the_model(raw_live, path, body):
    started = time.perf_counter()
    assert httpx.post(raw_live.url + path, headers=AUTH, timeout=60, json=body).status_code == 200
    whole = time.perf_counter() - started
    for _ in range(3):
        give_up_waiting(raw_live.url + path, body)
    started = time.perf_counter()
    short = httpx.post(raw_live.url + "/v1/chat/completions", headers=AUTH, timeout=60, json=SHORT)
    took = time.perf_counter() - started
    print(f"\n{path} 2000 tokens: {whole:.2f}s; a 2-token request after 3 abandoned whole answers: {took:.3f}s")
    assert short.status_code == 200 and took < min(1.0, whole / 2)
    deadline = time.time() + 5
    while in_flight(raw_live.url) != 0 and time.time() < deadline:
        time.sleep(0.05)
    assert in_flight(raw_live.url) == 0
    # An abandoned answer is not stored: nobody saw it to give feedback on.
    # (Text completions are never stored; the chat route stored its whole answer and the short one.)
    assert raw_live.state.store.counts()["responses"] == (2 if path == "/v1/chat/completions" else 1)


def test_a_full_queue_answers_429_with_retry_after(raw_dir, tmp_path):
    # Two decode together in the batch, one waits: the fourth is refused.
    with serving(raw_dir, tmp_path, max_queue=1, max_batch=2) as server:
        assert server.state.admission.limit == 3
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
        with ExitStack() as stack:
            held = [open_stream(stack, server.url) for _ in range(3)]  # generating, generating, waiting
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(**SHORT)
            assert refused.value.response.headers["Retry-After"] == "1"
            assert refused.value.body["code"] == "queue_full" and "max_queue" in refused.value.body["message"]
            del held
        deadline = time.time() + 10  # the dropped streams give their places back
        while server.state.admission.admitted and time.time() < deadline:
            time.sleep(0.05)
        assert client.chat.completions.create(**SHORT).choices[0].finish_reason
        assert "domainlm_queue_full_total 1.0" in httpx.get(server.url + "/metrics", headers=AUTH).text


def test_a_prompt_over_the_token_limit_is_refused(raw_dir, tmp_path):
    with serving(raw_dir, tmp_path, max_prompt_tokens=64) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "存款 " * 200}], max_tokens=2)
        assert refused.value.body["code"] == "context_length_exceeded" and refused.value.body["param"] == "messages"
        assert "limit of 64" in refused.value.body["message"]
        assert client.chat.completions.create(**SHORT).usage.prompt_tokens <= 64


def test_metrics_have_their_own_scrape_token(raw_dir, tmp_path):
    token = "scrape-0123456789abcdef"
    with serving(raw_dir, tmp_path, metrics_token=token) as server:
        def get(path, key):
            return httpx.get(server.url + path, headers={"Authorization": f"Bearer {key}"}).status_code

        assert get("/metrics", token) == 200 and get("/metrics", KEY) == 200
        assert get("/metrics", "scrape-wrong") == 401
        assert get("/v1/models", token) == 401  # the scrape token opens nothing else
