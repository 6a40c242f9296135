"""OCR of rendered Chinese pages: character accuracy and pages per second, domainlm (RapidOCR, PP-OCRv4, as
``domainlm.data.ocr`` runs it) side by side with Tesseract 5 + Debian's ``chi_sim`` data in the same run.

Pages: real prose, alternately a CMRC 2018 passage (Chinese Wikipedia) and a UHGEval news article, cut at a
sentence end to ~``--chars`` characters, drawn with the full Droid Sans Fallback from /usr/share/fonts (Roboto
for ASCII) at several font sizes (pixels at 150 dpi: 16 px ≈ 7.7 pt, 22 px ≈ 10.5 pt, 32 px ≈ 15 pt), then put
through three scan qualities: ``clean`` (the rendered page), ``scan`` (±1° turn, 0.6 px blur, noise σ 6, 16
grey levels — what the sample's scanned notice gets) and ``poor`` (±2°, 1.2 px blur, noise σ 15).

Accuracy = 1 − edit distance / reference length, on text with whitespace removed ("as read") and with
punctuation width folded on both sides (NFKC, 。→.; Tesseract returns half-width punctuation for Chinese).
domainlm's rows also say which pages its confidence threshold (``min_confidence``) keeps, and the accuracy of
those kept. Speed: pages / wall seconds of OCR calls, one page at a time, after one warm-up page per engine,
and CPU seconds per page (this process's threads + the tesseract child processes): on a shared, busy machine
wall time is inflated by other work, CPU time much less, and ``2 / cpu_s_per_page`` is what two single-thread
workers (the clean stage's worker processes) reach on 2 idle cores. Each engine runs twice: with its default
threads (Tesseract: OpenMP; domainlm: ``OcrConfig.threads`` 1) and with the other setting (onnxruntime on
all cores, ``threads=0``; ``OMP_THREAD_LIMIT=1``).

    python benchmarks/ocr_accuracy.py            # 3 pages per condition -> benchmarks/results/ocr_accuracy.json
    python benchmarks/ocr_accuracy.py --quick    # 1 page per condition, one size (keeps the script working)

Needs: apt-get install fonts-droid-fallback tesseract-ocr tesseract-ocr-chi-sim; pip install pytesseract.
A missing peer or font stops the run with one line saying what to install.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import sys
import time
import unicodedata
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / ".." / "shared" / "benchmarks"
CMRC = SHARED / "cmrc2018" / "cmrc2018_dev.json"
UHGEVAL = SHARED / "uhgeval" / "uhgeval_concise.dev.jsonl"
DROID = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
ROBOTO = Path("/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/Roboto-Regular.ttf")
QUALITIES = {"clean": None, "scan": (1.0, 0.6, 6.0), "poor": (2.0, 1.2, 15.0)}  # max angle, blur px, noise sigma


def fail(message: str) -> None:
    print(f"ocr_accuracy: {message}", file=sys.stderr)
    raise SystemExit(2)


def prose(n: int, chars: int, seed: int) -> list[str]:
    """n passages of real Chinese prose, alternately CMRC 2018 and UHGEval, each cut at a sentence end."""
    cmrc = [p["context"] for d in json.loads(CMRC.read_text(encoding="utf-8"))["data"] for p in d["paragraphs"]]
    news = []
    for line in UHGEVAL.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        news.append(row["newsBeginning"] + row["newsRemainder"])
    rng = random.Random(seed)
    rng.shuffle(cmrc)
    rng.shuffle(news)
    out = []
    for i in range(n):
        text = re.sub(r"\s+", "", (cmrc if i % 2 == 0 else news)[i // 2])
        sentences = re.findall(r".+?(?:[。！？]|$)", text)
        page = ""
        for sentence in sentences:
            if page and len(page) + len(sentence) > chars:
                break
            page += sentence
        out.append(page[: chars * 2])
    return out


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def accuracy(reference: str, hypothesis: str) -> float:
    ref, hyp = re.sub(r"\s+", "", reference), re.sub(r"\s+", "", hypothesis)
    return max(0.0, 1 - edit_distance(ref, hyp) / max(1, len(ref)))


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text.translate(str.maketrans({"。": ".", "、": ",", "“": '"', "”": '"', "‘": "'", "’": "'", "—": "-"}))


def render(text: str, size: int, quality: str, rng: random.Random):
    from domainlm.sample.scans import Typeface, degrade, render_page

    face = Typeface(size, DROID, ROBOTO)
    missing = face.missing(text)
    text = "".join(ch for ch in text if ch not in missing)  # what the page can show is the reference
    page = render_page([("para", text)], width=1240, size=size, fonts=(DROID, ROBOTO), margin=100, top=100)
    spec = QUALITIES[quality]
    if spec is not None:
        angle, blur, noise = spec
        page = degrade(page, rng, angle=rng.uniform(-angle, angle), blur=blur, noise=noise)
    return text, page


def run_domainlm(image, threads: int) -> tuple[str, float]:
    from domainlm.data import ocr

    page = ocr.ocr_image(image, ocr.OcrConfig(threads=threads))
    return page.text, page.confidence


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) plus its finished children (the tesseract processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_tesseract(image, threads: int | None) -> tuple[str, None]:
    import pytesseract

    if threads is None:
        os.environ.pop("OMP_THREAD_LIMIT", None)
    else:
        os.environ["OMP_THREAD_LIMIT"] = str(threads)
    return pytesseract.image_to_string(image, lang="chi_sim"), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=3, help="pages per (size, quality)")
    parser.add_argument("--sizes", default="16,22,32", help="font sizes in pixels at 150 dpi")
    parser.add_argument("--chars", type=int, default=300, help="characters of prose per page (about)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "ocr_accuracy.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.pages, args.sizes, args.chars = 1, "22", 120

    for path, what in ((CMRC, "CMRC 2018"), (UHGEVAL, "UHGEval")):
        if not path.is_file():
            fail(f"{what} text not found at {path} (the shared benchmarks folder beside this checkout)")
    if not DROID.is_file():
        fail(f"{DROID} missing: apt-get install fonts-droid-fallback")
    global ROBOTO
    if not ROBOTO.is_file():
        from domainlm.sample.scans import LATIN_FONT

        ROBOTO = LATIN_FONT  # the shipped ASCII subset of Roboto draws the same glyphs
    try:
        import pytesseract

        tesseract_version = str(pytesseract.get_tesseract_version())
        if "chi_sim" not in pytesseract.get_languages(config=""):
            fail("Tesseract has no chi_sim data: apt-get install tesseract-ocr-chi-sim")
    except ImportError:
        fail("pytesseract missing: pip install pytesseract (and apt-get install tesseract-ocr tesseract-ocr-chi-sim)")
    except pytesseract.TesseractNotFoundError:
        fail("tesseract binary missing: apt-get install tesseract-ocr tesseract-ocr-chi-sim")

    from domainlm.data import ocr

    load_at_start = os.getloadavg()
    sizes = [int(s) for s in args.sizes.split(",")]
    conditions = [(size, quality) for size in sizes for quality in QUALITIES]
    texts = prose(args.pages * len(conditions), args.chars, args.seed)
    rng = random.Random(args.seed)
    pages = []
    for c, (size, quality) in enumerate(conditions):
        for k in range(args.pages):
            reference, image = render(texts[c * args.pages + k], size, quality, rng)
            pages.append({"size": size, "quality": quality, "reference": reference, "image": image})

    engines = {
        "domainlm (RapidOCR PP-OCRv4), threads=1 (default)": lambda image: run_domainlm(image, 1),
        "domainlm (RapidOCR PP-OCRv4), threads=0 (onnxruntime: all cores)": lambda image: run_domainlm(image, 0),
        "tesseract chi_sim": lambda image: run_tesseract(image, None),
        "tesseract chi_sim, OMP_THREAD_LIMIT=1": lambda image: run_tesseract(image, 1),
    }
    threshold = ocr.DEFAULT_CONFIG.min_confidence
    rows, totals = [], {}
    for name, run in engines.items():
        run(pages[0]["image"])  # warm-up: model load / first process start, outside the timing
        seconds_all, cpu_all, results = 0.0, 0.0, []
        for page in pages:
            start, cpu_start = time.perf_counter(), cpu_seconds()
            text, confidence = run(page["image"])
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
            seconds_all += seconds
            cpu_all += cpu
            results.append({**{k: page[k] for k in ("size", "quality")}, "seconds": seconds, "confidence": confidence,
                            "acc": accuracy(page["reference"], text),
                            "acc_folded": accuracy(fold(page["reference"]), fold(text))})
            print(f"{name:66s} {page['size']:3d}px {page['quality']:6s} acc {results[-1]['acc']:.3f} "
                  f"{seconds:5.2f}s" + (f" conf {confidence:.3f}" if confidence is not None else ""), flush=True)
        totals[name] = {"pages": len(results), "seconds": round(seconds_all, 2),
                        "pages_per_s": round(len(results) / seconds_all, 3),
                        "cpu_s_per_page": round(cpu_all / len(results), 3),
                        "pages_per_s_2_cores_by_cpu": round(2 * len(results) / cpu_all, 3),
                        "acc": round(sum(r["acc"] for r in results) / len(results), 4),
                        "acc_folded": round(sum(r["acc_folded"] for r in results) / len(results), 4)}
        for size, quality in conditions:
            chosen = [r for r in results if r["size"] == size and r["quality"] == quality]
            row = {"engine": name, "size_px": size, "quality": quality, "pages": len(chosen),
                   "acc": round(sum(r["acc"] for r in chosen) / len(chosen), 4),
                   "acc_folded": round(sum(r["acc_folded"] for r in chosen) / len(chosen), 4),
                   "seconds_per_page": round(sum(r["seconds"] for r in chosen) / len(chosen), 3)}
            if chosen[0]["confidence"] is not None:
                kept = [r for r in chosen if r["confidence"] >= threshold]
                row["confidence"] = round(sum(r["confidence"] for r in chosen) / len(chosen), 4)
                row["kept"] = len(kept)
                row["acc_kept"] = round(sum(r["acc"] for r in kept) / len(kept), 4) if kept else None
            rows.append(row)

    result = {
        "benchmark": "ocr_accuracy", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/ocr_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()},
        "versions": {"rapidocr-onnxruntime": version("rapidocr-onnxruntime"), "onnxruntime": version("onnxruntime"),
                     "tesseract": tesseract_version, "pytesseract": version("pytesseract")},
        "setup": {"pages_per_condition": args.pages, "sizes_px_at_150dpi": sizes, "qualities": QUALITIES,
                  "chars_per_page": args.chars, "seed": args.seed, "font": f"{DROID.name} + {ROBOTO.name}",
                  "text": "CMRC 2018 dev passages and UHGEval dev news, alternately",
                  "domainlm_min_confidence": threshold},
        "totals": totals, "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(totals, ensure_ascii=False, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
