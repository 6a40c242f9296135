"""A scanned notice for the sample domain: a branch notice printed, scanned (slightly turned, blurred, on
grey paper with noise) and saved as PNG, plus eval questions that only OCR of it can answer.

The notice says what :func:`domainlm.sample.documents.notice` says for a branch (moving date, new address,
business hours), using the world's values and the attribute's own sentence templates. It is rendered with
subsets of Droid Sans Fallback (Chinese) and Roboto (ASCII: Droid Sans Fallback has no Latin glyphs) shipped in
``sample/fonts/`` (both Apache-2.0), so the sample never depends on the fonts of the machine it runs on.
Everything is drawn from the given ``random.Random``: same seed, same PNG.

The branch should be one without a text notice (else the facts are answerable without OCR). Wiring, in
``generate.build_sample``::

    scan = scanned_notice(world.branches[p["notices"]], rng("scans"))   # world built with notices + 1 branches
    files[scan.path] = scan.png; truth documents/facts += scan.record / scan.facts
    eval knowledge_qa items += scan_qa_items(scan, rng("scan-tasks"))
"""

from __future__ import annotations

import functools
import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from domainlm.errors import DomainlmError
from domainlm.sample.phrasings import QA
from domainlm.sample.world import Entity

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL import ImageFont

FONTS_DIR = Path(__file__).parent / "fonts"
CJK_FONT = FONTS_DIR / "DroidSansFallback-sample.ttf"
LATIN_FONT = FONTS_DIR / "Roboto-Regular-ascii.ttf"

_LEAD = "尊敬的客户：为进一步提升服务品质，我行网点将迁址营业，现将有关事项公告如下。"
_TAIL = "迁址期间给您带来的不便，敬请谅解。特此公告。"
_SIGN = "海港银行股份有限公司"
FACT_KEYS = ("opening_date", "new_address", "business_hours")


@dataclass
class ScannedNotice:
    """The scan (PNG bytes) and its truth: the text printed on it and the facts it states."""

    doc_id: str
    path: str  # relative path inside the sample folder
    title: str
    blocks: list[tuple[str, str]]  # (style, text) as printed; style: title | para | sign
    facts: list[dict] = field(default_factory=list)  # rows in the format of truth/facts.jsonl
    png: bytes = b""
    question_words: dict[str, str] = field(default_factory=dict)  # fact id -> 多少/哪里/哪天/什么 for questions

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.blocks)

    @property
    def record(self) -> dict:
        """The row of truth/documents.jsonl."""
        return {"id": self.doc_id, "path": self.path, "title": self.title, "lang": "zh", "kind": "notice",
                "products": [self.facts[0]["product"]] if self.facts else [], "format": "png", "text": self.text,
                "tables": 0}


def scanned_notice(branch: Entity, rng: random.Random, number: int = 1) -> ScannedNotice:
    """The scanned moving notice of ``branch`` (a branch of the sample world that has no text notice)."""
    notice = notice_text(branch, rng, number)
    page = degrade(render_page(notice.blocks), rng)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", optimize=True)
    notice.png = buffer.getvalue()
    return notice


def notice_text(branch: Entity, rng: random.Random, number: int = 1) -> ScannedNotice:
    """What the notice says (no image yet): the moving notice of documents.notice, in Chinese."""
    if branch.kind != "branch":
        raise DomainlmError(f"scanned notice: {branch.id} is a {branch.kind}, not a branch")
    name = branch.name("zh")
    doc_id = f"scan-notice-{number:03d}-zh"
    title = f"关于{name}迁址营业的公告"
    blocks = [("title", title), ("para", _LEAD)]
    facts, words = [], {}
    for n, key in enumerate(FACT_KEYS, start=1):
        spec = branch.specs[key]
        value = branch.value(key, "zh")
        sentence = rng.choice(spec.templates("zh")).format(name=name, v=value)
        blocks.append(("para", sentence))
        facts.append({"id": f"FS{number:02d}{n}", "product": name, "attribute": key, "value": value, "doc_id": doc_id,
                      "sentence": sentence, "attribute_label": spec.label("zh"), "lang": "zh", "category": "branch",
                      "entity_id": branch.id, "table_row": None})
        words[facts[-1]["id"]] = spec.zh_q
    month, day = branch.attrs["opening_date"]
    blocks += [("para", _TAIL), ("sign", _SIGN), ("sign", f"2025年{month}月{max(1, day - 7)}日")]
    return ScannedNotice(doc_id=doc_id, path=f"docs/{doc_id}.png", title=title, blocks=blocks, facts=facts,
                         question_words=words)


def scan_qa_items(notice: ScannedNotice, rng: random.Random, n: int = 3) -> list[dict]:
    """Up to ``n`` eval items (knowledge_qa format) asking about the notice's facts, with eval-only phrasings."""
    items = []
    templates = QA["zh"]["eval"]
    for i, fact in enumerate(notice.facts[:n]):
        template = templates[(i + rng.randrange(len(templates))) % len(templates)]
        question = template.format(name=fact["product"], label=fact["attribute_label"], q=notice.question_words[fact["id"]])
        items.append({"id": f"sample/knowledge_qa/eval/{notice.doc_id}-{i + 1}", "task": "knowledge_qa",
                      "category": "knowledge", "subcategory": "branch", "type": "qa", "question": question,
                      "choices": None, "answer": fact["value"], "doc_id": notice.doc_id, "evidence": fact["sentence"],
                      "fact_id": fact["id"], "lang": "zh"})
    return items


