"""Grounded answers with citations, kb_search and ChatFile through the server, on the sample bank."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from serve_support import KEY, LiveServer, make_state

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    from domainlm.io import read_jsonl
    from domainlm.kb import KBConfig, build_kb
    from domainlm.sample import generate_sample

    root = tmp_path_factory.mktemp("bank")
    sample = generate_sample(root / "sample", seed=0, size="tiny")
    docs = [{"id": d["id"], "text": d["text"], "source": d["path"], "meta": {"title": d["title"]}}
            for d in read_jsonl(sample / "truth" / "documents.jsonl")]
    build_kb(docs, root / "kb", KBConfig(embedder="none"))
    qa = read_jsonl(sample / "tasks" / "eval" / "knowledge_qa.jsonl")
    return {"sample": sample, "kb": root / "kb", "qa": qa}


@pytest.fixture(scope="module")
def kb_server(tiny_dir, bank, tmp_path_factory):
    from domainlm.serve.server import make_asgi

    state = make_state(tiny_dir, f"sqlite:///{tmp_path_factory.mktemp('db') / 'f.db'}", kb=str(bank["kb"]))
    with LiveServer(make_asgi(state)) as server:
        server.state = state
        yield server


def test_kb_answer_has_citations_that_contain_the_fact(kb_server, bank):
    from domainlm.kb import answer, open_kb

    client = openai.OpenAI(base_url=kb_server.url + "/v1", api_key=KEY, max_retries=0)
    item = bank["qa"][0]
    r = client.chat.completions.create(model=kb_server.state.name, messages=[{"role": "user", "content": item["question"]}],
                                       extra_body={"kb": True})
    want = answer(open_kb(bank["kb"]), item["question"])
    assert r.choices[0].message.content == want.answer and item["answer"] in want.answer
    citations = r.model_extra["citations"]
    assert citations and any(item["evidence"] in c["text"] for c in citations)
    assert {"n", "doc_id", "source", "title", "text"} <= set(citations[0])
    # Streamed: the same answer, with the citations on the final chunk.
    text, streamed_citations = "", None
    for event in client.chat.completions.create(model=kb_server.state.name, stream=True, extra_body={"kb": True},
                                                messages=[{"role": "user", "content": item["question"]}]):
        streamed_citations = (event.model_extra or {}).get("citations") or streamed_citations
        text += "".join(c.delta.content or "" for c in event.choices)
    assert text == want.answer and streamed_citations == citations


def test_kb_search_endpoint_and_plugin_tool(kb_server, bank):
    from domainlm.serve.plugins import run_plugin_tool

    item = bank["qa"][2]
    r = httpx.post(kb_server.url + "/v1/kb/search", headers={"Authorization": f"Bearer {KEY}"},
                   json={"query": item["question"], "k": 3})
    hits = r.json()["data"]
    assert r.status_code == 200 and len(hits) == 3 and hits[0]["doc_id"] == item["doc_id"]
    tool = json.loads(run_plugin_tool("kb_search", json.dumps({"query": item["question"], "k": 2}), kb_server.state.kb))
    assert [h["chunk_id"] for h in tool["results"]] == [h["chunk_id"] for h in hits[:2]]
    assert "error" in json.loads(run_plugin_tool("kb_search", "{not json", kb_server.state.kb))
    bad = httpx.post(kb_server.url + "/v1/kb/search", headers={"Authorization": f"Bearer {KEY}"}, json={"query": " "})
    assert bad.status_code == 400 and "empty query" in bad.json()["error"]["message"]


def test_chatfile_summary_and_question_on_an_uploaded_docx(kb_server, bank):
    from domainlm.io import read_jsonl

    facts = [f for f in read_jsonl(bank["sample"] / "truth" / "facts.jsonl") if f["doc_id"] == "manual-002-zh"]
    data = base64.b64encode((bank["sample"] / "docs" / "manual-002-zh.docx").read_bytes()).decode()
    headers = {"Authorization": f"Bearer {KEY}"}
    summary = httpx.post(kb_server.url + "/v1/chatfile", headers=headers, timeout=120,
                         json={"filename": "说明书.docx", "content_base64": data}).json()
    assert summary["object"] == "chatfile.summary" and len(summary["summary"]) > 20
    fact = facts[0]
    question = f"{fact['product']}的{fact['attribute_label']}是多少？"
    qa = httpx.post(kb_server.url + "/v1/chatfile", headers=headers, timeout=120,
                    json={"filename": "说明书.docx", "content_base64": data, "question": question}).json()
    assert fact["value"] in qa["answer"] and any(fact["sentence"] in c["text"] for c in qa["citations"])
    bad = httpx.post(kb_server.url + "/v1/chatfile", headers=headers, timeout=120, json={"filename": "x.exe", "content_base64": data})
    assert bad.status_code == 400 and "unsupported file type" in bad.json()["error"]["message"]
    bad = httpx.post(kb_server.url + "/v1/chatfile", headers=headers, timeout=120, json={"filename": "x.txt", "content_base64": "%%%"})
    assert bad.status_code == 400 and "base64" in bad.json()["error"]["message"]


def test_chatfile_upload_is_governed_like_clean(kb_server, shared_benchmarks):
    """An uploaded file goes through the clean recipe: its mobile number is redacted, its pinyin annotation
    folded and its traditional characters simplified before anything is summarised or quoted."""
    passage = json.loads((shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json").read_text("utf-8"))["data"][0]
    text = passage["paragraphs"][0]["context"]
    messy = f"联系人（lián xì rén）手机13912345678，如有疑問請來電。{text}"
    headers = {"Authorization": f"Bearer {KEY}"}
    data = base64.b64encode(messy.encode("utf-8")).decode()
    summary = httpx.post(kb_server.url + "/v1/chatfile", headers=headers, timeout=120,
                         json={"filename": "note.txt", "content_base64": data}).json()
    answer = httpx.post(kb_server.url + "/v1/chatfile", headers=headers, timeout=120,
                        json={"filename": "note.txt", "content_base64": data, "question": "联系人的手机是多少？"}).json()
    quoted = summary["summary"] + answer["answer"] + "".join(c["text"] for c in answer["citations"])
    assert "13912345678" not in quoted and "lián" not in quoted and "疑問" not in quoted
    assert "[MOBILE]" in quoted


def test_model_calls_kb_search_as_a_plugin_and_the_server_runs_it(tiny_dir, bank, tmp_path):
    """A model taught to call kb_search: the server runs the search, feeds the passages back to the model,
    records the exchange with the stored response and counts it in the metrics."""
    import shutil

    from serve_support import teach

    from domainlm.serve.plugins import KB_SEARCH_TOOL
    from domainlm.serve.server import make_asgi

    item = min((i for i in bank["qa"] if i.get("lang") == "zh"), key=lambda i: len(i["question"]))
    query = item["question"]  # the model is taught to search with the user's own words
    call = json.dumps({"name": "kb_search", "arguments": {"query": query}}, ensure_ascii=False)
    model_dir = teach(shutil.copytree(tiny_dir, tmp_path / "searcher"), steps=150, lr=2e-2,
                      lessons=[([{"role": "user", "content": item["question"]}], [KB_SEARCH_TOOL], f"<tool_call>\n{call}\n</tool_call>")])
    state = make_state(model_dir, f"sqlite:///{tmp_path / 'f.db'}", kb=str(bank["kb"]))
    with LiveServer(make_asgi(state)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
        r = client.chat.completions.create(model=state.name, max_tokens=120, extra_body={"plugins": True},
                                           messages=[{"role": "user", "content": item["question"]}])
        stored = state.store.get_response(r.id)
        calls = stored["request"].get("plugin_calls")
        assert calls, f"no plugin call; the model said {r.choices[0].message}"
        assert calls[0]["name"] == "kb_search" and json.loads(calls[0]["arguments"]) == {"query": query}
        results = json.loads(calls[0]["result"])["results"]
        assert any(item["evidence"] in hit["text"] for hit in results)
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert 'domainlm_plugin_calls_total{tool="kb_search"}' in metrics
