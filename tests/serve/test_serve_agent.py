"""The server's agent loop: a model taught to call an entry-point plugin and an OpenAPI tool calls them
through the server; a slow tool and a failing tool come back to the model as tool messages; max_steps
bounds a model that calls forever. Every call is in the response, the store and the metrics."""

from __future__ import annotations

import json
import shutil
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from serve_support import KEY, LiveServer, make_state, teach

openai = pytest.importorskip("openai", reason="the test extra (openai client) is not installed")

PLUGIN = '''
import time

from domainlm.plugins import Tool

ACCOUNT = {"type": "object", "properties": {"account": {"type": "string"}}, "required": ["account"]}


def balance(arguments):
    return {"account": arguments["account"], "balance": 1280.5}


def slow(arguments):
    time.sleep(3)
    return {"account": arguments["account"], "balance": 0}


def broken(arguments):
    raise ValueError("账户已冻结")


def tools():
    return [Tool("account_balance", "查询账户余额", ACCOUNT, balance),
            Tool("slow_lookup", "查询理财账户", ACCOUNT, slow),
            Tool("broken_lookup", "查询信用卡账户", ACCOUNT, broken)]
'''


def install_plugin(root, monkeypatch) -> None:
    """The plugin as an installed distribution: a module and its .dist-info with the entry point, on sys.path."""
    (root / "harbor_agent_tools.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = root / "harbor_agent_tools-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harbor-agent-tools\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[domainlm.plugins]\nharbor = harbor_agent_tools:tools\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))


