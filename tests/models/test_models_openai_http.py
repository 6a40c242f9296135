"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (standard library, in a thread)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from domainlm.errors import DomainlmError
from domainlm.models import load_model


class Handler(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, body))
        if body.get("model") == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model exploded")
            return
        if self.path == "/v1/completions":
            answer = {"choices": [{"text": body["prompt"].upper() + " END tail"}]}
        elif self.path == "/v1/chat/completions":
            last = body["messages"][-1]["content"]
            if body.get("tools"):
                message = {"content": None, "tool_calls": [{"type": "function", "function": {
                    "name": body["tools"][0]["function"]["name"], "arguments": json.dumps({"q": last})}}]}
            else:
                message = {"role": "assistant", "content": f"echo:{last}"}
            answer = {"choices": [{"message": message}]}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_generate_keeps_order_and_cuts_at_stop(server):
    model = load_model(f"openai:{server}#demo")
    assert model.info["backend"] == "openai" and not model.supports_logprobs
    prompts = [f"p{i}" for i in range(7)]
    assert model.generate(prompts, stop=[" END"], max_new_tokens=5) == [p.upper() for p in prompts]
    route, body = Handler.seen[0]
    assert route == "/v1/completions" and body["model"] == "demo" and body["max_tokens"] == 5 and body["stop"] == [" END"]


def test_chat_passes_tools_and_formats_tool_calls(server):
    model = load_model(f"openai:{server}#demo")
    conv = [{"role": "user", "content": "余额"}]
    assert model.chat([conv]) == ["echo:余额"]
    tools = [{"type": "function", "function": {"name": "query_balance", "parameters": {"type": "object"}}}]
    out = model.chat([conv], tools=tools, response_format={"type": "json_object"})[0]
    assert out == '<tool_call>\n{"name": "query_balance", "arguments": {"q": "余额"}}\n</tool_call>'
    assert Handler.seen[-1][1]["response_format"] == {"type": "json_object"}


def test_server_errors_and_missing_logprobs_are_clear(server):
    with pytest.raises(DomainlmError, match="HTTP 500 model exploded"):
        load_model(f"openai:{server}#broken").generate(["x"])
    with pytest.raises(DomainlmError, match="no log-probabilities"):
        load_model(f"openai:{server}#demo").loglikelihood([("a", "b")])


def test_unreachable_server_is_one_line():
    with pytest.raises(DomainlmError, match="cannot reach the server"):
        load_model("openai:http://127.0.0.1:9/v1#m", timeout=2).chat([[{"role": "user", "content": "hi"}]])
