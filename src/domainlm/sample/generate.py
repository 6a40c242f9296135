"""``generate_sample``: write the whole sample domain (documents, noisy web copies, ground truth, tasks).

Each part draws from its own ``random.Random`` seeded with ``"<seed>/<part>"`` (string seeds are hashed
with SHA-512 by ``random``, never with Python's salted ``hash()``), so the output depends only on the
seed and size, and changing one part does not reshuffle the others.
"""

from __future__ import annotations

import random
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import write_bytes, write_json, write_jsonl
from domainlm.manifest import read_manifest, stage_run
from domainlm.sample.config import SampleConfig
from domainlm.sample.documents import build_documents, render, table_document
from domainlm.sample.flows import build_flows
from domainlm.sample.scans import scan_qa_items, scanned_notice
from domainlm.sample.tasks import TAXONOMY, build_tasks, intents_table, tools_table
from domainlm.sample.web import build_web
from domainlm.sample.world import build_tables, build_world

STAGE = "sample"

# What each size holds. `tiny` is for tests (seconds); `small` is the demo default.
SIZES: dict[str, dict] = {
    "tiny": {"products": 6, "notices": 2, "web": 4, "exact": 1, "near": 1, "train": 20, "eval": 12, "qa_per_fact": 0,
             "policies": {"fees": ["zh"], "privacy": ["en"]}, "faqs": ["zh"]},
    "small": {"products": 40, "notices": 6, "web": 12, "exact": 2, "near": 2, "train": 300, "eval": 100, "qa_per_fact": 2,
              "policies": {"fees": ["zh", "en"], "security": ["zh"], "privacy": ["zh", "en"]}, "faqs": ["zh", "en"]},
    "medium": {"products": 100, "notices": 15, "web": 30, "exact": 5, "near": 5, "train": 1000, "eval": 300,
               "qa_per_fact": 3, "policies": {"fees": ["zh", "en"], "security": ["zh", "en"], "privacy": ["zh", "en"]},
               "faqs": ["zh", "en"]},
}


def _fact_records(docs) -> tuple[list[dict], dict]:
    facts, specs = [], {}
    for doc in docs:
        text = doc.text
        for f in doc.facts:
            entity = f["entity"]
            if f["sentence"] not in text or f["value"] not in f["sentence"]:
                raise DomainlmError(f"sample generator bug: fact sentence not in document {doc.id}: {f['sentence']}")
            fid = f"F{len(facts) + 1:04d}"
            spec = entity.specs[f["attribute"]]
            specs[fid] = spec
            facts.append({
                "id": fid, "product": entity.name(doc.lang), "attribute": f["attribute"], "value": f["value"],
                "doc_id": doc.id, "sentence": f["sentence"], "attribute_label": spec.label(doc.lang), "lang": doc.lang,
                "category": entity.category, "kind": entity.kind, "entity_id": entity.id, "zh_q": spec.zh_q,
                "raw": entity.attrs[f["attribute"]],
                # the row line's label ("海港银行信用卡收费标准·第2行") when the fact is a table cell, else None
                "table_row": f["sentence"][1:f["sentence"].index("】")] if entity.kind == "table_row" else None,
            })
    return facts, specs


