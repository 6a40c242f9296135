"""The chat page in headless Chromium: ask, watch the streamed answer and its citations, rate it, find the rating in the store.

Needs Debian's chromium (/usr/bin/chromium) and the playwright Python package; skipped cleanly without them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_support import KEY, LiveServer, make_state

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page_server(tiny_dir, tmp_path_factory):
    from domainlm.io import read_jsonl
    from domainlm.kb import KBConfig, build_kb
    from domainlm.sample import generate_sample
    from domainlm.serve.server import make_asgi

    root = tmp_path_factory.mktemp("page")
    sample = generate_sample(root / "sample", seed=0, size="tiny")
    docs = [{"id": d["id"], "text": d["text"], "source": d["path"], "meta": {"title": d["title"]}}
            for d in read_jsonl(sample / "truth" / "documents.jsonl")]
    build_kb(docs, root / "kb", KBConfig(embedder="none"))
    state = make_state(tiny_dir, f"sqlite:///{root / 'f.db'}", kb=str(root / "kb"))
    with LiveServer(make_asgi(state)) as server:
        server.state = state
        server.qa = read_jsonl(sample / "tasks" / "eval" / "knowledge_qa.jsonl")
        server.sample = sample
        yield server


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def test_chat_stream_citations_rating_and_correction(page_server, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The key travels in the URL fragment, which the browser never sends to the server.
    page.goto(page_server.url + f"/#key={KEY}")
    page.wait_for_function("document.getElementById('model-name').textContent === 'tiny'")
    # The server has a knowledge base (--kb): the KB switch starts on. Off for the plain question first.
    page.wait_for_function("document.getElementById('use-kb').checked === true")
    page.uncheck("#use-kb")

    # 1. a plain question: the model's streamed answer appears piece by piece, then the rating controls.
    page.evaluate("""() => {
        window.__updates = 0;
        new MutationObserver((ms) => { for (const m of ms) if (m.target.classList && m.target.classList.contains('content')
            && m.target.parentElement.classList.contains('assistant')) window.__updates++; })
          .observe(document.getElementById('log'), {childList: true, subtree: true});
    }""")
    page.fill("#prompt", "你好")
    page.press("#prompt", "Enter")
    reply = page.locator(".msg.assistant").nth(0)
    reply.locator(".thumb-up").wait_for()
    assert reply.locator(".content").inner_text() == "您好，我是海港银行的智能助手。"
    assert page.evaluate("window.__updates") > 3  # streamed, not one final blob

    # 2. a knowledge-base question: the answer carries citations that open to show the source text.
    item = page_server.qa[0]
    page.check("#use-kb")
    page.fill("#prompt", item["question"])
    page.click("#send")
    grounded = page.locator(".msg.assistant").nth(1)
    grounded.locator(".thumb-down").wait_for()
    assert item["answer"] in grounded.locator(".content").inner_text()
    first = grounded.locator(".citations li details").first
    first.locator("summary").click()
    assert item["evidence"] in grounded.locator(".citations").inner_text()

    # 3. ratings and a suggested better answer land in the store under the right response ids.
    reply.locator(".thumb-up").click()
    reply.locator(".feedback-status").filter(has_text="saved").wait_for()
    grounded.locator(".suggest").click()
    grounded.locator(".better textarea").fill("答：2元。")
    grounded.locator(".better button").click()
    grounded.locator(".feedback-status").filter(has_text="correction").wait_for()
    ids = [reply.get_attribute("data-response-id"), grounded.get_attribute("data-response-id")]
    rows = {f.response_id: f for f in page_server.state.store.iter_feedback()}
    assert rows[ids[0]].rating == "up" and rows[ids[0]].response == "您好，我是海港银行的智能助手。"
    assert rows[ids[1]].rating == "down" and rows[ids[1]].correction == "答：2元。"
    assert not errors, errors


def test_chatfile_upload_from_the_page(page_server, browser):
    page = browser.new_page()
    page.goto(page_server.url + f"/#key={KEY}")
    page.wait_for_function("document.getElementById('model-name').textContent === 'tiny'")
    from domainlm.io import read_jsonl

    truth = {d["id"]: d["text"] for d in read_jsonl(page_server.sample / "truth" / "documents.jsonl")}["notice-001-zh"]
    page.set_input_files("#file", str(page_server.sample / "docs" / "notice-001-zh.md"))
    page.click("#file-send")
    # The reply bubble appears only once the upload is sent: wait for it to exist, then for its text.
    page.wait_for_function("(() => { const el = document.querySelector('.msg.assistant .content');"
                           " return el !== null && el.textContent !== '…'; })()", timeout=120_000)
    summary = page.locator(".msg.assistant .content").first.inner_text()
    # An extractive summary: its opening sentence is taken from the document.
    assert len(summary) > 10 and summary.split("。")[0] in truth


def test_wrong_key_shows_an_error_not_a_blank_page(page_server, browser):
    page = browser.new_page()
    page.goto(page_server.url + "/#key=sk-wrong-123456789")
    page.wait_for_function("document.getElementById('model-name').textContent.includes('API key')")
    assert "invalid API key" in page.inner_text("#model-name")
