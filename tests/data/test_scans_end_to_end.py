"""Scans on the main road: `clean` OCRs a PNG notice and an image-only PDF, the knowledge base answers from
them with a citation, and a poor scan goes to rejected.jsonl with its confidence, not into the index."""

import io
import json
import random

import pytest
from PIL import Image

from domainlm.cli import main
from domainlm.kb import answer, build_kb, open_kb
from domainlm.kb.sources import iter_documents
from domainlm.sample.scans import degrade, render_page, scan_qa_items, scanned_notice
from domainlm.sample.world import build_world

pytest.importorskip("rapidocr_onnxruntime", reason="OCR needs domainlm[ocr] (in [all], which CI installs)")

RATE = "本产品年利率为3.80%，到期一次性还本付息。"
HOURS = "海港银行深圳南山支行营业时间调整为9:00至17:30。"


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    world = build_world(random.Random("0/world"), 6, 7)
    notice = scanned_notice(world.branches[6], random.Random("0/scans"))
    (folder / "notice.png").write_bytes(notice.png)
    page = degrade(render_page([("para", RATE), ("para", HOURS)], width=1000, size=30, top=60, margin=60),
                   random.Random(1))
    page.convert("RGB").save(folder / "rates.pdf", format="PDF", resolution=150)  # image only: no text layer
    poor = degrade(render_page([("para", RATE), ("para", HOURS)], width=1000, size=26, top=60, margin=60),
                   random.Random(3), blur=2.0, noise=30)
    poor.save(folder / "poor.png")
    return folder, notice


def test_clean_reads_scans_and_rejects_a_poor_one(scans, tmp_path):
    folder, notice = scans
    out = tmp_path / "clean"
    assert main(["clean", str(folder), "--out", str(out), "--workers", "1"]) == 0
    kept = {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line)
            for line in (out / "clean.jsonl").read_text("utf-8").splitlines()}
    assert set(kept) == {"notice.png", "rates.pdf"}
    for fact in notice.facts:
        assert fact["value"] in kept["notice.png"]["text"]
    assert "3.80%" in kept["rates.pdf"]["text"] and "9:00至17:30" in kept["rates.pdf"]["text"]
    assert kept["rates.pdf"]["meta"]["pages"] == 1
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text("utf-8").splitlines()]
    assert [r["source"].rsplit("/", 1)[-1] for r in rejected] == ["poor.png"]
    assert "OCR confidence" in rejected[0]["reason"] and "below" in rejected[0]["reason"]

    kb_dir = tmp_path / "kb"
    build_kb(list(iter_documents([out / "clean.jsonl"])), kb_dir)
    kb = open_kb(kb_dir)
    answered = 0
    for item in scan_qa_items(notice, random.Random(0)):
        top = kb.search(item["question"], k=1)[0]  # the OCR'd sentence is found and cited by its source
        assert item["evidence"] in top.text and top.source.endswith("notice.png"), (item["question"], top.text)
        reply = answer(kb, item["question"])
        answered += not reply.refused and item["answer"] in reply.answer
    assert answered >= 2  # the extractive reader may refuse an eval-only phrasing it covers too little of


def test_a_scan_added_to_a_kb_is_ocrd_too(scans, tmp_path):
    folder, notice = scans
    image = Image.open(io.BytesIO(notice.png))
    assert image.format == "PNG"
    kb_dir = tmp_path / "kb"
    assert main(["kb", "build", str(folder / "notice.png"), "--out", str(kb_dir), "--embedder", "none"]) == 0
    text = "".join(c["text"] for c in open_kb(kb_dir).chunks)
    assert all(f["value"] in text for f in notice.facts)