def build_sample(seed: int = 0, size: str = "small") -> dict[str, bytes | list | dict]:
    """Every file of the sample domain in memory: relative path -> bytes, JSONL records or a JSON object."""

    if size not in SIZES:
        raise DomainlmError(f"size '{size}': expected one of {', '.join(SIZES)}")
    p = SIZES[size]

    def rng(part: str) -> random.Random:
        return random.Random(f"{seed}/{part}")

    # One branch more than the text notices need: its notice is the scanned one (a PNG read by OCR).
    world = build_world(rng("world"), p["products"], max(p["notices"], 6) + 1)
    docs = build_documents(world, rng("documents"), p["notices"], p["policies"], p["faqs"])
    # The tables come last, from their own stream: the other documents, facts and web copies stay as they were.
    table_docs = [table_document(t) for t in build_tables(world, rng("tables"))]
    facts, specs = _fact_records(docs + table_docs)
    web = build_web(docs, rng("web"), p["web"], p["exact"], p["near"])
    docs += table_docs
    qa_train = max(p["train"], p["qa_per_fact"] * len(facts))
    counts = {"train": {"default": p["train"], "knowledge_qa": qa_train},
              "eval": {"default": p["eval"], "knowledge_qa": max(p["eval"], len(facts) if size != "tiny" else 0)}}
    tasks = build_tasks(world, facts, specs, [d.text for d in docs], rng("tasks"), counts)

    files: dict[str, bytes | list | dict] = {}
    for doc in docs:
        files[doc.path] = render(doc)
    for copy in web:
        files[copy.path] = copy.data
    files["truth/documents.jsonl"] = [
        {"id": d.id, "path": d.path, "title": d.title, "lang": d.lang, "kind": d.kind, "products": d.products,
         "format": d.fmt, "text": d.text, "tables": len(d.tables)} for d in docs]
    files["truth/facts.jsonl"] = [{k: f[k] for k in ("id", "product", "attribute", "value", "doc_id", "sentence",
                                                     "attribute_label", "lang", "category", "entity_id", "table_row")}
                                  for f in facts]
    files["truth/web.jsonl"] = [c.record for c in web]
    files["truth/noise.jsonl"] = [r for c in web for r in c.noise]
    files["truth/pii.jsonl"] = [r for c in web for r in c.pii]
    for split, by_task in tasks.items():
        for task, items in by_task.items():
            files[f"tasks/{split}/{task}.jsonl"] = items
    # The scanned notice: its facts are asked in eval only (train never sees them), so the eval shows
    # whether OCR'd text reaches the knowledge base.
    scan = scanned_notice(world.branches[p["notices"]], rng("scans"))
    files[scan.path] = scan.png
    files["truth/documents.jsonl"].append(scan.record)
    files["truth/facts.jsonl"] += scan.facts
    files["tasks/eval/knowledge_qa.jsonl"] = files["tasks/eval/knowledge_qa.jsonl"] + scan_qa_items(scan, rng("scan-tasks"))
    files["tasks/tools.json"] = tools_table()
    files["tasks/intents.json"] = intents_table()
    files["tasks/taxonomy.json"] = TAXONOMY
    # Mobile-banking flows (an agent suite and sft rows), from their own stream: nothing above changes.
    files.update(build_flows(world, rng("flows"), p["train"], p["eval"]))
    return files


def generate_sample(out_dir: str | Path, seed: int = 0, size: str = "small", force: bool = False) -> Path:
    """Write the sample domain into ``out_dir``; a re-run with the same seed and size skips. Returns out_dir."""
    from rich.console import Console
    from rich.progress import Progress

    if size not in SIZES:
        raise DomainlmError(f"size '{size}': expected one of {', '.join(SIZES)}")
    config = SampleConfig(seed=seed, size=size)  # type: ignore[arg-type]
    out_dir = Path(out_dir)
    previous = read_manifest(out_dir)
    with stage_run(STAGE, out_dir, config=config, seed=seed, force=force) as run:
        if run.skipped:
            return out_dir
        files = build_sample(seed, size)
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"writing sample domain ({size}, seed {seed})", total=len(files))
            for rel, content in files.items():
                path = run.output(rel)
                if isinstance(content, bytes):
                    write_bytes(path, content)
                elif rel.endswith(".jsonl"):
                    write_jsonl(path, content)  # type: ignore[arg-type]
                else:
                    write_json(path, content)
                progress.advance(task)
        # Files a previous run of this stage wrote that this run did not (another size): remove them, and only them.
        if previous is not None and previous.stage == STAGE:
            for rel in set(previous.outputs) - set(files):
                stale = out_dir / rel
                if stale.is_file():
                    stale.unlink()
        run.metrics.update({
            "documents": sum(1 for r in files if r.startswith("docs/")),
            "web_pages": sum(1 for r in files if r.startswith("web/")),
            "facts": len(files["truth/facts.jsonl"]),  # type: ignore[arg-type]
            "noise_spans": len(files["truth/noise.jsonl"]),  # type: ignore[arg-type]
            "pii_spans": len(files["truth/pii.jsonl"]),  # type: ignore[arg-type]
            "task_items": {rel[len("tasks/"):-len(".jsonl")]: len(v) for rel, v in files.items()  # type: ignore[arg-type]
                           if rel.startswith("tasks/") and rel.endswith(".jsonl")},
        })
    return out_dir
