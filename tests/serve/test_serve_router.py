"""Edge/cloud router: PII never leaves the edge; confident edge answers are served; decisions are metered."""

from __future__ import annotations

import shutil

import httpx
import pytest
from serve_support import KEY, LiveServer

openai = pytest.importorskip("openai")

ID_CARD = "11010519491231002X"  # valid check digit


@pytest.fixture(scope="module")
def routed(tiny_dir, tmp_path_factory):
    from domainlm.serve.router import RoutePolicy
    from domainlm.serve.server import ServeOptions, build_state, make_asgi, resolve_keys

    root = tmp_path_factory.mktemp("router")
    edge, cloud = root / "edge-small", root / "cloud-big"
    shutil.copytree(tiny_dir, edge)
    shutil.copytree(tiny_dir, cloud)
    options = ServeOptions(edge=str(edge), cloud=str(cloud), route="cloud", db=f"sqlite:///{root / 'f.db'}", api_keys=[KEY])
    state = build_state(options, resolve_keys(options)[0])
    with LiveServer(make_asgi(state)) as server:
        server.state, server.policy = state, RoutePolicy
        yield server


def ask(server, text, **kw):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    return client.chat.completions.create(model="domainlm-router", max_tokens=40,
                                          messages=[{"role": "user", "content": text}], **kw)


def test_policy_parsing():
    from domainlm.errors import DomainlmError
    from domainlm.serve.router import RoutePolicy

    assert RoutePolicy.parse("confidence:0.7") == RoutePolicy("confidence", 0.7)
    assert RoutePolicy.parse("confidence").threshold == 0.5
    for bad in ("fast", "confidence:x", "confidence:2"):
        with pytest.raises(DomainlmError, match="--route"):
            RoutePolicy.parse(bad)


def test_personal_data_stays_on_the_edge_even_when_policy_says_cloud(routed):
    routed.state.router.policy = routed.policy.parse("cloud")
    plain = ask(routed, "What is the card fee?")
    assert plain.model_extra["route"] == {"target": "cloud", "model": "cloud-big", "reason": "policy", "confidence": None}
    for text in (f"我的身份证号是{ID_CARD}，金卡年费多少？", "call me on 13812345678 about the card fee"):
        r = ask(routed, text)
        assert r.model_extra["route"]["target"] == "edge" and r.model_extra["route"]["reason"] == "pii"
        streamed = [e for e in ask(routed, text, stream=True) if (e.model_extra or {}).get("route")]
        assert streamed[-1].model_extra["route"]["target"] == "edge"


def test_confidence_threshold_decides_between_edge_and_cloud(routed):
    routed.state.router.policy = routed.policy.parse("confidence:0.0")
    r = ask(routed, "你好")
    route = r.model_extra["route"]
    assert route["target"] == "edge" and route["reason"] == "confident" and 0 < route["confidence"] <= 1
    assert r.choices[0].message.content == "您好，我是海港银行的智能助手。"
    routed.state.router.policy = routed.policy.parse("confidence:1.0")
    r = ask(routed, "你好")
    assert r.model_extra["route"]["target"] == "cloud" and r.model_extra["route"]["reason"] == "unsure"
    # A taught answer is more certain than an untaught one: the score means something.
    edge = routed.state.router.edge
    from domainlm.serve.router import answer_confidence

    msgs = [{"role": "user", "content": "你好"}]
    assert answer_confidence(edge, msgs, "您好，我是海港银行的智能助手。", None) > answer_confidence(edge, msgs, "The gold card fee", None)


def test_router_decisions_and_savings_are_in_the_metrics(routed):
    routed.state.router.policy = routed.policy.parse("confidence:0.0")
    ask(routed, "你好")
    ask(routed, "my phone is 13812345678")
    text = httpx.get(routed.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("domainlm_router_decisions_total", (("reason", "confident"), ("target", "edge")))] >= 1
    assert samples[("domainlm_router_decisions_total", (("reason", "pii"), ("target", "edge")))] >= 1
    assert samples[("domainlm_router_cloud_tokens_saved_total", ())] > 0
