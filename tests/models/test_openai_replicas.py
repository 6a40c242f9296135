"""One model spec over several OpenAI-compatible servers (vLLM replicas), against stub servers on 127.0.0.1.

Each stub is a real HTTP server in a thread that records the bodies it receives and answers as vLLM's
server does (whole JSON, or an SSE stream ending in ``data: [DONE]``); a test can make it answer 5xx, hold
requests open, cut a stream short, or shut it down (its port then refuses connections).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from domainlm.errors import DomainlmError
from domainlm.models import load_model, parse_spec
from domainlm.models.openai_http import ChatResult, OpenAIModel

PIECES = ["您好", "，", "您的", "余额", "是", "1,024.50", "元。"]


class Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, port: int = 0):
        super().__init__(("127.0.0.1", port), StubHandler)
        self.name = name
        self.bodies: list[dict] = []
        self.status = 200  # anything else: answered with this status and a short text
        self.hold: threading.Event | None = None  # requests wait for it: they stay in flight
        self.cut_after: int | None = None  # a stream closes the connection after this many deltas
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):
        pass  # a client that hung up on a stream (the tests do) is no news

    def kill(self) -> None:
        self.shutdown()
        self.server_close()


class StubHandler(BaseHTTPRequestHandler):
    server: Stub

    def log_message(self, *args):
        pass

    def do_POST(self):
        stub = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stub.bodies.append(body)
        if stub.hold is not None:
            stub.hold.wait(10)
        if stub.status != 200:
            self._send(stub.status, f"{stub.name} is unwell".encode(), "text/plain")
            return
        if body.get("stream"):
            self._stream(body)
            return
        question = body["messages"][-1]["content"]
        usage = {"prompt_tokens": 11, "completion_tokens": len(PIECES), "total_tokens": 11 + len(PIECES)}
        choices = []
        for i in range(body.get("n", 1)):
            if body.get("tools"):
                call = {"id": f"call_{stub.name}_{i}", "type": "function",
                        "function": {"name": body["tools"][0]["function"]["name"],
                                     "arguments": json.dumps({"question": question}, ensure_ascii=False)}}
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": f"{stub.name}:{question}"}
                finish = "stop"
            choice = {"index": i, "message": message, "finish_reason": finish}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [_entry(p) for p in PIECES]}
            choices.append(choice)
        data = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": choices, "usage": usage}
        self._send(200, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def _stream(self, body: dict) -> None:
        stub = self.server
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()  # HTTP/1.0 without a length: the stream ends when the connection closes

        def event(data: dict) -> None:
            self.wfile.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()

        event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        for i, piece in enumerate(PIECES):
            if stub.cut_after is not None and i == stub.cut_after:
                return  # the server went away mid-answer
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [_entry(piece)]}
            event({"choices": [choice]})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            event({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(PIECES),
                                            "total_tokens": 11 + len(PIECES)}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _entry(piece: str) -> dict:
    raw = list(piece.encode())
    return {"token": piece, "logprob": -0.25, "bytes": raw, "top_logprobs": [{"token": piece, "logprob": -0.25, "bytes": raw}]}


@pytest.fixture()
def stubs():
    servers = [Stub(name) for name in ("a", "b", "c")]
    yield servers
    for s in servers:
        try:
            s.kill()
        except OSError:
            pass


def _model(stubs: list[Stub], **options) -> OpenAIModel:
    return load_model("openai:" + ",".join(s.url for s in stubs) + "#qwen", **options)


def _ask(model: OpenAIModel, text: str = "我的余额是多少？") -> str:
    return model.chat([[{"role": "user", "content": text}]])[0]


def test_spec_lists_replicas_and_refuses_bad_ones():
    spec = parse_spec("openai:http://h1:8000/v1/, http://h2:8000/v1#qwen")
    assert spec.target == "http://h1:8000/v1,http://h2:8000/v1" and spec.model_name == "qwen"
    assert spec.text == "openai:http://h1:8000/v1,http://h2:8000/v1#qwen"
    with pytest.raises(DomainlmError, match="'h2:8000/v1' is not a URL"):
        parse_spec("openai:http://h1:8000/v1,h2:8000/v1#qwen")
    with pytest.raises(DomainlmError, match="listed twice"):
        parse_spec("openai:http://h1:8000/v1,http://h1:8000/v1/#qwen")
    model = load_model("openai:http://h1:8000/v1,http://h2:8000/v1#qwen")
    assert [r.url for r in model.replicas] == ["http://h1:8000/v1", "http://h2:8000/v1"]
    assert model.info["spec"] == spec.text and model.concurrency == 8


def test_idle_replicas_take_turns(stubs):
    model = _model(stubs)
    answers = [_ask(model, f"第{i}个问题") for i in range(6)]
    assert answers == [f"{'abc'[i % 3]}:第{i}个问题" for i in range(6)]
    assert [len(s.bodies) for s in stubs] == [2, 2, 2]
    assert [(r.requests, r.in_flight, r.failures) for r in model.replicas] == [(2, 0, 0)] * 3


def test_a_busy_replica_gets_no_new_requests(stubs):
    model = _model(stubs)
    stubs[0].hold = threading.Event()
    slow = threading.Thread(target=_ask, args=(model, "慢问题"))
    slow.start()
    deadline = time.monotonic() + 5
    while not stubs[0].bodies and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r.in_flight for r in model.replicas] == [1, 0, 0]
    answers = [_ask(model, f"问题{i}") for i in range(4)]
    assert [a.split(":")[0] for a in answers] == ["b", "c", "b", "c"]  # a is busy: never picked
    stubs[0].hold.set()
    slow.join(5)
    assert [len(s.bodies) for s in stubs] == [1, 2, 2]
    assert [r.in_flight for r in model.replicas] == [0, 0, 0]
    # Concurrent batch calls (eval, synth) spread over all three.
    model.chat([[{"role": "user", "content": f"批量{i}"}] for i in range(12)])
    assert all(len(s.bodies) >= 3 for s in stubs)


def test_a_killed_replica_is_skipped_then_comes_back(stubs):
    model = _model(stubs, cooloff=0.5)
    port = stubs[1].server_address[1]
    stubs[1].kill()
    answers = [_ask(model, f"问题{i}") for i in range(4)]
    assert all(a.split(":")[0] in ("a", "c") for a in answers)  # every request answered
    dead = model.replicas[1]
    assert dead.failures == 1 and "cannot reach the server" in dead.last_error and not dead.up()
    assert [r.in_flight for r in model.replicas] == [0, 0, 0]
    # Restarted on the same port: after the cool-off it gets requests again.
    stubs[1] = Stub("b", port)
    time.sleep(0.6)
    answers = [_ask(model, f"又问{i}") for i in range(3)]
    assert sorted(a.split(":")[0] for a in answers) == ["a", "b", "c"]


def test_5xx_is_retried_on_another_replica_but_4xx_is_not(stubs):
    model = _model(stubs)
    stubs[0].status = 503
    assert _ask(model) == "b:我的余额是多少？"
    assert len(stubs[0].bodies) == 1 and model.replicas[0].failures == 1
    assert "HTTP 503 a is unwell" in model.replicas[0].last_error
    # A request the upstream refuses would be refused everywhere: one try, no replica marked down.
    stubs[1].status = stubs[2].status = 400
    with pytest.raises(DomainlmError, match="HTTP 400 (b|c) is unwell"):
        _ask(model)
    assert len(stubs[1].bodies) + len(stubs[2].bodies) == 2  # b's first answer, then one 400
    assert [r.failures for r in model.replicas] == [1, 0, 0]


def test_all_down_is_one_clear_error(stubs):
    model = _model(stubs)
    for s in stubs:
        s.kill()
    with pytest.raises(DomainlmError, match="cannot reach the server.*retried on another replica.*cannot reach"):
        _ask(model)
    assert sum(r.failures for r in model.replicas) == 2  # one try and one retry
    with pytest.raises(DomainlmError, match="cannot reach the server"):
        _ask(model)  # the third replica is tried; there is no other to retry on
    with pytest.raises(DomainlmError) as err:
        _ask(model)
    message = str(err.value)
    assert message.startswith("all 3 replicas are down: ") and "\n" not in message
    assert all(s.url in message for s in stubs) and message.count("cannot reach the server") == 3
    # One server is a pool of one: its own error first, then the same fast refusal during its cool-off.
    single = _model(stubs[:1])
    with pytest.raises(DomainlmError, match=r"^http://127\.0\.0\.1:\d+/v1/chat/completions: cannot reach the server"):
        _ask(single)
    with pytest.raises(DomainlmError, match=r"^the server is down: .*cannot reach the server .*left out for another \d+ s\)$"):
        _ask(single)


def test_sampling_options_arrive_verbatim_and_tool_calls_come_back(stubs):
    model = _model(stubs[:1])
    tools = [{"type": "function", "function": {"name": "query_balance", "description": "查询余额",
                                               "parameters": {"type": "object", "properties": {"question": {"type": "string"}}}}}]
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True,
                                                     "schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
    messages = [{"role": "system", "content": "你是银行客服。"}, {"role": "user", "content": "查一下余额"}]
    results = model.chat_results(
        messages, max_new_tokens=64, temperature=0.7, seed=42, stop=["\n\n", "。"], top_p=0.9, presence_penalty=0.5,
        frequency_penalty=-0.25, logit_bias={"151643": -100}, logprobs=3, n=2, tools=tools,
        tool_choice={"type": "function", "function": {"name": "query_balance"}}, response_format=schema)
    assert stubs[0].bodies[-1] == {
        "model": "qwen", "messages": messages, "max_tokens": 64, "temperature": 0.7, "seed": 42, "stop": ["\n\n", "。"],
        "top_p": 0.9, "presence_penalty": 0.5, "frequency_penalty": -0.25, "logit_bias": {"151643": -100}, "n": 2,
        "tools": tools, "tool_choice": {"type": "function", "function": {"name": "query_balance"}},
        "response_format": schema, "logprobs": True, "top_logprobs": 3}
    assert len(results) == 2
    first = results[0]
    assert first.tool_calls == [{"id": "call_a_0", "type": "function", "function": {
        "name": "query_balance", "arguments": '{"question": "查一下余额"}'}}]
    assert first.content == "" and first.finish_reason == "tool_calls" and first.replica == stubs[0].url
    assert (first.prompt_tokens, first.completion_tokens) == (11, len(PIECES))
    assert [e["token"] for e in first.logprobs] == PIECES
    # Left at OpenAI's defaults, options are not sent at all.
    model.chat_results(messages, top_p=1.0, presence_penalty=0.0, logprobs=None, stop=[], n=1)
    assert stubs[0].bodies[-1] == {"model": "qwen", "messages": messages, "max_tokens": 128, "temperature": 0.0, "seed": 0}
    # A conversation that carries a call (decoded arguments, as serve keeps them) goes out as OpenAI's wire
    # format: arguments as a JSON string. A tool_choice without tools is not sent (OpenAI refuses it).
    turn = [*messages, {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "query_balance", "arguments": {"question": "余额"}}}]}, {"role": "tool", "tool_call_id": "call_1", "content": "1024.50"}]
    model.chat_results(turn, tool_choice="none")
    sent = stubs[0].bodies[-1]
    assert sent["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"question": "余额"}'
    assert sent["messages"][3] == turn[3] and "tool_choice" not in sent
    assert turn[2]["tool_calls"][0]["function"]["arguments"] == {"question": "余额"}  # the caller's list is untouched
    # The eval's chat() writes the calls as <tool_call> text, as every backend's output is scored.
    text = model.chat([messages], tools=tools)[0]
    assert text == '<tool_call>\n{"name": "query_balance", "arguments": {"question": "查一下余额"}}\n</tool_call>'


def test_a_stream_passes_through_and_reports(stubs):
    from domainlm.serve.generation import Generated

    model = _model(stubs[:2])
    report = ChatResult()
    stream = model.stream_chat([{"role": "user", "content": "余额"}], report, max_new_tokens=7, logprobs=1)
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            result = done.value
            break
    assert pieces == PIECES and result.content == "".join(PIECES) and result.replica == stubs[0].url
    assert (result.finish_reason, result.prompt_tokens, result.completion_tokens) == ("length", 11, len(PIECES))
    assert report.finish_reason == "length" and report.completion_tokens == len(PIECES)
    assert [e["token"] for e in report.logprobs] == PIECES
    sent = stubs[0].bodies[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 7
    # serve's Generated takes the report as it is.
    generated = Generated()
    assert "".join(model.stream_chat([{"role": "user", "content": "余额"}], generated)) == "".join(PIECES)
    assert generated.finish_reason == "length" and generated.completion_tokens == len(PIECES) and generated.logprobs is None
    assert [len(s.bodies) for s in stubs] == [1, 1, 0]


def test_a_stream_fails_over_only_before_its_first_delta(stubs):
    model = _model(stubs)
    stubs[0].status = 502
    assert "".join(model.stream_chat([{"role": "user", "content": "余额"}])) == "".join(PIECES)
    assert model.replicas[0].failures == 1 and len(stubs[1].bodies) == 1
    # c cuts its stream after two deltas: those reached the reader, so no retry, and c is marked down.
    stubs[2].cut_after = 2
    stream = model.stream_chat([{"role": "user", "content": "余额"}])
    assert [next(stream), next(stream)] == PIECES[:2]
    with pytest.raises(DomainlmError, match="stream ended before the answer did"):
        next(stream)
    assert model.replicas[2].failures == 1 and len(stubs[1].bodies) == 1
    # A reader that stops early gives the replica back at once (closing the connection).
    stream = model.stream_chat([{"role": "user", "content": "余额"}])
    next(stream)
    assert [r.in_flight for r in model.replicas] == [0, 1, 0]
    stream.close()
    assert [r.in_flight for r in model.replicas] == [0, 0, 0]


def test_cut_stream_before_any_delta_is_retried(stubs):
    model = _model(stubs[:2])
    stubs[0].cut_after = 0  # headers and the role chunk, then gone: no text passed on yet
    assert "".join(model.stream_chat([{"role": "user", "content": "余额"}])) == "".join(PIECES)
    assert [r.failures for r in model.replicas] == [1, 0]
