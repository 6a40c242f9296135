"""Exam review against a real server on 127.0.0.1: a reviewer makes an exam from a KB of CMRC 2018 prose
(Chinese Wikipedia), accepts an item, fixes one, tries an invalid fix (refused with its reasons, nothing
stored), rejects one; the accepted and fixed items are then in the feedback store (real SQLite) and in what
`domainlm feedback export` writes, and the reviewed paper exports to Markdown and DOCX without the rest.
The chat page's review panel is driven in headless Chromium at the end (skipped without it)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import pytest
from serve_support import LiveServer

USER, REVIEWER = "sk-user-0123456789", "sk-reviewer-0123456789"
CMRC = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    from domainlm.kb import KBConfig, build_kb
    from domainlm.serve.server import ServeOptions, build_state, make_asgi, resolve_keys

    if not CMRC.is_file():
        pytest.skip(f"{CMRC} is not beside this checkout")
    home = tmp_path_factory.mktemp("exam-review")
    data = json.loads(CMRC.read_text("utf-8"))["data"][:12]
    docs = [{"id": e["id"], "text": f"{e['title']}\n\n{e['paragraphs'][0]['context']}", "source": f"{e['id']}.txt",
             "meta": {}} for e in data]
    build_kb(docs, home / "kb", KBConfig(embedder="none"))
    keys_file = home / "keys.txt"
    keys_file.write_text(f"{USER}  ann\n{REVIEWER}  bo  6000  reviewer\n", encoding="utf-8")
    options = ServeOptions(model=str(tiny_dir), db=f"sqlite:///{home / 'feedback.db'}", api_keys_file=str(keys_file),
                           kb=str(home / "kb"), plugins=["exam"])
    keys, _ = resolve_keys(options)
    state = build_state(options, keys)
    with LiveServer(make_asgi(state)) as live:
        live.state, live.db = state, options.db
        yield live


def call(server, method: str, path: str, key: str = REVIEWER, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=120, **kwargs)


def exam_records(server) -> list:
    return [r for r in server.state.store.iter_feedback() if r.request.get("task") == "exam"]


def year_blank(items: list[dict], skip: str | None = None) -> tuple[dict, str] | None:
    """A cloze item and another year its passage states once, shown in no question: the reviewer's fix
    blanks that year instead of the item's key."""
    questions = [i["question"] for i in items]
    for item in items:
        if item["type"] != "cloze" or item["id"] == skip:
            continue
        passage = item["source"]["passage"]
        for year in re.findall(r"\d{4}年", passage):
            if year != item["key"] and passage.count(year) == 1 and not any(year in q for q in questions):
                return item, year
    return None


def test_only_a_reviewer_makes_and_reviews_exams(server):
    refused = call(server, "POST", "/v1/exams", key=USER, json={"n": 2})
    assert refused.status_code == 403 and "role 'reviewer'" in refused.json()["error"]["message"]
    assert call(server, "GET", "/v1/exams/exam-nope").status_code == 404


