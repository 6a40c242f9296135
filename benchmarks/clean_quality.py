"""Web-residue cleaning quality: domainlm clean vs datatrove vs data-juicer on the same scraped-style pages.

Input: the news-portal fixtures in tests/data/fixtures/web/ (real UHGEval news articles wrapped in the
residue Chinese portals carry: gambling spam in headlines and inside sentences, gallery furniture, repeated
disclaimers, reader comments, related-article and book tails, pinyin/mojibake/markup runs). Each page has a
sidecar with the article sentences that must survive and the residue strings that must go.

Each tool reads the raw HTML with its own web path and its comparable operators:

  domainlm     `domainlm clean` (ingest's html_to_text, then the default-zh recipe without redact_pii, which
               rewrites names and numbers inside sentences on purpose)
  datatrove    Trafilatura extractor, FTFYFormatter, C4QualityFilter line rules (no terminal punctuation,
               policy/javascript lines; min_num_sentences=0 so no page is dropped whole), SymbolLinesFormatter;
               and a second row with the extractor and FTFYFormatter only (C4's terminal-punctuation rule
               knows only Latin punctuation and empties Chinese pages)
  data-juicer  clean_html_mapper, fix_unicode_mapper, clean_links_mapper, clean_copyright_mapper,
               remove_repeat_sentences_mapper, whitespace_normalization_mapper

Scores (text compared after NFKC and with whitespace removed):
  precision  share of article sentences found intact in the output (a dropped page loses all of them)
  recall     share of residue strings absent from the output, overall and per residue class

Run: python benchmarks/clean_quality.py   (peers: `pip install datatrove py-data-juicer orjson aiohttp`;
a missing peer stops the run with a message, it is never skipped). Writes benchmarks/results/clean_quality.json.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import unicodedata
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "data" / "fixtures" / "web"


def load_fixtures(folder: Path = FIXTURES) -> list[tuple[Path, dict]]:
    pages = sorted(folder.glob("*.html"))
    if not pages:
        raise SystemExit(f"clean_quality: no fixtures in {folder}")
    return [(p, json.loads(p.with_suffix(".expected.json").read_text(encoding="utf-8"))) for p in pages]


def _key(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def score(outputs: dict[str, str | None], fixtures: list[tuple[Path, dict]]) -> dict:
    """Precision/recall of one tool's outputs ({page name: text or None when the page was dropped})."""
    kept = total = 0
    removed: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    lost_examples, missed_examples = [], []
    for page, expected in fixtures:
        text = _key(outputs.get(page.name) or "")
        for sentence in expected["sentences"]:
            total += 1
            if _key(sentence) in text:
                kept += 1
            elif len(lost_examples) < 8:
                lost_examples.append(f"{page.name}: {sentence[:60]}")
        for item in expected["noise"]:
            gone = _key(item["text"]) not in text
            removed[item["class"]][0] += gone
            removed[item["class"]][1] += 1
            if not gone and len(missed_examples) < 12:
                missed_examples.append(f"{page.name} [{item['class']}]: {item['text'][:50]}")
    noise_total = sum(n for _, n in removed.values())
    return {
        "precision": round(kept / total, 4),
        "recall": round(sum(g for g, _ in removed.values()) / noise_total, 4),
        "recall_by_class": {k: round(g / n, 4) for k, (g, n) in sorted(removed.items())},
        "sentences": total,
        "noise_spans": noise_total,
        "pages_dropped": sum(1 for v in outputs.values() if v is None),
        "lost_sentences": lost_examples,
        "missed_noise": missed_examples,
    }


def run_domainlm(fixtures: list[tuple[Path, dict]], recipe: str = "default-zh") -> dict[str, str | None]:
    """``domainlm clean`` with the recipe minus ``redact_pii``: PII redaction rewrites names and numbers in
    article sentences on purpose, and the peers run no PII step here either."""
    import yaml

    from domainlm.data import clean
    from domainlm.data.recipe import load_recipe
    from domainlm.io import read_jsonl

    steps = load_recipe(recipe).to_dict()
    steps["operators"] = [op for op in steps["operators"] if op["op"] != "redact_pii"]
    with tempfile.TemporaryDirectory() as tmp:
        recipe_file = Path(tmp) / "recipe.yaml"
        recipe_file.write_text(yaml.safe_dump(steps, allow_unicode=True), encoding="utf-8")
        clean([p for p, _ in fixtures], Path(tmp) / "out", {"workers": 2, "recipe": str(recipe_file)}, force=True)
        kept = {Path(r["source"]).name: r["text"] for r in read_jsonl(Path(tmp) / "out" / "clean.jsonl")}
    return {p.name: kept.get(p.name) for p, _ in fixtures}


