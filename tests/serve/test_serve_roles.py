"""Roles on API keys, against a real server on 127.0.0.1 started with an ``--api-keys`` file.

A user chats and rates; corrections and pairwise choices (training data) need a reviewer; /metrics needs an
admin (or the scrape token). Refusals are 403s in OpenAI's error shape, naming the role needed.
"""

from __future__ import annotations

import httpx
import pytest
from serve_support import LiveServer

openai = pytest.importorskip("openai")

USER, REVIEWER, ADMIN = "sk-user-0123456789", "sk-reviewer-0123456789", "sk-admin-0123456789"
SCRAPE = "scrape-0123456789abcdef"
FEE = [{"role": "user", "content": "What is the card fee?"}]


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    from domainlm.serve.server import ServeOptions, build_state, make_asgi, resolve_keys

    home = tmp_path_factory.mktemp("roles")
    keys_file = home / "keys.txt"
    keys_file.write_text(f"# key  name  [rate]  [role]\n{USER}  ann\n{REVIEWER}  bo  600  reviewer\n{ADMIN}  cy  admin\n",
                         encoding="utf-8")
    options = ServeOptions(model=str(tiny_dir), db=f"sqlite:///{home / 'feedback.db'}", api_keys_file=str(keys_file),
                           metrics_token=SCRAPE)
    keys, generated = resolve_keys(options)
    assert generated is None and [(k.name, k.role) for k in keys] == [("ann", "user"), ("bo", "reviewer"), ("cy", "admin")]
    state = build_state(options, keys)
    with LiveServer(make_asgi(state)) as live:
        live.state = state
        yield live


def answer_id(server, key: str) -> str:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model="tiny", messages=FEE, max_tokens=8).id


def feedback(server, key: str, **body) -> httpx.Response:
    return httpx.post(server.url + "/v1/feedback", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)


def metrics(server, key: str) -> httpx.Response:
    return httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def assert_refused(response: httpx.Response, role: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_role" and error["type"] == "permission_error" and f"role '{role}'" in error["message"]


def test_a_user_chats_and_rates_but_cannot_correct_or_scrape(server):
    rid = answer_id(server, USER)
    assert feedback(server, USER, response_id=rid, rating="up").status_code == 200
    assert feedback(server, USER, response_id=rid, comment="clear").status_code == 200
    assert_refused(feedback(server, USER, response_id=rid, correction="The fee is 200 yuan."), "reviewer")
    other = answer_id(server, USER)
    assert_refused(feedback(server, USER, response_id=rid, rejected_id=other), "reviewer")
    assert_refused(metrics(server, USER), "admin")
    stored = [f for f in server.state.store.iter_feedback() if f.response_id == rid]
    assert {(f.rating, f.correction, f.comment) for f in stored} == {("up", None, None), (None, None, "clear")}


def test_the_openai_client_raises_permission_denied_for_a_users_correction(server):
    # The official client maps 403 to PermissionDeniedError and reads the error body.
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=USER, max_retries=0)
    rid = client.chat.completions.create(model="tiny", messages=FEE, max_tokens=4).id
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.post("/feedback", body={"response_id": rid, "correction": "x"}, cast_to=object)
    assert refused.value.body["code"] == "insufficient_role" and "reviewer" in refused.value.body["message"]


def test_a_reviewer_corrects_and_chooses_but_cannot_scrape(server):
    rid, other = answer_id(server, REVIEWER), answer_id(server, USER)
    ack = feedback(server, REVIEWER, response_id=rid, correction="The gold card fee is 200 yuan a year.")
    assert ack.status_code == 200 and ack.json()["stored"] is True
    assert feedback(server, REVIEWER, response_id=rid, rejected_id=other).status_code == 200
    stored = [f for f in server.state.store.iter_feedback() if f.response_id == rid]
    assert [f.correction for f in stored if f.correction] == ["The gold card fee is 200 yuan a year."]
    assert all(f.user == "bo" for f in stored)
    assert_refused(metrics(server, REVIEWER), "admin")


def test_an_admin_and_the_scrape_token_read_metrics(server):
    assert metrics(server, ADMIN).status_code == 200
    assert "domainlm_generations_in_flight" in metrics(server, SCRAPE).text
    rid = answer_id(server, ADMIN)
    assert feedback(server, ADMIN, response_id=rid, correction="ok").status_code == 200
    assert metrics(server, "sk-nobody-0123456789").status_code == 401  # an unknown key is still a 401
