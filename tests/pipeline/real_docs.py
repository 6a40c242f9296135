"""Real public Chinese text written out as a user's documents: news articles (UHGEval) and encyclopedia
passages (CMRC 2018), from ../shared/benchmarks. Not the sample domain, and not written by us."""

from __future__ import annotations

import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"
UHGEVAL = BENCHMARKS / "uhgeval" / "uhgeval_concise.dev.jsonl"
CMRC = BENCHMARKS / "cmrc2018" / "cmrc2018_dev.json"


def available() -> bool:
    return UHGEVAL.is_file() and CMRC.is_file()


def write_user_documents(folder: Path, news: int = 8, passages: int = 8, offset: int = 0) -> list[Path]:
    """``news`` articles as .txt (headline, blank line, body) and ``passages`` as .md (title heading + text)."""
    folder.mkdir(parents=True, exist_ok=True)
    written, headlines = [], set()
    with UHGEVAL.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows[offset:]:
        if len(written) >= news:
            break
        if row["headLine"] in headlines:
            continue  # upstream repeats an article with another generated continuation
        headlines.add(row["headLine"])
        body = row["newsBeginning"].strip() + "\n" + row["newsRemainder"].strip()
        path = folder / f"news_{len(written):03d}.txt"
        path.write_text(f"{row['headLine']}\n\n{body}\n", encoding="utf-8")
        written.append(path)
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    for index, entry in enumerate(data[offset:offset + passages]):
        path = folder / f"wiki_{index:03d}.md"
        path.write_text(f"# {entry['title']}\n\n{entry['paragraphs'][0]['context']}\n", encoding="utf-8")
        written.append(path)
    return written
