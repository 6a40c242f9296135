"""Scans are read: image files and image-only PDF pages go through OCR (models shipped in the wheel), each
page with a confidence; a page too poor to trust and a corrupt file become rejections with a reason.

OCR costs seconds a page, so each page is read once (module fixtures) and pages are kept small.
"""

import io
import json
import random
import re
from pathlib import Path

import pytest
from PIL import Image

from domainlm.data import ocr
from domainlm.data.ingest import Rejected
from domainlm.errors import DomainlmError
from domainlm.sample.scans import LATIN_FONT, Typeface, degrade, notice_text, render_page, scan_qa_items, scanned_notice
from domainlm.sample.world import build_world

# Real text (not the sample's vocabulary) drawn with the shipped subset fonts: it uses only characters they
# have. A rate with a decimal point, a time with a colon and a phone number must come back intact.
RATE = "本产品年利率为3.80%，到期一次性还本付息。"
HOURS = "海港银行深圳南山支行营业时间调整为9:00至17:30。"
HOTLINE = "海港银行客服热线号码为400-818-2368。"


def _page(*paragraphs: str, size: int = 30) -> Image.Image:
    return render_page([("para", p) for p in paragraphs], width=1000, size=size, top=60, margin=60)


@pytest.fixture(scope="module")
def notice():
    world = build_world(random.Random("0/world"), 6, 7)
    return scanned_notice(world.branches[6], random.Random("0/scans"))


@pytest.fixture(scope="module")
def notice_page(notice):
    return ocr.ocr_image(Image.open(io.BytesIO(notice.png)))


def test_png_notice_is_read_with_its_facts(notice, notice_page):
    assert notice_page.confidence >= ocr.DEFAULT_CONFIG.min_confidence
    assert notice_page.min_confidence <= notice_page.confidence
    for fact in notice.facts:  # date, address and business hours, exactly as the world states them
        assert fact["value"] in notice_page.text, (fact["value"], notice_page.text)
    paragraphs = notice_page.text.split("\n")
    assert paragraphs[0] == notice.title  # reading order: the title first, alone on its line
    assert paragraphs[-1].startswith("2025年")  # and the signature date last
    assert "：" in paragraphs[1] and "," not in notice_page.text  # Chinese punctuation full-width


def test_sample_scan_is_deterministic_and_asks_about_its_facts(notice):
    world = build_world(random.Random("0/world"), 6, 7)
    again = scanned_notice(world.branches[6], random.Random("0/scans"))
    assert again.png == notice.png and notice.png.startswith(b"\x89PNG")
    assert len(notice.png) < 1_000_000
    items = scan_qa_items(notice, random.Random(0))
    assert 2 <= len(items) <= 3
    for item in items:
        assert item["task"] == "knowledge_qa" and item["type"] == "qa" and item["doc_id"] == notice.doc_id
        assert item["answer"] in notice.text and item["answer"] in item["evidence"]
        assert notice.facts[0]["product"] in item["question"]
    assert notice.record["format"] == "png" and notice.record["text"] == notice.text


def test_every_branch_of_a_large_world_prints_with_the_shipped_fonts():
    world = build_world(random.Random("7/world"), 10, 18)  # every city and road of the world's pools
    face = Typeface(20)
    for number, branch in enumerate(world.branches, start=1):
        notice = notice_text(branch, random.Random(number), number)
        assert not face.missing(notice.text), branch.name("zh")
    with pytest.raises(DomainlmError, match="lack characters .*鼹"):
        render_page([("para", "这一页有字库里没有的字：鼹")])


@pytest.fixture(scope="module")
def two_page_pdf(tmp_path_factory):
    """An image-only PDF: two rendered pages and no text layer, the second turned sideways."""
    first = degrade(_page(RATE, HOURS), random.Random(1))
    second = degrade(_page(HOTLINE), random.Random(2)).rotate(90, expand=True)
    path = tmp_path_factory.mktemp("pdf") / "scan.pdf"
    first.convert("RGB").save(path, save_all=True, append_images=[second.convert("RGB")], resolution=150)
    return path


