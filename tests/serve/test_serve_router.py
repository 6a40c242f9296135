"""Edge/cloud router: PII never leaves the edge; confident edge answers are served; decisions are metered."""

from __future__ import annotations

import json
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


# -- privacy policies ------------------------------------------------------------------------------
PATIENT = "患者王建国，男，56岁，因胸闷3天入院，诊断为冠心病，住院号ZY20230412。出院后该怎么用药？"


class _Recorder:
    """A stand-in served model that records the messages it is given."""

    def __init__(self, name):
        self.name, self.seen = name, []

    def complete(self, messages, params, generated=None, cancel=None):
        self.seen.append(messages)
        return "ok"

    def stream(self, messages, params, cancel=None, generated=None):
        self.seen.append(messages)
        yield "ok"

    def prompt_text(self, messages, tools):
        self.seen.append(messages)
        return "\n".join(m["content"] for m in messages)


def test_privacy_policies_decide_what_leaves_the_edge():
    from domainlm.errors import DomainlmError
    from domainlm.serve.asgi import ApiError
    from domainlm.serve.generation import GenParams
    from domainlm.serve.router import RoutePolicy, Router

    edge, cloud = _Recorder("edge"), _Recorder("cloud")
    params = GenParams(max_new_tokens=8)
    msgs = [{"role": "system", "content": "你是医院的助手。"}, {"role": "user", "content": PATIENT}]

    # keep-on-edge (the default): a name and a diagnosis are enough to stay on the edge
    router = Router(edge, cloud, RoutePolicy.parse("cloud"))
    d = router.decide(msgs, params)
    assert (d.target, d.reason) == ("edge", "pii") and {"name", "medical", "record_no"} <= set(d.pii)
    name_only = [{"role": "user", "content": "我妈妈张桂兰今年68岁，确诊为肺癌，靶向药多少钱？"}]
    assert router.decide(name_only, params).target == "edge"
    assert router.decide([{"role": "user", "content": "肺癌靶向药一般多少钱？"}], params).target == "cloud"

    # redact: the cloud answers, and never sees the name, the diagnosis or the admission number
    router = Router(edge, cloud, RoutePolicy.parse("cloud", privacy="redact"))
    d = router.decide(msgs, params)
    assert (d.target, d.reason, d.redact) == ("cloud", "pii-redacted", True)
    model = router.model_for(d)
    assert model.name == "cloud"
    model.complete(msgs, params)
    list(model.stream([{"role": "user", "content": [{"type": "text", "text": PATIENT}]}], params))
    sent = json.dumps(cloud.seen, ensure_ascii=False)
    assert "王建国" not in sent and "冠心病" not in sent and "ZY20230412" not in sent
    assert sent.count("[NAME]") == 2 and "[MEDICAL]" in sent and "你是医院的助手。" in sent
    assert msgs[1]["content"] == PATIENT  # the caller's messages are not changed
    # a request without personal data goes to the cloud untouched
    plain = router.decide([{"role": "user", "content": "出院后该怎么用药？"}], params)
    assert (plain.target, plain.redact) == ("cloud", False) and router.model_for(plain) is cloud

    # refuse: 403 naming the types found
    router = Router(edge, cloud, RoutePolicy.parse("cloud", privacy="refuse"))
    with pytest.raises(ApiError) as refused:
        router.decide(msgs, params)
    assert refused.value.status == 403 and refused.value.code == "pii_refused"
    assert "name" in refused.value.message and "medical" in refused.value.message
    assert router.decide([{"role": "user", "content": "你好"}], params).target == "cloud"

    with pytest.raises(DomainlmError, match="privacy policy 'leak'"):
        RoutePolicy.parse("cloud", privacy="leak")


def test_privacy_policies_through_the_server(routed):
    cloud = routed.state.router.cloud
    seen = []
    original = cloud.complete

    def recording(messages, *args, **kwargs):
        seen.append(messages)
        return original(messages, *args, **kwargs)

    try:
        routed.state.router.policy = routed.policy.parse("cloud")
        r = ask(routed, PATIENT)
        assert r.model_extra["route"]["target"] == "edge" and r.model_extra["route"]["reason"] == "pii"

        cloud.complete = recording
        routed.state.router.policy = routed.policy.parse("cloud", privacy="redact")
        r = ask(routed, PATIENT)
        assert r.model_extra["route"]["target"] == "cloud" and r.model_extra["route"]["reason"] == "pii-redacted"
        assert seen and "王建国" not in json.dumps(seen, ensure_ascii=False) and "[NAME]" in seen[-1][-1]["content"]
        # what the feedback store kept is redacted too
        stored = routed.state.store.get_response(r.id)
        assert "王建国" not in json.dumps(stored, ensure_ascii=False)
        assert "[NAME]" in stored["request"]["messages"][-1]["content"]

        routed.state.router.policy = routed.policy.parse("cloud", privacy="refuse")
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(routed, PATIENT)
        assert refused.value.body["code"] == "pii_refused" and "name" in refused.value.body["message"]
    finally:
        cloud.__dict__.pop("complete", None)
        routed.state.router.policy = routed.policy.parse("cloud")


def test_a_streamed_request_with_personal_data_is_refused_before_the_stream_starts(routed):
    """Under ``refuse`` a streamed request gets the same 403 as a non-streamed one, before any event and with no
    generation; a clean streamed request is routed once (the edge's answer under ``confidence`` is not made twice)."""
    router = routed.state.router
    calls: list[str] = []

    def counted(model, method):
        original = getattr(model, method)

        def wrapper(*args, **kwargs):
            calls.append(f"{model.name}.{method}")
            return original(*args, **kwargs)

        setattr(model, method, wrapper)

    for model in (router.edge, router.cloud):
        for method in ("complete", "stream"):
            counted(model, method)
    try:
        router.policy = routed.policy.parse("confidence:0.0", privacy="refuse")
        body = {"model": "domainlm-router", "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": PATIENT}]}
        with httpx.stream("POST", routed.url + "/v1/chat/completions", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as r:
            raw = r.read().decode()
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/json"), raw
        assert "data:" not in raw
        error = json.loads(raw)["error"]
        assert (error["type"], error["code"], error["param"]) == ("permission_error", "pii_refused", "messages")
        assert "name" in error["message"] and "medical" in error["message"]
        with pytest.raises(openai.PermissionDeniedError) as refused:  # the SDK raises at create(), not mid-iteration
            ask(routed, PATIENT, stream=True)
        assert refused.value.body["code"] == "pii_refused"
        assert calls == [] and routed.state.admission.admitted == 0  # nothing generated, no queue place kept

        chunks = list(ask(routed, "你好", stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "您好，我是海港银行的智能助手。"
        assert chunks[-1].model_extra["route"]["reason"] == "confident"
        assert calls == ["edge-small.complete"]  # decided once: the edge's answer is the one streamed
    finally:
        for model in (router.edge, router.cloud):
            for method in ("complete", "stream"):
                model.__dict__.pop(method, None)
        router.policy = routed.policy.parse("cloud")