class Rates(BaseHTTPRequestHandler):
    def do_GET(self):
        from urllib.parse import unquote

        product = unquote(self.path.rsplit("/", 1)[1])
        data = json.dumps({"product": product, "rate": 1.45}, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def rates_spec(url: str) -> dict:
    return {"openapi": "3.1.0", "info": {"title": "rates", "version": "1"}, "servers": [{"url": url}],
            "paths": {"/rates/{product}": {"get": {"operationId": "getRate", "summary": "查询产品利率", "parameters": [
                {"name": "product", "in": "path", "required": True, "schema": {"type": "string"}}]}}}}


def call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"


def rounds(question: str, name: str, arguments: dict, results: list[str]) -> list[list[dict]]:
    """The conversations the server builds: the question, then after each round the call and its result."""
    conversation = [{"role": "user", "content": question}]
    out = [list(conversation)]
    for i, result in enumerate(results):
        conversation += [
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": f"call_{i}", "name": name, "content": result}]
        out.append(list(conversation))
    return out


BALANCE = '{"account": "6222", "balance": 1280.5}'
# (question, tool, arguments, what the tool gives the model, the taught final answer)
SCENES = [
    ("查一下账户6222的余额", "account_balance", {"account": "6222"}, BALANCE, "账户6222的余额是1280.5元。"),
    ("定期存款的利率是多少？", "getRate", {"product": "定期存款"}, '{"product": "定期存款", "rate": 1.45}',
     "定期存款的年利率是1.45%。"),
    ("理财产品收益怎么样？", "slow_lookup", {"account": "88"}, '{"error": "the tool did not answer within 0.5s"}',
     "查询超时，请稍后再试。"),
    ("信用卡还款日是哪天？", "broken_lookup", {"account": "55"}, '{"error": "ValueError: 账户已冻结"}',
     "该账户已冻结，无法查询。"),
]
FOREVER = "每天都查账户6222的余额"


@pytest.fixture(scope="module")
def agent_server(tiny_dir, tmp_path_factory):
    from domainlm.serve.plugins import server_tools
    from domainlm.serve.server import make_asgi

    root = tmp_path_factory.mktemp("agent")
    monkeypatch = pytest.MonkeyPatch()
    install_plugin(root, monkeypatch)
    api = ThreadingHTTPServer(("127.0.0.1", 0), Rates)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    spec = root / "rates.json"
    spec.write_text(json.dumps(rates_spec(f"http://127.0.0.1:{api.server_address[1]}")), encoding="utf-8")
    options = dict(plugins=["harbor"], openapi=[str(spec)], tool_timeout=0.5, max_steps=2)

    # The model learns the tools exactly as the server will render them.
    tools = [t.spec() for t in server_tools(None, options["plugins"], options["openapi"], 0.5).values()]
    lessons = []
    for question, name, arguments, result, final in SCENES:
        first, after = rounds(question, name, arguments, [result])
        lessons += [(first, tools, call(name, arguments)), (after, tools, final)]
    lessons += [(c, tools, call("account_balance", {"account": "6222"}))
                for c in rounds(FOREVER, "account_balance", {"account": "6222"}, [BALANCE, BALANCE])]
    model_dir = teach(shutil.copytree(tiny_dir, root / "agent-model"), lessons=lessons, steps=200, lr=2e-2)
    state = make_state(model_dir, f"sqlite:///{root / 'f.db'}", **options)
    try:
        with LiveServer(make_asgi(state)) as server:
            server.state = state
            server.client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
            yield server
    finally:
        api.shutdown()
        monkeypatch.undo()


def ask(server, question: str, **extra):
    return server.client.chat.completions.create(model=server.state.name, max_tokens=80,
                                                 messages=[{"role": "user", "content": question}],
                                                 extra_body={"plugins": True, **extra})


def metrics(server) -> str:
    return httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text


def test_the_model_calls_an_entry_point_plugin_and_an_openapi_tool_through_the_loop(agent_server):
    for question, name, arguments, result, final in SCENES[:2]:
        r = ask(agent_server, question)
        calls = r.model_extra.get("plugin_calls")
        assert calls, f"no tool call; the model said {r.choices[0].message}"
        assert [(c["name"], json.loads(c["arguments"]), c["result"], c["error"], c["step"]) for c in calls] == [
            (name, arguments, result, None, 1)]
        assert calls[0]["ms"] >= 0
        # The model read the tool's answer and answered the user: no call reaches the client.
        assert r.choices[0].message.content == final and r.choices[0].finish_reason == "stop"
        assert not r.choices[0].message.tool_calls
        stored = agent_server.state.store.get_response(r.id)
        assert stored["request"]["plugin_calls"] == calls
    sources = {c: agent_server.state.tools[c].source for c in ("account_balance", "getRate")}
    assert sources["account_balance"] == "entry point harbor = harbor_agent_tools:tools (harbor-agent-tools)"
    assert sources["getRate"].startswith("openapi ") and sources["getRate"].endswith("rates.json")
    text = metrics(agent_server)
    assert 'domainlm_plugin_calls_total{tool="account_balance"}' in text
    assert 'domainlm_plugin_calls_total{tool="getRate"}' in text


def test_a_slow_tool_and_a_failing_tool_come_back_to_the_model_as_tool_messages(agent_server):
    for question, name, arguments, result, final in SCENES[2:]:
        started = time.perf_counter()
        r = ask(agent_server, question)
        calls = r.model_extra.get("plugin_calls")
        assert calls, f"no tool call; the model said {r.choices[0].message}"
        assert [(c["name"], json.loads(c["arguments"]), c["result"]) for c in calls] == [(name, arguments, None)]
        assert json.dumps({"error": calls[0]["error"]}, ensure_ascii=False) == result
        # The error was the tool message: the model answered from it, and the request was not a 500.
        assert r.choices[0].message.content == final
        if name == "slow_lookup":
            assert 450 <= calls[0]["ms"] < 2000 and time.perf_counter() - started < 3  # not the tool's 3 s
    text = metrics(agent_server)
    assert 'domainlm_plugin_call_errors_total{kind="timeout",tool="slow_lookup"}' in text
    assert 'domainlm_plugin_call_errors_total{kind="error",tool="broken_lookup"}' in text


def test_max_steps_bounds_a_model_that_calls_forever(agent_server):
    r = ask(agent_server, FOREVER)
    calls = r.model_extra.get("plugin_calls")
    assert calls, f"no tool call; the model said {r.choices[0].message}"
    assert [(c["name"], c["step"], c["result"], c["error"]) for c in calls] == [
        ("account_balance", 1, BALANCE, None), ("account_balance", 2, BALANCE, None),
        ("account_balance", 3, None, "not run: max_steps (2) reached")]
    # The call that was not run is not handed to the client (it never offered the tool).
    assert not r.choices[0].message.tool_calls and "<tool_call>" not in (r.choices[0].message.content or "")
    assert 'domainlm_plugin_call_errors_total{kind="not_run",tool="account_balance"} 1.0' in metrics(agent_server)


def test_without_plugins_the_server_tools_are_neither_offered_nor_run(agent_server):
    question, *_ = SCENES[0]
    r = agent_server.client.chat.completions.create(model=agent_server.state.name, max_tokens=80,
                                                    messages=[{"role": "user", "content": question}])
    assert "plugin_calls" not in (r.model_extra or {})


def test_a_client_tool_of_the_same_name_goes_back_to_the_client(agent_server):
    """The client offered account_balance itself: the call is the client's to run, not the server's."""
    question, name, arguments, *_ = SCENES[0]
    tools = [agent_server.state.tools[n].spec() for n in agent_server.state.tools]
    r = agent_server.client.chat.completions.create(model=agent_server.state.name, max_tokens=80, tools=tools,
                                                    messages=[{"role": "user", "content": question}],
                                                    extra_body={"plugins": True})
    assert r.choices[0].finish_reason == "tool_calls", r.choices[0].message
    assert [(c.function.name, json.loads(c.function.arguments)) for c in r.choices[0].message.tool_calls] == [(name, arguments)]
    assert "plugin_calls" not in (r.model_extra or {})


# ---------------------------------------------------------------------------------------------------
# The loop's rules, on scripted outputs (exact cases a tiny model would only hit by chance)
# ---------------------------------------------------------------------------------------------------
def test_bad_arguments_are_the_models_to_read_and_a_mixed_answer_goes_to_the_client():
    from domainlm.plugins import Tool
    from domainlm.serve.agent import call_tool, run_agent

    seen = []
    tool = Tool("account_balance", "", {"type": "object", "properties": {"account": {"type": "string"}},
                                        "required": ["account"]}, lambda a: seen.append(a) or {"balance": 1})
    assert call_tool(tool, "{not json", 1)["kind"] == "invalid_arguments"
    out = call_tool(tool, {"account": 6222}, 1)
    assert out["kind"] == "invalid_arguments" and out["error"] == "invalid arguments at account: 6222 is not of type 'string'"
    assert call_tool(tool, {"account": "6222"}, 1)["result"] == '{"balance": 1}' and seen == [{"account": "6222"}]

    client_tool = {"type": "function", "function": {"name": "transfer", "parameters": {"type": "object", "properties": {}}}}
    outputs = iter([call("account_balance", {"account": 1}), call("account_balance", {"account": "1"}) + call("transfer", {})])
    conversations = []

    def generate(conversation, step):
        conversations.append(conversation)
        return next(outputs)

    result = run_agent(generate, [{"role": "user", "content": "x"}], [tool.spec(), client_tool], {"account_balance": tool},
                       max_steps=3, tool_timeout=1)
    # Round 1: the schema error went back as the tool message; round 2 also called the client's tool.
    assert json.loads(conversations[1][-1]["content"])["error"].startswith("invalid arguments at account")
    assert result.calls[0]["error"] == "invalid arguments at account: 1 is not of type 'string'"
    assert result.calls[1]["error"] == "not run: the same answer called a client tool" and seen == [{"account": "6222"}]  # never run
    assert [c["function"]["name"] for c in result.parsed.tool_calls] == ["transfer"] and not result.exhausted


def test_a_forced_tool_choice_holds_for_the_first_round_only(agent_server):
    """tool_choice names the server's tool: the first round must call it; once its result is back the model
    answers freely (kept forced, every round would call again until max_steps)."""
    question, name, *_ = SCENES[0]
    r = ask(agent_server, question, tool_choice={"type": "function", "function": {"name": name}})
    calls = r.model_extra.get("plugin_calls")
    # One call, run in round 1 (the grammar holds the call to the tool's schema; this taught model's
    # arguments under it are its own business); then an answer, not a second forced call.
    assert [(c["name"], c["step"], c["error"]) for c in calls] == [(name, 1, None)], calls
    assert r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    assert not r.choices[0].message.tool_calls
