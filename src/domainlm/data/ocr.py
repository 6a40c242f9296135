"""OCR of scans: image files (PNG/JPG/TIFF/...) and image-only PDF pages, Chinese and English.

The engine is RapidOCR (PP-OCRv4 detection + recognition, a 0/180 degree text classifier) on onnxruntime;
its models ship inside the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded at run time. One engine
is created lazily per process (the clean stage runs worker processes, and an onnxruntime session must not
cross a fork), then reused.

Every page gets a confidence: the recogniser's per-line scores, weighted by the line's length, lines it could
not read included (RapidOCR drops those silently; here they lower the page's confidence). A page below
``min_confidence`` is not guessed into the knowledge base: :func:`accept_pages` raises
:class:`~domainlm.data.ingest.Rejected` naming the page and its score, which ingest writes to
``rejected.jsonl``.

What is done to a page before and after recognition, and why:

- EXIF orientation applied, transparency put on white, greyscale/palette made RGB, a faded page's contrast
  stretched: the detector was trained on dark text on a light page.
- a huge image is scaled down (``max_side``) so one photo cannot take gigabytes of memory; a thumbnail is
  scaled up (``min_side``) so its characters reach the detector's working size.
- a page turned by 90/180/270 degrees is turned back: mostly tall text boxes mean a sideways page, and the
  0/180 classifier voting "180" on most four-character pieces of the longest lines means an upside-down
  one. RapidOCR's own per-line use of that classifier is off: on long lines of small print it flips lines
  wrongly and they vanish (see ``_run``).
- boxes are grouped into lines top to bottom, left to right; lines are joined into paragraphs (a line that
  ends short of the right margin, or a gap, or an indented next line ends a paragraph) with no space
  between Chinese characters.
- the recogniser returns half-width punctuation for Chinese text (``地址:`` for ``地址：``); between Han
  characters it is made full-width again. Digits keep theirs: ``3.80%`` and ``9:00`` stay as they are.
"""

from __future__ import annotations

import os
import re
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from domainlm.config import Section
from domainlm.data.ingest import Rejected

if TYPE_CHECKING:
    from PIL import Image as PILImage



class OcrConfig(Section):
    """Settings of OCR (the ``ocr:`` block of the clean stage's config): unknown keys are errors."""

    min_confidence: float = Field(0.90, ge=0, le=1, description="A page whose mean line confidence (weighted by "
                                  "characters) is below this is rejected, not put into the knowledge base.")
    min_chars: int = Field(4, ge=1, description="A page yielding fewer characters than this counts as blank.")
    max_side: int = Field(4000, ge=500, description="Longer side in pixels above which an image is scaled down.")
    min_side: int = Field(1000, ge=100, description="Longer side in pixels below which an image is scaled up.")
    pdf_dpi: int = Field(200, ge=72, le=600, description="Resolution at which image-only PDF pages are rendered.")
    max_pixels: int = Field(100_000_000, ge=1_000_000, description="An image with more pixels is refused unread.")
    threads: int = Field(1, ge=0, description="onnxruntime threads per engine; 0 lets onnxruntime use every core. "
                         "1 by default: the clean stage already runs one worker process per core, and an engine "
                         "on every core in each worker would oversubscribe the CPU.")


DEFAULT_CONFIG = OcrConfig()


@dataclass
class OcrLine:
    """One line of text: its boxes' text joined, and where it sits on the page (pixels)."""

    text: str
    confidence: float
    left: float
    top: float
    right: float
    bottom: float

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass
class OcrPage:
    """The text of one page in reading order (paragraphs on lines of their own) and how sure OCR was of it."""

    text: str
    confidence: float  # mean line confidence, weighted by line length; 0.0 for a page without text
    min_confidence: float  # the least sure line
    lines: int
    rotation: int = 0  # degrees the page was turned (counter-clockwise) before reading
    size: tuple[int, int] = (0, 0)  # (width, height) as read, after scaling
    paragraphs: list[str] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return sum(1 for ch in self.text if not ch.isspace())


# ------------------------------------------------------------------------------------------------ engine

_ENGINES: dict[tuple[int, int], object] = {}