def test_image_only_pdf_is_read_page_by_page(two_page_pdf):
    from pypdf import PdfReader

    assert all(not (p.extract_text() or "").strip() for p in PdfReader(two_page_pdf).pages)  # truly no text layer
    texts, meta = ocr.fill_scanned_pages(two_page_pdf, ["", ""])  # both pages lack a text layer: both OCR'd
    first, second = texts
    assert RATE in first and HOURS in first and first.index(RATE) < first.index(HOURS)
    assert HOTLINE in second
    pages = meta["ocr"]["pages"]
    assert [p["page"] for p in pages] == [1, 2] and pages[1]["rotation"] in (90, 270)
    assert min(p["confidence"] for p in pages) == meta["ocr"]["confidence"] >= ocr.DEFAULT_CONFIG.min_confidence


def test_pdf_with_a_text_layer_is_not_ocrd(two_page_pdf):
    assert ocr.fill_scanned_pages(two_page_pdf, ["text", "more text"]) == (["text", "more text"], {})
    with pytest.raises(Rejected, match="no page 5"):
        ocr.ocr_pdf_pages(two_page_pdf, [4])


def test_multi_frame_tiff_greyscale_low_contrast_and_upside_down(tmp_path):
    faded = _page(RATE).point(lambda v: 150 + v * 70 // 255)  # grey text on grey paper
    flipped = _page(HOTLINE).rotate(180)
    path = tmp_path / "scan.tiff"
    faded.save(path, save_all=True, append_images=[flipped])
    text, meta = ocr.read_image(path)
    assert meta["pages"] == 2 and [p["rotation"] for p in meta["ocr"]["pages"]] == [0, 180]
    assert text == RATE + "\n\n" + HOTLINE


def test_low_quality_scan_is_rejected_with_its_confidence(tmp_path):
    page = degrade(_page(RATE, HOURS, HOTLINE, size=26), random.Random(3), blur=2.0, noise=30)
    path = tmp_path / "blurred.png"
    page.save(path)
    with pytest.raises(Rejected, match=r"^OCR confidence 0\.\d\d below 0\.90 \(page 1\)$"):
        ocr.read_image(path)
    assert ocr.read_image(path, ocr.OcrConfig(min_confidence=0.05))[1]["ocr"]["confidence"] < 0.90


@pytest.mark.parametrize("data, reason", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "unreadable image"),
    (b"this is not an image", "unreadable image (not an image format PIL recognises)"),
])
def test_corrupt_image_is_rejected(tmp_path, data, reason):
    path = tmp_path / "broken.png"
    path.write_bytes(data)
    with pytest.raises(Rejected, match=reason.replace("(", r"\(").replace(")", r"\)")):
        ocr.read_image(path)


def test_truncated_png_and_blank_page_are_rejected(tmp_path, notice):
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(notice.png[:4000])
    with pytest.raises(Rejected, match="unreadable image .*truncated"):
        ocr.read_image(truncated)
    blank = tmp_path / "blank.png"
    Image.new("L", (900, 600), 250).save(blank)
    with pytest.raises(Rejected, match=r"OCR found no text \(page 1\)"):
        ocr.read_image(blank)


def test_huge_image_is_scaled_down_and_oversized_refused(tmp_path):
    big = Image.new("L", (9000, 300), 255)
    big.paste(_page(HOTLINE, size=60).crop((0, 0, 1000, 200)).resize((3000, 600)).crop((0, 0, 3000, 300)), (0, 0))
    prepared = ocr.prepare(big)
    assert max(prepared.size) == ocr.DEFAULT_CONFIG.max_side
    path = tmp_path / "huge.png"
    Image.new("1", (12000, 12000), 1).save(path)
    with pytest.raises(Rejected, match=r"image too large \(12000x12000 pixels"):
        ocr.read_image(path, ocr.OcrConfig(max_pixels=100_000_000))


