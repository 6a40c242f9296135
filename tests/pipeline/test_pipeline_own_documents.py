"""A user's own documents, end to end: `domainlm init`, real public Chinese text copied into sources/docs,
`domainlm build` and nothing else. The text is news (UHGEval) and encyclopedia passages (CMRC 2018), not
the sample domain: the line must build, synthesize items a person would accept, and report honestly."""

import re

import pytest
from real_docs import available, write_user_documents

from domainlm.cli import main
from domainlm.io import read_json, read_jsonl
from domainlm.sample.world import STEMS, SUFFIXES
from domainlm.synth.checks import answer_matches, asked_kind

pytestmark = pytest.mark.skipif(not available(), reason="../shared/benchmarks is not beside the checkout")

# Words only the sample domain (Harbor Bank) uses, and the fixed phrases the old template filler glued in.
SAMPLE_WORDS = {"海港", "这款产品", "尊享版", "青春版", "至尊款", *(zh for zh, _ in STEMS),
                *(zh for pairs in SUFFIXES.values() for zh, _ in pairs if len(zh) >= 4)}
PRONOUN_START = re.compile(r"^(?:想了解一下，|麻烦问一下，|请问，)?(?:他|她|它|他们|她们|这|那|该|其|此)")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "my-bank"
    assert main(["init", str(root)]) == 0
    write_user_documents(root / "sources" / "docs", news=10, passages=10)
    assert main(["config", "-c", str(root / "domainlm.yaml")]) == 0
    assert main(["build", "-c", str(root / "domainlm.yaml")]) == 0
    return root


def _synth_items(root):
    synth = root / "artifacts" / "synth"
    return [item for split in ("train", "eval") for item in read_jsonl(synth / split / "synth_knowledge_qa.jsonl")]


def test_init_then_build_runs_every_stage_on_real_text(workspace):
    summary = read_json(workspace / "artifacts" / "report" / "summary.json")
    assert summary["name"] == "my-bank"  # named after its folder
    assert {"train-cpt", "train-sft", "eval"} <= set(summary["stages"])
    assert {"base", "tuned", "tuned+kb", "int8", "kb-extractive"} <= set(summary["variants"])
    # training was sized to the small corpus (one epoch would be 2-3 steps): more passes, up to 20 epochs
    for stage in ("train-cpt", "train-sft"):
        metrics = summary["stages"][stage]["metrics"]
        assert metrics["steps"] >= 30 and metrics["epochs_run"] > 5


def test_synthesized_items_pass_the_checks_a_person_would_make(workspace):
    items = _synth_items(workspace)
    chunks = {c["id"]: c["text"] for c in read_jsonl(next((workspace / "artifacts" / "kb").glob("gen-*")) / "chunks.jsonl")}
    assert len(items) >= 20
    failed = []
    for item in items:
        question, answer = item["question"], item["answer"]
        problems = []
        if answer not in chunks[item["chunk_id"]]:
            problems.append("answer not a span of the cleaned text")
        if not question.endswith("？") or len(question) < 8 or PRONOUN_START.match(question):
            problems.append("not a complete question")
        kind = asked_kind(question, "zh")
        if kind is None or not answer_matches(kind, answer):
            problems.append("answer type does not match the question word")
        if any(word in question or word in answer for word in SAMPLE_WORDS):
            problems.append("sample vocabulary")
        start, end = item["span"]
        if chunks[item["chunk_id"]][start:end] != answer:
            problems.append("recorded span is not the answer")
        if problems:
            failed.append((question, answer, problems))
    assert len(failed) <= 0.05 * len(items), failed[:5]
    assert all(i["meta"]["generator"].startswith("rules:") and i["doc_id"] for i in items)
    quality = read_json(workspace / "artifacts" / "synth" / "quality.json")
    assert quality["candidates"] > quality["facts_kept"] > 0 and quality["dropped"]


def test_the_report_opens_with_a_headline_warnings_and_examples(workspace):
    summary = read_json(workspace / "artifacts" / "report" / "summary.json")
    html = (workspace / "artifacts" / "report" / "report.html").read_text(encoding="utf-8")
    assert summary["headline"].startswith("my-bank: built from 20 documents")
    assert "Best variant:" in summary["headline"] and "95% interval" in summary["headline"]
    assert summary["headline"] in html.replace("&#x27;", "'")
    # a small corpus makes few eval items: the report says so rather than presenting the numbers as solid
    assert any("fewer than 30" in w for w in summary["warnings"])
    for name in ("tuned", "kb-extractive"):
        examples = summary["variants"][name]["examples"]
        assert examples and all(e["question"] and "gold" in e for e in examples)
    assert "Examples: real questions" in html and "[" in summary["variants"]["tuned"]["ci95"].__repr__()