# ------------------------------------------------------------------------------------------------ rendering


class Typeface:
    """Droid Sans Fallback for Chinese (it has no Latin letters or digits) with Roboto for ASCII, at one size;
    text is drawn run by run on a shared baseline."""

    def __init__(self, size: int, cjk: str | Path = CJK_FONT, latin: str | Path = LATIN_FONT):
        from PIL import ImageFont

        self.size, self.paths = size, (Path(cjk), Path(latin))
        self.cjk, self.latin = ImageFont.truetype(str(cjk), size), ImageFont.truetype(str(latin), size)

    def runs(self, text: str) -> list[tuple[str, ImageFont.FreeTypeFont]]:
        out: list[tuple[str, ImageFont.FreeTypeFont]] = []
        for ch in text:
            face = self.latin if ord(ch) < 128 else self.cjk
            if out and out[-1][1] is face:
                out[-1] = (out[-1][0] + ch, face)
            else:
                out.append((ch, face))
        return out

    def length(self, text: str) -> float:
        return sum(face.getlength(run) for run, face in self.runs(text))

    def draw(self, draw, xy: tuple[float, float], text: str, fill: int = 25, stroke: int = 0) -> None:
        """Draw ``text`` with its top-left at ``xy`` (the baseline sits at 0.85 of the size below)."""
        x, baseline = xy[0], xy[1] + 0.85 * self.size
        for run, face in self.runs(text):
            draw.text((x, baseline), run, font=face, fill=fill, anchor="ls", stroke_width=stroke, stroke_fill=fill)
            x += face.getlength(run)

    def missing(self, text: str) -> set[str]:
        """Characters of ``text`` these fonts cannot draw (they would print as empty boxes)."""
        cjk, latin = (_codepoints(str(p)) for p in self.paths)
        return {ch for ch in text if not ch.isspace() and ord(ch) not in (latin if ord(ch) < 128 else cjk)}


@functools.lru_cache(maxsize=8)
def _codepoints(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(path, lazy=True).getBestCmap())


def wrap(text: str, face: Typeface, width: int, indent: str = "") -> list[str]:
    """Break text into lines no wider than ``width`` pixels, character by character (Chinese has no spaces);
    closing punctuation never starts a line."""
    lines, current = [], indent
    for ch in text:
        if face.length(current + ch) > width and current.strip() and ch not in "，。、；：！？）”":
            lines.append(current)
            current = ch
        else:
            current += ch
    if current.strip():
        lines.append(current)
    return lines


def render_page(blocks: list[tuple[str, str]], width: int = 1240, height: int | None = None, size: int = 34,
                fonts: tuple[str | Path, str | Path] = (CJK_FONT, LATIN_FONT), margin: int = 130,
                top: int = 170) -> PILImage.Image:
    """A clean page (A4 width at 150 dpi by default): centred title, indented paragraphs, right-aligned
    signature lines. ``height`` None: as tall as the text plus the top margin (smaller files); text that
    runs past a given height is cut off."""
    from PIL import Image, ImageDraw

    body, title = Typeface(size, *fonts), Typeface(round(size * 1.35), *fonts)
    missing = body.missing("".join(text for _, text in blocks))
    if missing:
        raise DomainlmError(f"scan fonts {fonts[0]} / {fonts[1]} lack characters {''.join(sorted(missing))}")
    page = Image.new("L", (width, height or 20 * width), 255)
    draw = ImageDraw.Draw(page)
    y = top
    for style, text in blocks:
        if style == "title":
            for line in wrap(text, title, width - 2 * margin):
                title.draw(draw, ((width - title.length(line)) / 2, y), line, fill=20, stroke=1)
                y += round(title.size * 1.6)
            y += size
        elif style == "sign":
            body.draw(draw, (width - margin - body.length(text), y), text)
            y += round(size * 1.7)
        else:
            for line in wrap(text, body, width - 2 * margin, indent="\u3000\u3000"):
                body.draw(draw, (margin, y), line)
                y += round(size * 1.7)
            y += round(size * 0.4)
        if style == "para" and text == _TAIL:
            y += size
    return page if height else page.crop((0, 0, width, y + top))


def degrade(page: PILImage.Image, rng: random.Random, angle: float | None = None, blur: float = 0.6,
            noise: float = 6.0, tint: int = 232) -> PILImage.Image:
    """What a flatbed scan does to a printed page: a small turn, a little blur, grey paper, sensor noise, a
    few specks of dust, 16 grey levels."""
    import numpy as np
    from PIL import Image, ImageFilter

    angle = rng.uniform(-1.2, 1.2) if angle is None else angle
    turned = page.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    if blur:
        turned = turned.filter(ImageFilter.GaussianBlur(blur))
    gen = np.random.default_rng(rng.getrandbits(32))
    arr = np.asarray(turned, dtype=np.float32) * (tint / 255.0)
    arr += gen.normal(0, noise, arr.shape) if noise else 0
    specks = gen.random(arr.shape) < 0.0004
    arr[specks] = gen.uniform(40, 140, int(specks.sum()))
    levels = np.clip(arr, 0, 255).astype(np.uint8) // 16 * 16 + 8  # 16 grey levels, as a 4-bit scan: small PNGs
    return Image.fromarray(levels.astype(np.uint8), mode="L")