def _require(module: str, install: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or a peer's own dependency failing at import
        raise SystemExit(
            f"clean_quality: peer '{module}' is not usable ({type(exc).__name__}: {exc}); "
            f"install it with: pip install {install}"
        ) from None


def run_datatrove(fixtures: list[tuple[Path, dict]], c4_lines: bool = True) -> dict[str, str | None]:
    _require("datatrove", "datatrove orjson")
    _require("orjson", "orjson")
    _require("trafilatura", "trafilatura")
    from datatrove.data import Document
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import C4QualityFilter
    from datatrove.pipeline.formatters import FTFYFormatter, SymbolLinesFormatter

    steps = [Trafilatura(favour_precision=True, timeout=10.0), FTFYFormatter()]
    if c4_lines:
        steps += [C4QualityFilter(min_num_sentences=0, language="zh"), SymbolLinesFormatter()]
    docs = [Document(text=p.read_text(encoding="utf-8"), id=p.name) for p, _ in fixtures]
    stream = iter(docs)
    for step in steps:
        stream = step.run(stream, rank=0, world_size=1)
    out = {d.id: d.text for d in stream}
    return {p.name: out.get(p.name) or None for p, _ in fixtures}


def run_data_juicer(fixtures: list[tuple[Path, dict]]) -> dict[str, str | None]:
    _require("data_juicer", "py-data-juicer aiohttp")
    # clean_html_mapper imports selectolax lazily and otherwise pip-installs it in the middle of the run.
    _require("selectolax", "selectolax")
    from data_juicer.ops.mapper import (
        CleanCopyrightMapper,
        CleanHtmlMapper,
        CleanLinksMapper,
        FixUnicodeMapper,
        RemoveRepeatSentencesMapper,
        WhitespaceNormalizationMapper,
    )

    ops = [
        CleanHtmlMapper(),
        FixUnicodeMapper(),
        CleanLinksMapper(),
        CleanCopyrightMapper(),
        RemoveRepeatSentencesMapper(),
        WhitespaceNormalizationMapper(),
    ]
    batch = {"text": [p.read_text(encoding="utf-8") for p, _ in fixtures]}
    for op in ops:
        batch = op.process_batched(batch)
    return {p.name: t or None for (p, _), t in zip(fixtures, batch["text"], strict=True)}


def main() -> None:
    sets = {
        "tuned": load_fixtures(FIXTURES),
        # Other articles and other residue vocabulary, written after the rules were tuned on "tuned" (build.py).
        "heldout": load_fixtures(FIXTURES / "heldout"),
    }
    runners = (
        ("domainlm", run_domainlm),
        ("datatrove", run_datatrove),
        ("datatrove (trafilatura + ftfy only)", lambda f: run_datatrove(f, c4_lines=False)),
        ("data-juicer", run_data_juicer),
    )
    results: dict[str, dict] = {name: {} for name in sets}
    for set_name, fixtures in sets.items():
        for name, runner in runners:
            r = results[set_name][name] = score(runner(fixtures), fixtures)
            print(
                f"{set_name:8s} {name:36s} precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
                + "  ".join(f"{k} {v:.2f}" for k, v in r["recall_by_class"].items())
            )
    from importlib.metadata import version

    report = {
        "benchmark": "clean_quality",
        "fixtures": str(FIXTURES.relative_to(HERE.parent)),
        "pages": {name: len(f) for name, f in sets.items()},
        "versions": {
            name: version(dist)
            for name, dist in (
                ("domainlm", "domainlm"),
                ("datatrove", "datatrove"),
                ("data-juicer", "py-data-juicer"),
                ("trafilatura", "trafilatura"),
            )
        }
        | {"python": platform.python_version()},
        "results": results,
    }
    out = HERE / "results" / "clean_quality.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