def engine(threads: int = 1):
    """The process's RapidOCR engine (created on first use; keyed by pid so a forked worker makes its own)."""
    key = (os.getpid(), threads)
    if key not in _ENGINES:
        from rapidocr_onnxruntime import RapidOCR

        kwargs = {"intra_op_num_threads": threads} if threads else {}
        _ENGINES[key] = RapidOCR(**kwargs)
    return _ENGINES[key]


def engine_version() -> str:
    from importlib.metadata import version

    return f"rapidocr-onnxruntime {version('rapidocr-onnxruntime')} (PP-OCRv4)"


# ------------------------------------------------------------------------------------------------ images


def open_frames(path: str | Path, config: OcrConfig = DEFAULT_CONFIG) -> list[PILImage.Image]:
    """Every page of an image file (one per TIFF/GIF frame), decoded; Rejected for a file PIL cannot read."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below, with a reason
            img = Image.open(path)
        with img:
            pixels = img.width * img.height
            if pixels > config.max_pixels:
                raise Rejected(f"image too large ({img.width}x{img.height} pixels, limit {config.max_pixels})")
            if img.format == "JPEG":  # decode at reduced scale when the page is far bigger than we read
                scale = max(img.width, img.height) / config.max_side
                if scale >= 2:
                    img.draft("RGB", (img.width // int(scale), img.height // int(scale)))
            frames = [frame.copy() for frame in ImageSequence.Iterator(img)]
            for frame in frames:
                frame.load()
    except Rejected:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own guard, above ours when max_pixels is raised
        raise Rejected(f"image too large ({exc})") from None
    except UnidentifiedImageError:
        raise Rejected("unreadable image (not an image format PIL recognises)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated/corrupt data surfaces as these
        raise Rejected(f"unreadable image ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise Rejected("image has no frames")
    return frames


def prepare(image: PILImage.Image, config: OcrConfig = DEFAULT_CONFIG) -> PILImage.Image:
    """An RGB page with dark text on light ground, at a size the detector reads well."""
    from PIL import Image, ImageOps, ImageStat

    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        page.alpha_composite(rgba)
        image = page
    gray = image.convert("L")
    lo, hi = _percentiles(gray, 0.02, 0.98)
    if hi - lo < 120:  # faded or low-contrast scan: stretch what is there to the full range
        gray = ImageOps.autocontrast(gray, cutoff=1)
    if ImageStat.Stat(gray).mean[0] < 110:  # light text on a dark page (a negative)
        gray = ImageOps.invert(gray)
    image = gray.convert("RGB")
    longest = max(image.size)
    if longest > config.max_side:
        ratio = config.max_side / longest
    elif longest < config.min_side:  # a thumbnail; a long thin strip of a page is not scaled
        ratio = config.min_side / longest
    else:
        ratio = 1.0
    if ratio != 1.0:
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def _percentiles(gray: PILImage.Image, low: float, high: float) -> tuple[int, int]:
    hist = gray.histogram()
    total = sum(hist)
    cum, lo, hi = 0, None, 255
    for value, count in enumerate(hist):
        cum += count
        if lo is None and cum >= low * total:
            lo = value
        if cum >= high * total:
            hi = value
            break
    return lo or 0, hi


# ------------------------------------------------------------------------------------------------ reading


def ocr_image(image: PILImage.Image | str | Path, config: OcrConfig = DEFAULT_CONFIG) -> OcrPage:
    """OCR one page: a PIL image, or the path of an image file (its first frame)."""
    if isinstance(image, (str, Path)):
        image = open_frames(image, config)[0]
    return _read_page(prepare(image, config), config)


def _read_page(page: PILImage.Image, config: OcrConfig) -> OcrPage:
    import numpy as np

    ocr = engine(config.threads)
    rotation = 0
    boxes = _run(ocr, page)
    if _mostly_vertical(boxes):  # a sideways page: its lines were detected as tall boxes
        page, rotation = page.rotate(90, expand=True), 90
        boxes = _run(ocr, page)
    if boxes and _mostly_upside_down(ocr, np.asarray(page), boxes):
        page, rotation = page.rotate(180, expand=True), (rotation + 180) % 360
        boxes = _run(ocr, page)
    # A line the recogniser could not read (score below RECOGNISED) is left out of the text but not out of the
    # confidence: it counts with the characters its box would hold, so a page cannot lose lines silently.
    read = [b for b in boxes if b[2] >= RECOGNISED and b[1].strip()]
    lines = group_lines(read)
    paragraphs = join_paragraphs(lines)
    text = "\n".join(paragraphs)
    if sum(1 for ch in text if not ch.isspace()) < config.min_chars:
        return OcrPage(text="", confidence=0.0, min_confidence=0.0, lines=0, rotation=rotation, size=page.size)
    weights = [max(len(t.strip()), round(_box_w(box) / max(1.0, _box_h(box)))) for box, t, _ in boxes]
    confidence = sum(w * score for w, (_, _, score) in zip(weights, boxes, strict=True)) / max(1, sum(weights))
    return OcrPage(text=text, confidence=round(confidence, 4), min_confidence=round(min(b[2] for b in boxes), 4),
                   lines=len(lines), rotation=rotation, size=page.size, paragraphs=paragraphs)


RECOGNISED = 0.5  # RapidOCR's own cut-off for keeping a recognised box


def _run(ocr, page: PILImage.Image) -> list[tuple[list, str, float]]:
    """Every detected box with its text and score, unfiltered. The engine's own 0/180 line classifier is off:
    it squeezes a whole line into 192x48 pixels, and on long lines of small text it wrongly flips them (the
    recogniser then reads nothing and the line vanishes). Orientation is decided per page instead."""
    import numpy as np

    result, _ = ocr(np.ascontiguousarray(np.asarray(page)), use_cls=False, text_score=0.0, box_thresh=0.5,
                    unclip_ratio=1.6)  # grey in RGB: channel order does not matter; thresholds are the defaults
    return [(box, text, float(score)) for box, text, score in (result or [])]


def _mostly_vertical(boxes: list) -> bool:
    """Most elongated boxes stand upright: the page lies on its side (Chinese set vertically is rare in the
    documents we read, and is read as turned)."""
    long = [(w, h) for w, h in ((_box_w(b[0]), _box_h(b[0])) for b in boxes) if max(w, h) > 2 * min(w, h)]
    return bool(long) and sum(1 for w, h in long if h > w) > len(long) / 2


def _mostly_upside_down(ocr, array, boxes: list, sample: int = 12) -> bool:
    """Ask the engine's 0/180 classifier about pieces of the longest lines, each about four characters wide (the
    shape it was trained on); most confident votes say 180 -> the page is upside down."""
    import numpy as np

    longest = sorted(boxes, key=lambda b: -_box_w(b[0]))[:sample]
    crops = ocr.get_crop_img_list(array.copy(), [np.array(b[0], dtype=np.float32) for b in longest])
    pieces = []
    for crop in crops:
        height, width = crop.shape[:2]
        step = max(1, 4 * height)
        pieces += [crop[:, x:x + step] for x in range(0, max(1, width - step // 2), step)][:4]
    _, labels, _ = ocr.text_cls(pieces)
    votes = [label for label, score in labels if score > 0.9]
    return bool(votes) and votes.count("180") > len(votes) / 2


def _box_w(box) -> float:
    return max(p[0] for p in box) - min(p[0] for p in box)


def _box_h(box) -> float:
    return max(p[1] for p in box) - min(p[1] for p in box)


def group_lines(boxes: list[tuple[list, str, float]]) -> list[OcrLine]:
    """Boxes -> lines, top to bottom; boxes whose vertical middles fall within one another's band share a line,
    and within a line they are read left to right."""
    items = []
    for box, text, score in boxes:
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        items.append(OcrLine(text=text.strip(), confidence=score, left=min(xs), top=min(ys), right=max(xs),
                             bottom=max(ys)))
    items.sort(key=lambda x: (x.top + x.bottom) / 2)
    rows: list[list[OcrLine]] = []
    for item in items:
        middle = (item.top + item.bottom) / 2
        if rows:
            last = rows[-1]
            top = statistics.fmean(x.top for x in last)
            bottom = statistics.fmean(x.bottom for x in last)
            if top <= middle <= bottom and abs(middle - (top + bottom) / 2) < 0.5 * max(bottom - top, item.height):
                last.append(item)
                continue
        rows.append([item])
    lines = []
    for row in rows:
        row.sort(key=lambda x: x.left)
        text = row[0].text
        for prev, item in zip(row, row[1:], strict=False):
            text = join_text(text, item.text, gap=item.left - prev.right > prev.height)
        weights = [max(1, len(x.text)) for x in row]
        lines.append(OcrLine(text=text, confidence=sum(w * x.confidence for w, x in zip(weights, row, strict=True)) / sum(weights),
                             left=min(x.left for x in row), top=min(x.top for x in row),
                             right=max(x.right for x in row), bottom=max(x.bottom for x in row)))
    return lines


_END = tuple("。！？：；…”」』）)!?:;")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"


def join_paragraphs(lines: list[OcrLine]) -> list[str]:
    """Lines -> paragraphs. A wrapped line runs to the right margin; a line that stops short of it (and ends a
    sentence), a vertical gap of half a line more than the usual line pitch, or an indented next line starts a
    new paragraph. Chinese joins with no space."""
    if not lines:
        return []
    left = min(x.left for x in lines)
    right = max(x.right for x in lines)
    height = statistics.median(x.height for x in lines)
    # Line pitch (top to top), not the gap between boxes: box heights vary with the glyphs on the line.
    pitch = statistics.median([b.top - a.top for a, b in zip(lines, lines[1:], strict=False)] or [2 * height])
    paragraphs = [normalise_punctuation(lines[0].text)]
    for prev, line in zip(lines, lines[1:], strict=False):
        short = prev.right < right - 1.5 * height
        gap = line.top - prev.top > 1.5 * pitch
        indented = line.left > left + 1.2 * height  # a wrapped line goes back to the margin; a new one is indented
        ended = prev.text.endswith(_END)
        text = normalise_punctuation(line.text)
        if gap or indented or (short and ended):
            paragraphs.append(text)
        elif short and not ended and line.left <= left + 0.5 * height and len(prev.text) < 30:
            paragraphs.append(text)  # a short heading-like line without punctuation
        else:
            paragraphs[-1] = join_text(paragraphs[-1], text)
    return paragraphs


def join_text(a: str, b: str, gap: bool = False) -> str:
    """Join two pieces of one line or paragraph: no space next to a CJK character, one space between Latin words."""
    if not a or not b:
        return a + b
    if _is_cjk(a[-1]) or _is_cjk(b[0]):
        return a + b
    if a[-1] == "-" and a[-2:-1].isalpha() and b[0].islower():  # an English word hyphenated at the line end
        return a[:-1] + b
    if a[-1].isdigit() and b[0].isdigit() and not gap:  # a number wrapped mid-way (Chinese typesetting does)
        return a + b
    return a + " " + b if (gap or a[-1].isalnum() or a[-1] in ",.;:!?)%") else a + b


def _is_cjk(ch: str) -> bool:
    return bool(re.match(f"[{_HAN}\u3000-\u303f\uff00-\uffef]", ch))


_FULL = {",": "，", ":": "：", ";": "；", "?": "？", "!": "！", "(": "（", ")": "）"}
_HALF_AFTER_HAN = re.compile(f"(?<=[{_HAN}])\\s*([,:;?!)])")
_HALF_BEFORE_HAN = re.compile(f"([,:;?!(])\\s*(?=[{_HAN}])")
_PERIOD = re.compile(f"(?<=[{_HAN}])\\.(?=[{_HAN}]|$)")
_SPACE_BETWEEN_HAN = re.compile(f"(?<=[{_HAN}，。：；？！、）])\\s+(?=[{_HAN}（])")


_WIDE_ALNUM = {chr(c): chr(c - 0xFEE0) for c in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]}
_WIDE_ALNUM["％"] = "%"
_WIDE_BETWEEN_DIGITS = re.compile(r"(?<=\d)([：．。，])(?=\d)")
_NARROW = {"：": ":", "．": ".", "。": ".", "，": ","}


def normalise_punctuation(text: str) -> str:
    """Half-width punctuation next to Han characters becomes full-width, as Chinese is written; digits keep
    theirs (``3.80%``, ``9:00``, ``1,000``: a full-width mark the recogniser put between digits is narrowed),
    and so does English text. Full-width letters and digits become ASCII."""
    text = text.translate(str.maketrans(_WIDE_ALNUM))
    text = _WIDE_BETWEEN_DIGITS.sub(lambda m: _NARROW[m.group(1)], text)
    text = _HALF_AFTER_HAN.sub(lambda m: _FULL[m.group(1)], text)
    text = _HALF_BEFORE_HAN.sub(lambda m: _FULL[m.group(1)] if not _digit_colon(m) else m.group(0), text)
    text = _PERIOD.sub("。", text)
    return _SPACE_BETWEEN_HAN.sub("", text)


def _digit_colon(m: re.Match) -> bool:
    """Keep ``9:00`` style: a colon with digits on its left is a time or ratio, not Chinese punctuation."""
    start = m.start()
    return m.group(1) == ":" and start > 0 and m.string[start - 1].isdigit()


# ------------------------------------------------------------------------------------------------ documents


def accept_pages(pages: list[OcrPage], config: OcrConfig = DEFAULT_CONFIG, numbers: list[int] | None = None
                 ) -> tuple[str, dict]:
    """``(text, meta)`` of OCR'd pages, or Rejected when any page with text is below ``min_confidence`` or no
    page has text. ``numbers`` are the 1-based page numbers to name in reasons (default 1..n)."""
    numbers = numbers or list(range(1, len(pages) + 1))
    read = [(n, p) for n, p in zip(numbers, pages, strict=True) if p.text]
    if not read:
        where = f"page {numbers[0]}" if len(numbers) == 1 else f"{len(numbers)} pages"
        raise Rejected(f"OCR found no text ({where})")
    low = [(n, p) for n, p in read if p.confidence < config.min_confidence]
    if low:
        n, page = min(low, key=lambda item: item[1].confidence)
        more = f"; {len(low)} of {len(pages)} pages below" if len(low) > 1 else ""
        raise Rejected(f"OCR confidence {page.confidence:.2f} below {config.min_confidence:.2f} (page {n}){more}")
    text = "\n\n".join(p.text for _, p in read)
    meta = {"ocr": {"engine": engine_version(), "pages": [
        {"page": n, "confidence": p.confidence, "min_confidence": p.min_confidence, "lines": p.lines,
         "rotation": p.rotation} for n, p in zip(numbers, pages, strict=True)],
        "confidence": round(min(p.confidence for _, p in read), 4)}}
    return text, meta


def read_image(path: str | Path, config: OcrConfig = DEFAULT_CONFIG) -> tuple[str, dict]:
    """``(text, meta)`` of an image file, every frame a page; raises Rejected (corrupt file, no text, low confidence)."""
    frames = open_frames(path, config)
    pages = [ocr_image(frame, config) for frame in frames]
    text, meta = accept_pages(pages, config)
    meta["pages"] = len(pages)
    return text, meta


def ocr_pdf_pages(path: str | Path, page_indexes: list[int], config: OcrConfig = DEFAULT_CONFIG) -> list[OcrPage]:
    """OCR the given 0-based pages of a PDF, rendered with pdfium at ``pdf_dpi`` (no poppler needed)."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise Rejected(f"unreadable PDF ({exc})") from None
    try:
        out = []
        for index in page_indexes:
            if not 0 <= index < len(pdf):
                raise Rejected(f"PDF has no page {index + 1} (it has {len(pdf)})")
            page = pdf[index]
            scale = config.pdf_dpi / 72
            width, height = page.get_size()
            if width * height * scale * scale > config.max_pixels:
                scale = (config.max_pixels / (width * height)) ** 0.5
            image = page.render(scale=scale, grayscale=True).to_pil()
            out.append(ocr_image(image, config))
        return out
    finally:
        pdf.close()


def fill_scanned_pages(path: str | Path, page_texts: list[str], config: OcrConfig = DEFAULT_CONFIG
                       ) -> tuple[list[str], dict]:
    """A PDF's per-page text-layer texts with every empty page OCR'd: ``(texts, meta)``. Rejected when an
    OCR'd page is below ``min_confidence`` (naming it), or when neither the text layer nor OCR gives any text.
    ``meta`` is ``{}`` when every page had a text layer (nothing was OCR'd)."""
    blank = [i for i, text in enumerate(page_texts) if not text.strip()]
    if not blank:
        return list(page_texts), {}
    pages = ocr_pdf_pages(path, blank, config)
    if any(text.strip() for text in page_texts) and not any(p.text for p in pages):
        return list(page_texts), {}  # the empty pages are blank paper, not scans
    _, meta = accept_pages(pages, config, numbers=[i + 1 for i in blank])
    texts = list(page_texts)
    for index, page in zip(blank, pages, strict=True):
        texts[index] = page.text
    return texts, meta
