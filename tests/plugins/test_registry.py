"""Registering tools: entry points of an installed distribution, OpenAPI files against a real HTTP server."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from domainlm.errors import DomainlmError
from domainlm.plugins.registry import Tool, ToolError, entry_point_tools, index_tools, load_tools, openapi_tools

PLUGIN_CODE = '''
from domainlm.plugins import Tool

BALANCES = {"6222": 1280.5}


def balance(arguments):
    return {"account": arguments["account"], "balance": BALANCES[arguments["account"]]}


def tools():
    return [Tool("account_balance", "查询账户余额", {"type": "object", "properties": {"account": {"type": "string"}},
                 "required": ["account"]}, balance)]


lonely = Tool("rate_table", "利率表", {"type": "object", "properties": {}}, lambda arguments: {"1y": 1.5})
not_a_tool = {"name": "x"}
'''


def install_plugin(root, monkeypatch, module: str, code: str, entry_points: dict[str, str]):
    """A real installed distribution: a module and its .dist-info (METADATA, entry_points.txt) on sys.path."""
    (root / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n", encoding="utf-8")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[domainlm.plugins]\n{lines}", encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))


def test_entry_point_plugins_load_from_an_installed_distribution(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "acme_bank_tools", PLUGIN_CODE,
                   {"acme": "acme_bank_tools:tools", "acme_rates": "acme_bank_tools:lonely"})
    tools = index_tools(entry_point_tools(["acme", "acme_rates"]))
    assert list(tools) == ["account_balance", "rate_table"]
    balance = tools["account_balance"]
    assert balance.source == "entry point acme = acme_bank_tools:tools (acme_bank_tools)"
    assert balance.run({"account": "6222"}) == {"account": "6222", "balance": 1280.5}
    assert balance.spec()["function"]["parameters"]["required"] == ["account"]
    assert balance.summary() == "account: string (required)"
    # `all` loads every installed entry point and the built-in tools.
    assert {"account_balance", "rate_table", "price_forecast"} <= set(index_tools(load_tools(["all"])))
    with pytest.raises(DomainlmError, match=r"no plugin 'acmee' in entry point group domainlm.plugins \(acme, acme_rates"):
        entry_point_tools(["acmee"])


def test_a_broken_plugin_is_an_error_naming_its_entry_point(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "broken_tools", PLUGIN_CODE + "\nraise RuntimeError('no config')\n",
                   {"broken": "broken_tools:tools"})
    with pytest.raises(DomainlmError, match=r"entry point broken = broken_tools:tools \(broken_tools\): cannot load "
                                            r"\(RuntimeError: no config\)"):
        entry_point_tools(["broken"])
    (tmp_path / "other").mkdir()
    install_plugin(tmp_path / "other", monkeypatch, "wrong_tools", PLUGIN_CODE, {"wrong": "wrong_tools:not_a_tool"})
    with pytest.raises(DomainlmError, match="gives dict, not a domainlm.plugins.Tool"):
        entry_point_tools(["wrong"])


def test_a_tool_must_have_a_valid_name_and_schema():
    ok = {"type": "object", "properties": {"q": {"type": "string"}}}
    with pytest.raises(DomainlmError, match="tool name 'look up' must be"):
        Tool("look up", "", ok, print)
    with pytest.raises(DomainlmError, match="parameters must be a JSON schema with type object"):
        Tool("lookup", "", {"type": "string"}, print)
    with pytest.raises(DomainlmError, match="not a valid JSON schema"):
        Tool("lookup", "", {"type": "object", "properties": {"q": {"type": "text"}}}, print)
    one = Tool("lookup", "", ok, print, source="openapi a.yaml")
    with pytest.raises(DomainlmError, match="'lookup' is registered twice: by openapi a.yaml and by python"):
        index_tools([one, Tool("lookup", "", ok, print)])


# ---------------------------------------------------------------------------------------------------
# OpenAPI
# ---------------------------------------------------------------------------------------------------
class Bank(BaseHTTPRequestHandler):
    """A small bank API: rates by product, transfers, a slow endpoint; every request kept for the test."""

    seen: list = []

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        self.seen.append(("GET", url.path, parse_qs(url.query), dict(self.headers), None))
        if url.path.startswith("/v1/rates/"):
            from urllib.parse import unquote

            product = unquote(url.path.rsplit("/", 1)[1])
            if product != "定期存款":
                return self._send(404, {"error": f"no product {product}"})
            return self._send(200, {"product": product, "term": parse_qs(url.query)["term"][0], "rate": 1.45})
        if url.path == "/v1/slow":
            time.sleep(2)
            try:
                return self._send(200, {"ok": True})
            except (BrokenPipeError, ConnectionResetError):  # the client timed out, as the test wants
                return None
        self._send(404, {"error": "no route"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, {}, dict(self.headers), body))
        self._send(201, {"id": "t-1", "status": "pending", **body})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def bank_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bank)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def bank_spec(url: str) -> dict:
    return {
        "openapi": "3.0.3", "info": {"title": "Harbor API", "version": "1"},
        "servers": [{"url": url + "/{version}", "variables": {"version": {"default": "v1"}}}],
        "paths": {
            "/rates/{product}": {
                "parameters": [{"name": "product", "in": "path", "required": True, "schema": {"type": "string"},
                                "description": "产品名称"}],
                "get": {"operationId": "getRate", "summary": "查询产品利率",
                        "parameters": [{"$ref": "#/components/parameters/Term"},
                                       {"name": "X-Channel", "in": "header", "schema": {"type": "string"}}]}},
            "/transfers": {"post": {"operationId": "createTransfer", "description": "发起转账",
                                    "requestBody": {"required": True, "content": {"application/json": {
                                        "schema": {"$ref": "#/components/schemas/Transfer"}}}}}},
            "/slow": {"get": {"operationId": "slowReport"}},
        },
        "components": {
            "parameters": {"Term": {"name": "term", "in": "query", "required": True,
                                    "schema": {"type": "string", "enum": ["1y", "3y"]}}},
            "schemas": {"Transfer": {"type": "object", "required": ["to", "amount"], "properties": {
                "to": {"type": "string"}, "amount": {"type": "number", "minimum": 0.01}, "memo": {"type": "string"}}}},
        },
    }


def test_openapi_operations_become_tools_that_call_the_server(bank_api, tmp_path):
    spec = tmp_path / "harbor.yaml"
    spec.write_text(yaml.safe_dump(bank_spec(bank_api), allow_unicode=True, sort_keys=False), encoding="utf-8")
    tools = index_tools(openapi_tools(spec, timeout=0.5))
    assert list(tools) == ["getRate", "createTransfer", "slowReport"]
    rate, transfer = tools["getRate"], tools["createTransfer"]
    assert rate.source == f"openapi {spec}" and rate.description == "查询产品利率"
    assert rate.parameters == {"type": "object", "required": ["product", "term"], "properties": {
        "product": {"type": "string", "description": "产品名称"}, "term": {"type": "string", "enum": ["1y", "3y"]},
        "X-Channel": {"type": "string"}}}
    assert transfer.parameters["required"] == ["to", "amount"] and set(transfer.parameters["properties"]) == {"to", "amount", "memo"}

    Bank.seen.clear()
    assert rate.run({"product": "定期存款", "term": "3y", "X-Channel": "app"}) == {"product": "定期存款", "term": "3y", "rate": 1.45}
    method, path, query, headers, _ = Bank.seen[-1]
    assert (method, path, query, headers["X-Channel"]) == ("GET", "/v1/rates/%E5%AE%9A%E6%9C%9F%E5%AD%98%E6%AC%BE", {"term": ["3y"]}, "app")
    assert transfer.run({"to": "6222", "amount": 100}) == {"id": "t-1", "status": "pending", "to": "6222", "amount": 100}
    assert Bank.seen[-1][1] == "/v1/transfers" and Bank.seen[-1][4] == {"to": "6222", "amount": 100}
    with pytest.raises(ToolError, match=r'HTTP 404: \{"error": "no product 活期"\}'):
        rate.run({"product": "活期", "term": "1y"})
    import httpx

    started = time.perf_counter()
    with pytest.raises(httpx.TimeoutException):
        tools["slowReport"].run({})
    assert time.perf_counter() - started < 1.5


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("openapi"), "not an OpenAPI 3 document"),
    (lambda d: d.update(servers=[]), "servers\\[0\\].url is missing"),
    (lambda d: d.update(servers=[{"url": "/api"}]), "must be an absolute http\\(s\\) URL"),
    (lambda d: d["paths"]["/slow"]["get"].pop("operationId"), "paths./slow.get: no operationId"),
    (lambda d: d["components"]["schemas"].pop("Transfer"), "\\$ref '#/components/schemas/Transfer' points to nothing"),
    (lambda d: d["paths"]["/transfers"]["post"]["requestBody"].update(content={"text/plain": {}}),
     "paths./transfers.post: requestBody has no application/json content"),
])
def test_a_bad_openapi_file_is_one_error_naming_the_file_and_place(tmp_path, change, message):
    doc = bank_spec("http://127.0.0.1:9")
    change(doc)
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DomainlmError, match=f"^{tmp_path / 'bad.json'}: .*{message}"):
        openapi_tools(spec)


def test_plugins_list_shows_every_registered_tool(bank_api, tmp_path, monkeypatch, capsys):
    from domainlm.cli import main

    install_plugin(tmp_path, monkeypatch, "listed_tools", PLUGIN_CODE, {"listed": "listed_tools:tools"})
    spec = tmp_path / "harbor.json"
    spec.write_text(json.dumps(bank_spec(bank_api)), encoding="utf-8")
    assert main(["plugins", "list", "--openapi", str(spec), "--json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert {"price_forecast", "account_balance", "getRate", "createTransfer", "slowReport"} <= set(listed)
    assert listed["getRate"]["source"] == f"openapi {spec}"
    assert listed["account_balance"]["source"].startswith("entry point listed = listed_tools:tools")
    assert main(["plugins", "list", "--openapi", str(tmp_path / "missing.yaml")]) != 0
    assert "missing.yaml: cannot read" in capsys.readouterr().err
