"""Export, audit, promotion and rollback over HTTP, by role, against a real server on 127.0.0.1.

The server serves a model registry's ``current`` link, as ``domainlm serve --model REGISTRY/current`` does. A
reviewer exports feedback as training rows (tools kept); an admin reads the audit log and rolls the served model
back or promotes a version, and the next answer comes from that version. Each export, promotion and rollback is in
the audit log under the key's name. A key without the role gets a 403 in OpenAI's error shape.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from serve_support import LESSONS, RATE_TOOL, LiveServer, teach

USER, REVIEWER, ADMIN = "sk-user-0123456789", "sk-reviewer-0123456789", "sk-admin-0123456789"
ASK = [{"role": "user", "content": "你是哪个版本？"}]
SECOND = "第二版为您服务。"  # what v0002 is taught to answer ASK with
RATE = [{"role": "user", "content": "定期存款利率是多少？"}]
CORRECTED_CALL = '{"name": "get_rate", "arguments": {"product": "三年期定期存款"}}'


def asgi(state, registry):
    from domainlm.serve.app import create_app
    from domainlm.serve.asgi import BodyLimit, JsonBodies

    return BodyLimit(JsonBodies(create_app(state, registry=registry)), state.max_body_bytes)


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    from domainlm.serve.flywheel import _point_current, init_registry, read_registry
    from domainlm.serve.reload import RegistryWatcher, registry_link
    from domainlm.serve.server import ServeOptions, build_state, resolve_keys

    home = tmp_path_factory.mktemp("admin")
    registry = home / "registry"
    init_registry(registry, str(tiny_dir))
    # What a flywheel promotion leaves: v0002 in versions/ and on the history, `current` pointing at it.
    teach(shutil.copytree(tiny_dir, registry / "versions" / "v0002"), lessons=[*LESSONS, (ASK, None, SECOND)], steps=60)
    promoted = read_registry(registry)
    promoted["current"] = "v0002"
    promoted["history"].append({"version": "v0002", "time": 0, "run": "run-0001", "previous": "v0001"})
    (registry / "registry.json").write_text(json.dumps(promoted), encoding="utf-8")
    _point_current(registry, "v0002")

    keys_file = home / "keys.txt"
    keys_file.write_text(f"{USER}  ann\n{REVIEWER}  bo  reviewer\n{ADMIN}  cy  admin\n", encoding="utf-8")
    options = ServeOptions(model=str(registry / "current"), db=f"sqlite:///{home / 'feedback.db'}",
                           api_keys_file=str(keys_file))
    state = build_state(options, resolve_keys(options)[0])
    # The watcher's thread is not started: the swaps seen here are the ones the admin routes make.
    watcher = RegistryWatcher(state, registry_link(options.model))
    with LiveServer(asgi(state, watcher)) as live:
        live.state, live.registry = state, registry
        yield live


def call(server, method: str, path: str, key: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=120, **kwargs)


def chat(server, key: str, messages, **body) -> dict:
    r = call(server, "POST", "/v1/chat/completions", key,
             json={"model": server.state.name, "messages": messages, "max_tokens": 24, "temperature": 0, **body})
    assert r.status_code == 200, r.text
    return r.json()


def answer(server) -> str:
    return chat(server, USER, ASK)["choices"][0]["message"]["content"]


def assert_refused(response: httpx.Response, role: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "insufficient_role") and f"role '{role}'" in error["message"]


def audit(server, **params) -> list[dict]:
    r = call(server, "GET", "/v1/audit", ADMIN, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_a_reviewer_exports_rows_with_their_tools_and_a_user_cannot(server):
    served = chat(server, USER, RATE, tools=[RATE_TOOL], max_tokens=64)
    assert served["choices"][0]["finish_reason"] == "tool_calls"  # the taught call: the correction below fixes it
    rid = served["id"]
    r = call(server, "POST", "/v1/feedback", REVIEWER, json={"response_id": rid, "correction": CORRECTED_CALL})
    assert r.status_code == 200, r.text
    second = chat(server, USER, [{"role": "user", "content": "What is the card fee?"}])["id"]
    assert call(server, "POST", "/v1/feedback", USER, json={"response_id": second, "rating": "up"}).status_code == 200

    assert_refused(call(server, "POST", "/v1/feedback/export", USER, json={"format": "sft"}), "reviewer")

    r = call(server, "POST", "/v1/feedback/export", REVIEWER, json={"format": "sft"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["object"], body["format"], body["feedback"], body["rows"]) == ("list", "sft", 2, 1)
    (row,) = body["data"]
    assert row["tools"] == [RATE_TOOL]
    assert row["messages"][0] == RATE[0]
    call_turn = row["messages"][-1]
    assert call_turn["role"] == "assistant"
    assert call_turn["tool_calls"][0]["function"] == {"name": "get_rate", "arguments": {"product": "三年期定期存款"}}

    # JSONL: the same rows, as `domainlm feedback export` writes them; one page at a time with since/limit
    r = call(server, "POST", "/v1/feedback/export", REVIEWER, json={"format": "sft", "output": "jsonl", "limit": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/jsonl")
    assert [json.loads(line) for line in r.text.splitlines()] == [row]
    first_page_last = int(r.headers["X-Feedback-Last-Id"])
    r = call(server, "POST", "/v1/feedback/export", REVIEWER,
             json={"format": "kto", "since": first_page_last, "limit": 1})
    kto = r.json()
    assert kto["feedback"] == 1 and kto["last_id"] > first_page_last
    assert [(x["prompt"], x["label"]) for x in kto["data"]] == [("What is the card fee?", True)]

    bad = call(server, "POST", "/v1/feedback/export", REVIEWER, json={"format": "csv"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "format"

    exports = audit(server, action="export")
    assert [(e["actor"], e["target"], e["detail"]["format"], e["detail"]["rows"]) for e in exports] == [
        ("key:bo", "/v1/feedback/export", "sft", 1), ("key:bo", "/v1/feedback/export", "sft", 1),
        ("key:bo", "/v1/feedback/export", "kto", 1)]
    assert exports[2]["detail"]["since"] == first_page_last and all(e["time"] > 0 for e in exports)


def test_only_an_admin_reads_the_audit_log(server):
    assert_refused(call(server, "GET", "/v1/audit", REVIEWER), "admin")
    bad = call(server, "GET", "/v1/audit", ADMIN, params={"action": "delete"})
    assert bad.status_code == 400 and "unknown audit action" in bad.json()["error"]["message"]


def test_an_admin_rolls_back_and_the_server_answers_with_the_earlier_model(server):
    from domainlm.serve.flywheel import flywheel_log, read_registry

    assert answer(server).startswith(SECOND)
    assert_refused(call(server, "POST", "/v1/admin/rollback", REVIEWER, json={}), "admin")
    assert read_registry(server.registry)["current"] == "v0002"

    r = call(server, "POST", "/v1/admin/rollback", ADMIN, json={})
    assert r.status_code == 200, r.text
    assert (r.json()["current"], r.json()["previous"], r.json()["history"]) == ("v0001", "v0002", ["v0001"])
    assert not answer(server).startswith(SECOND)  # the answer comes from v0001 now, with no restart
    assert read_registry(server.registry)["current"] == "v0001"
    assert flywheel_log(server.registry)[-1]["step"] == "rollback"  # the flywheel's own rollback, logged as the CLI's

    (entry,) = audit(server, action="rollback")
    assert (entry["actor"], entry["target"], entry["detail"]) == ("key:cy", str(server.registry), {"current": "v0001"})

    r = call(server, "POST", "/v1/admin/rollback", ADMIN, json={})
    assert r.status_code == 409 and "nothing to roll back to" in r.json()["error"]["message"]


def test_an_admin_promotes_a_version_and_can_roll_back_to_any_earlier_one(server):
    r = call(server, "POST", "/v1/admin/promote", ADMIN, json={"version": "v0002"})
    assert r.status_code == 200, r.text
    assert (r.json()["current"], r.json()["history"]) == ("v0002", ["v0001", "v0002"])
    assert answer(server).startswith(SECOND)
    (entry,) = audit(server, action="promote")
    assert (entry["actor"], entry["detail"]) == ("key:cy", {"current": "v0001", "version": "v0002"})

    refused = call(server, "POST", "/v1/admin/promote", ADMIN, json={"version": "v0009"})
    assert refused.status_code == 409 and "v0001, v0002" in refused.json()["error"]["message"]
    assert call(server, "POST", "/v1/admin/promote", ADMIN, json={"version": "../v0001"}).status_code == 400
    assert call(server, "POST", "/v1/admin/promote", ADMIN, json={"version": "v0002"}).status_code == 409
    assert_refused(call(server, "POST", "/v1/admin/promote", REVIEWER, json={"version": "v0001"}), "admin")

    r = call(server, "POST", "/v1/admin/rollback", ADMIN, json={"version": "v0002"})
    assert r.status_code == 409 and "v0002 is serving" in r.json()["error"]["message"]
    r = call(server, "POST", "/v1/admin/rollback", ADMIN, json={"version": "v0001"})
    assert r.status_code == 200 and r.json()["current"] == "v0001"
    assert not answer(server).startswith(SECOND)
    assert [e["action"] for e in audit(server)] == ["export"] * 3 + ["rollback", "promote", "rollback"]


def test_a_server_without_a_registry_answers_409(server):
    with LiveServer(asgi(server.state, None)) as plain:
        for path, body in (("/v1/admin/rollback", {}), ("/v1/admin/promote", {"version": "v0002"})):
            r = call(plain, "POST", path, ADMIN, json=body)
            assert r.status_code == 409 and r.json()["error"]["code"] == "no_registry", r.text
            assert "--model REGISTRY/current" in r.json()["error"]["message"]
        assert_refused(call(plain, "POST", "/v1/admin/rollback", USER, json={}), "admin")