@pytest.mark.parametrize("raw, expected", [
    ("地址:深圳市南山区,营业时间9:00至17:30", "地址：深圳市南山区，营业时间9:00至17:30"),
    ("年利率为3.80%,手续费1,000元", "年利率为3.80%，手续费1,000元"),
    ("年利率为３．８０％", "年利率为3.80%"),
    ("营业时间9：00至17：30", "营业时间9:00至17:30"),
    ("特此公告.", "特此公告。"),
    ("请注意(重要)事项", "请注意（重要）事项"),
    ("Fees: CNY 5.00, see p. 3.", "Fees: CNY 5.00, see p. 3."),
    ("海港 银行", "海港银行"),
])
def test_punctuation_is_normalised_between_han_only(raw, expected):
    assert ocr.normalise_punctuation(raw) == expected


def _line(text, left, top, right, height=30, confidence=0.99):
    return ocr.OcrLine(text=text, confidence=confidence, left=left, top=top, right=right, bottom=top + height)


def test_lines_are_ordered_and_joined_into_paragraphs():
    # Two boxes of one slightly skewed line given right-to-left, then a wrapped paragraph, then a new indented one.
    boxes = [
        ([[500, 12], [900, 8], [900, 40], [500, 44]], "第二段", 0.9),
        ([[100, 10], [480, 10], [480, 42], [100, 42]], "第一段", 0.99),
        ([[100, 60], [900, 60], [900, 90], [100, 90]], "这一行很长一直写到右边距", 0.98),
        ([[100, 100], [400, 100], [400, 130], [100, 130]], "然后结束。", 0.97),
        ([[160, 140], [900, 140], [900, 170], [160, 170]], "新的段落缩进开始", 0.96),
    ]
    lines = ocr.group_lines(boxes)
    assert [x.text for x in lines] == ["第一段第二段", "这一行很长一直写到右边距", "然后结束。", "新的段落缩进开始"]
    assert ocr.join_paragraphs(lines) == ["第一段第二段这一行很长一直写到右边距然后结束。", "新的段落缩进开始"]
    english = [_line("The fee is charged per trans-", 100, 10, 900), _line("action, see below.", 100, 50, 500)]
    assert ocr.join_paragraphs(english) == ["The fee is charged per transaction, see below."]
    wrapped_number = [_line("最高额度为1", 100, 10, 900), _line("000000元。", 100, 50, 300)]
    assert ocr.join_paragraphs(wrapped_number) == ["最高额度为1000000元。"]


def test_engine_is_created_once_per_process():
    assert ocr.engine() is ocr.engine()


DROID = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


def test_long_lines_of_small_print_are_not_lost(shared_benchmarks):
    """RapidOCR's own 0/180 line classifier flips some long lines of small print; the recogniser then reads
    nothing and the engine drops the line without a word. Here every line of a real passage must come back."""
    if not DROID.is_file():
        pytest.skip(f"{DROID} missing (apt-get install fonts-droid-fallback)")
    data = json.loads((shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))["data"]
    passage = next(p["context"] for d in data for p in d["paragraphs"] if p["context"].startswith("叶乔波"))
    text = re.sub(r"\s+", "", passage[:passage.index("2枚银牌。") + len("2枚银牌。")])
    page = render_page([("para", text)], width=1240, size=16, fonts=(DROID, LATIN_FONT), margin=100, top=100)
    read = ocr.ocr_image(page).text.replace("\n", "")
    assert abs(len(read) - len(text)) <= 0.02 * len(text)  # a lost line is ~70 characters of 290
    clauses = [c for c in re.split(r"[，。、（）]", text) if c]
    assert sum(c in read for c in clauses) >= 0.9 * len(clauses)
