"""Ground truth: clean the sample domain's noisy web copies and check every injected noise span (removed
or flagged), that the clean content is kept, PII recall, and the duplicate pairs."""

from pathlib import Path

import pytest

from domainlm.data import clean, find_pii
from domainlm.data.normalize import to_simplified
from domainlm.data.pii import redact_pii
from domainlm.io import read_jsonl


def _simplified(text: str) -> str:
    return to_simplified(text).text


@pytest.fixture(scope="module", params=[("tiny", 0), ("small", 2)], ids=["tiny-seed0", "small-seed2"])
def sample(request, tmp_path_factory):
    from domainlm.sample import generate_sample

    root = tmp_path_factory.mktemp("sample")
    size, seed = request.param
    generate_sample(root, seed=seed, size=size)
    out = tmp_path_factory.mktemp("cleaned")
    result = clean([root / "web"], out, {"workers": 2})
    truth = {r["path"]: r for r in read_jsonl(root / "truth" / "web.jsonl")}
    kept = {r["source"]: r for r in read_jsonl(out / "clean.jsonl")}
    rejected = {r["source"]: r for r in read_jsonl(out / "rejected.jsonl")}
    trace = {t["source"]: t for t in read_jsonl(out / "trace.jsonl")}
    return root, out, result, truth, kept, rejected, trace


def _decoded(root: Path, record: dict) -> str:
    return (root / record["path"]).read_bytes().decode(record["encoding"])


def _output_of(sample, path):
    """The cleaned text of a web file, or of the copy it duplicates (duplicates are rejected)."""
    root, out, result, truth, kept, rejected, trace = sample
    record = truth[path]
    target = record["duplicate_of"] or record["near_duplicate_of"] or path
    return kept[target]["text"]


def test_duplicates_rejected_with_evidence(sample):
    root, out, result, truth, kept, rejected, trace = sample
    for path, record in truth.items():
        first = record["duplicate_of"] or record["near_duplicate_of"]
        if first is None:
            assert path in kept, f"{path} should be kept: {rejected.get(path)}"
            continue
        assert path in rejected and rejected[path]["stage"] == "dedup", path
        assert rejected[path]["meta"]["duplicate_of"] == kept[first]["id"]
        evidence = next(o for o in trace[path]["ops"] if o["op"] == "dedup")["duplicate"]
        assert evidence["jaccard"] >= 0.7


def test_clean_content_kept(sample):
    root, out, result, truth, kept, rejected, trace = sample
    for path, record in truth.items():
        if record["duplicate_of"] or record["near_duplicate_of"]:
            continue
        output = kept[path]["text"]
        expected = redact_pii(_simplified(record["clean_text"])).text
        lines = [line for line in expected.splitlines() if line.strip()]
        missing = [line for line in lines if line not in output]
        assert not missing, f"{path}: clean lines lost: {missing}"


def test_every_noise_span_removed_or_flagged(sample):
    root, out, result, truth, kept, rejected, trace = sample
    noise = read_jsonl(root / "truth" / "noise.jsonl")
    assert {n["type"] for n in noise} >= {
        "pinyin",
        "spam",
        "comment",
        "disclaimer",
        "furniture",
        "repeat",
        "censor",
    }
    failures = []
    for span in noise:
        output = _output_of(sample, span["path"])
        text = _simplified(span["text"])
        if span["type"] == "mojibake":
            ok = _simplified(span["original"]) in output
        elif span["type"] == "repeat":
            ok = output.count(text) <= 1
        elif span["type"] == "censor":
            flags = [
                f for o in trace[span["path"]]["ops"] for f in o.get("flags", []) if f["kind"] == "censor"
            ]
            ok = any(f["text"] == span["text"] for f in flags)
        elif span["type"] == "pinyin":
            ok = text not in output and _simplified(span["original"]) in output
        else:
            # A removed block may leave a shorter line that is not itself noise; check the block's lines.
            ok = all(line.strip() not in output for line in text.splitlines() if len(line.strip()) >= 4)
        if not ok:
            failures.append((span["path"], span["type"], span["text"][:60]))
    assert not failures, failures


def test_pii_recall_on_ground_truth(sample):
    root, out, result, truth, kept, rejected, trace = sample
    spans = read_jsonl(root / "truth" / "pii.jsonl")
    assert {s["type"] for s in spans} >= {"mobile", "email", "bank_card", "id_card", "address"}
    found_all = 0
    for span in spans:
        text = _decoded(root, truth[span["path"]])
        assert text[span["start"] : span["end"]] == span["text"]
        found = find_pii(text)
        if any(f.start == span["start"] and f.end == span["end"] and f.type == span["type"] for f in found):
            found_all += 1
        # and nothing of it survives cleaning (redacted, or removed with its comment section)
        assert span["text"] not in _output_of(sample, span["path"]), span
    assert found_all == len(spans)


def test_datacard_counts_match_outputs(sample):
    root, out, result, truth, kept, rejected, trace = sample
    assert result.metrics["kept"] == len(kept) and result.metrics["duplicates"] == sum(
        1 for r in rejected.values() if r["stage"] == "dedup"
    )
    md = (out / "datacard.md").read_text(encoding="utf-8")
    assert f"| kept | {result.metrics['kept']} |" in md


def test_clean_documents_kept_and_web_copies_deduplicated_to_their_source(sample, tmp_path):
    """Cleaning docs/ and web/ together: every clean document survives with its text (the operators do
    not eat clean content, and templated pages of different products are not merged), and every web
    copy is recognised as a duplicate of the document it was made from."""
    root = sample[0]
    clean([root / "docs", root / "web"], tmp_path, {"workers": 2})
    kept = {r["source"]: r for r in read_jsonl(tmp_path / "clean.jsonl")}
    rejected = {r["source"]: r for r in read_jsonl(tmp_path / "rejected.jsonl")}
    by_id = {r["id"]: source for source, r in kept.items()}
    for doc in read_jsonl(root / "truth" / "documents.jsonl"):
        assert doc["path"] in kept, rejected.get(doc["path"])
        expected = redact_pii(_simplified(doc["text"])).text
        lost = [line for line in expected.splitlines() if line.strip() and line.strip() not in kept[doc["path"]]["text"]]
        assert not lost, (doc["path"], lost)
    paths = {d["id"]: d["path"] for d in read_jsonl(root / "truth" / "documents.jsonl")}
    for copy in read_jsonl(root / "truth" / "web.jsonl"):
        assert rejected[copy["path"]]["stage"] == "dedup", copy["path"]
        assert by_id[rejected[copy["path"]]["meta"]["duplicate_of"]] == paths[copy["source_doc"]], copy["path"]