def test_review_accept_fix_reject_flow_into_the_store_and_export(server, tmp_path):
    from docx import Document

    from domainlm.cli import main

    made = call(server, "POST", "/v1/exams", json={"n": 12, "seed": 0})
    assert made.status_code == 200, made.text
    exam = made.json()
    items, exam_id = exam["items"], exam["id"]
    assert len(items) >= 6 and {i["type"] for i in items} == {"mcq", "cloze", "short"}
    assert all(i["problems"] == [] and i["review"] is None for i in items)  # made valid, nothing reviewed yet
    assert all(i["key"] in i["source"]["passage"] for i in items if i["type"] != "short")
    before = server.state.store.counts()["feedback"]

    # 1. Accept a multiple-choice item: one feedback record, the item as a question and its answer, rated up.
    mcq = next(i for i in items if i["type"] == "mcq")
    accepted = call(server, "POST", f"/v1/exams/{exam_id}/items/{mcq['id']}/review", json={"verdict": "accept"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["valid"] and accepted.json()["stored"]

    # 2. An invalid fix: a key its passage does not state, a distractor its chunk does. Refused with the
    # reasons, and nothing is stored: the item stays open.
    cloze, year = year_blank(items) or pytest.fail("no cloze item whose passage states another year")
    other_mcq = next(i for i in items if i["type"] == "mcq" and i["id"] != mcq["id"])
    in_chunk = other_mcq["source"]["passage"][:4]
    bad = call(server, "POST", f"/v1/exams/{exam_id}/items/{other_mcq['id']}/review",
               json={"verdict": "fix", "item": {"key": "1850年", "distractors": [in_chunk, *other_mcq["distractors"][1:]]}})
    assert bad.status_code == 400, bad.text
    error = bad.json()["error"]
    assert error["code"] == "invalid_item"
    assert "key not supported by its passage" in error["problems"]
    assert f"distractor {in_chunk!r} is supported by the passage" in error["problems"]
    assert "key not supported by its passage" in error["message"]
    unchanged = call(server, "POST", f"/v1/exams/{exam_id}/items/{cloze['id']}/review",
                     json={"verdict": "fix", "item": {"key": cloze["key"]}})
    assert unchanged.status_code == 400 and "the fix changes nothing (accept the item instead)" in unchanged.json()["error"]["problems"]
    assert server.state.store.counts()["feedback"] == before + 1
    assert call(server, "GET", f"/v1/exams/{exam_id}").json()["items"][items.index(other_mcq)]["review"] is None

    # 3. A valid fix: the reviewer blanks another year of the cloze's sentence; the blank follows the key.
    fixed = call(server, "POST", f"/v1/exams/{exam_id}/items/{cloze['id']}/review",
                 json={"verdict": "fix", "item": {"key": year}, "comment": "blank the year"})
    assert fixed.status_code == 200, fixed.text
    fixed_item = fixed.json()["item"]
    assert fixed_item["key"] == year and fixed_item["question"] == cloze["source"]["passage"].replace(year, "______", 1)
    assert fixed_item["id"] == cloze["id"]

    # 4. Reject one: a verdict kept with the exam, no training data.
    short = next(i for i in items if i["type"] == "short")
    assert call(server, "POST", f"/v1/exams/{exam_id}/items/{short['id']}/review",
                json={"verdict": "reject"}).json()["stored"] is False
    again = call(server, "POST", f"/v1/exams/{exam_id}/items/{short['id']}/review", json={"verdict": "accept"})
    assert again.status_code == 409 and "already reviewed (reject)" in again.json()["error"]["message"]

    view = call(server, "GET", f"/v1/exams/{exam_id}").json()
    assert view["reviewed"] == {"accept": 1, "fix": 1, "reject": 1, "open": len(items) - 3}
    assert view["items"][items.index(cloze)]["review"]["item"]["key"] == year

    # The feedback store (SQLite): two exam records, tagged with their exam, item, verdict and passage.
    records = exam_records(server)
    assert [(r.request["exam"]["item_id"], r.request["exam"]["verdict"]) for r in records] == \
        [(mcq["id"], "accept"), (cloze["id"], "fix")]
    acc, fix = records
    letter = mcq["answer"]
    assert acc.rating == "up" and acc.correction is None and acc.response == f"{letter}. {mcq['key']}"
    assert acc.request["messages"][0]["content"].startswith(mcq["question"] + "\nA. ")
    assert acc.request["exam"]["source"]["passage"] == mcq["source"]["passage"]
    assert fix.rating == "down" and fix.response == cloze["key"] and fix.correction == year
    assert fix.request["messages"][0]["content"] == fixed_item["question"]
    assert fix.comment == "exam review: fix: blank the year" and fix.user == "bo"

    # `domainlm feedback export`: the accept is a KTO positive; the fix a DPO pair and an SFT row.
    rows = {}
    for fmt in ("kto", "dpo", "sft"):
        out = tmp_path / f"{fmt}.jsonl"
        assert main(["feedback", "export", "--format", fmt, "--out", str(out), "--db", server.db]) == 0
        rows[fmt] = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert {"prompt": acc.request["messages"][0]["content"], "completion": acc.response, "label": True} in rows["kto"]
    assert {"prompt": fixed_item["question"], "chosen": year, "rejected": cloze["key"]} in rows["dpo"]
    assert {"messages": [{"role": "user", "content": fixed_item["question"]},
                         {"role": "assistant", "content": year}]} in rows["sft"]

    # The reviewed paper: the accepted and the fixed item only, the fix as fixed.
    md = call(server, "GET", f"/v1/exams/{exam_id}/export", params={"format": "md"})
    assert md.status_code == 200 and md.headers["x-exam-items"] == "2"
    assert mcq["question"] in md.text and fixed_item["question"] in md.text and cloze["question"] not in md.text
    assert short["question"] not in md.text and other_mcq["question"] not in md.text
    docx = call(server, "GET", f"/v1/exams/{exam_id}/export", params={"format": "docx"})
    assert docx.status_code == 200
    text = "\n".join(p.text for p in Document(io.BytesIO(docx.content)).paragraphs)
    assert fixed_item["question"] in text and f"答案: {year}" in text and short["question"] not in text


def test_a_fresh_exam_exports_nothing_until_reviewed(server):
    exam = call(server, "POST", "/v1/exams", json={"n": 2, "types": ["cloze"], "seed": 1}).json()
    response = call(server, "GET", f"/v1/exams/{exam['id']}/export", params={"format": "md"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "nothing_reviewed"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield b
        b.close()


def test_review_panel_accept_and_fix_in_the_browser(server, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + f"/#key={REVIEWER}")
    page.wait_for_function("document.getElementById('model-name').textContent === 'tiny'")
    page.click("#exam-toggle")
    page.fill("#exam-n", "8")
    page.fill("#exam-seed", "2")
    page.click("#exam-make")
    page.locator(".exam-item").first.wait_for(timeout=120_000)
    exam_id = page.input_value("#exam-id")
    items = call(server, "GET", f"/v1/exams/{exam_id}").json()["items"]
    assert page.locator(".exam-item").count() == len(items)

    # Accept: the item turns accepted, and its record is in the store.
    first = items[0]
    page.locator(f'.exam-item[data-item-id="{first["id"]}"] .exam-accept').click()
    page.locator(f'.exam-item.reviewed-accept[data-item-id="{first["id"]}"]').wait_for()

    # Fix: an invalid key shows the server's reason under the item; then a valid one is saved.
    cloze, year = year_blank(items, skip=first["id"]) or pytest.fail("no cloze item whose passage states another year")
    row = page.locator(f'.exam-item[data-item-id="{cloze["id"]}"]')
    row.locator(".exam-fix").click()
    row.locator('.exam-fix-form [name="key"]').fill("1850年")
    row.locator(".exam-save").click()
    row.locator(".exam-error .exam-problem", has_text="key not supported by its passage").wait_for()
    row.locator('.exam-fix-form [name="key"]').fill(year)
    row.locator(".exam-save").click()
    fixed = page.locator(f'.exam-item.reviewed-fix[data-item-id="{cloze["id"]}"]')
    fixed.wait_for()
    assert fixed.locator(".exam-answer").inner_text() == f"答案 / key: {year}"

    records = [r for r in exam_records(server) if r.request["exam"]["id"] == exam_id]
    assert [(r.request["exam"]["item_id"], r.rating, r.correction) for r in records] == \
        [(first["id"], "up", None), (cloze["id"], "down", year)]
    assert errors == []
    page.close()
