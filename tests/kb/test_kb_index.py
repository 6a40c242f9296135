import json
import subprocess
import sys

import numpy as np
import pytest
from kb_docs import DOCS

from domainlm.errors import DomainlmError
from domainlm.io import read_json, write_json
from domainlm.kb import FORMAT_VERSION, KBConfig, add_documents, build_kb, open_kb, remove_documents

QUERIES = ["活期存款年利率", "信用卡年費多少", "mortgage arrangement fee", "积存金起存量", "小额账户管理费"]


def _results(kb, mode="bm25", k=5):
    return [[(h.chunk_id, round(h.score, 4)) for h in kb.search(q, k=k, mode=mode)] for q in QUERIES]


def test_search_finds_the_chunk_with_provenance(small_kb):
    kb = open_kb(small_kb)
    texts = {d["id"]: d["text"] for d in DOCS}
    hit = kb.search("活期存款的年利率", k=3, mode="bm25")[0]
    assert hit.doc_id == "deposit" and "0.35%" in hit.text and hit.rank == 1
    assert texts[hit.doc_id][hit.start : hit.end] == hit.text and hit.source == "deposit.md"
    assert hit.headings == ["海港银行活期存款", "利率"]
    # traditional query, simplified document; simplified query, traditional document
    assert kb.search("白金信用卡的年費", k=1, mode="bm25")[0].doc_id == "card"
    assert kb.search("积存金起存量", k=1, mode="bm25")[0].doc_id == "gold"
    # a table stays one chunk
    table = kb.search("小额账户管理费", k=1, mode="bm25")[0]
    assert table.text.startswith("| 项目") and table.text.endswith("每月3元 |")
    assert kb.search("zzzz qqqq", k=3, mode="bm25") == []
    assert kb.modes == ("bm25",) and kb.search("活期", mode="hybrid")[0].dense is None


def test_dense_and_hybrid(small_kb_dense):
    kb = open_kb(small_kb_dense)
    assert kb.vectors.shape == (len(kb), 384) and not kb.vectors.flags.writeable
    for mode in ("dense", "hybrid"):
        assert kb.search("What is the fee for arranging a home loan?", k=1, mode=mode)[0].doc_id == "mortgage"
        assert kb.search("信用卡每年要交多少钱", k=1, mode=mode)[0].doc_id == "card"
    hit = kb.search("信用卡年费", k=2, mode="hybrid", fusion="weighted")[0]
    assert hit.doc_id == "card" and hit.bm25 > 0 and 0 < hit.dense <= 1


def test_add_remove_equals_rebuild(tmp_path):
    docs = {d["id"]: d for d in DOCS}
    changed = dict(docs["card"], text=docs["card"]["text"].replace("800元", "600元"))
    config = KBConfig(embedder="none", mine_terms=False)
    build_kb([docs["deposit"], docs["card"]], tmp_path / "inc", config)
    info = add_documents(tmp_path / "inc", [docs["mortgage"], docs["gold"], changed, docs["deposit"]])
    assert info["added"] == ["gold", "mortgage"] and info["replaced"] == ["card"] and info["unchanged"] == ["deposit"]
    info = remove_documents(tmp_path / "inc", ["gold", "nope"])
    assert info["removed"] == ["gold"] and info["missing"] == ["nope"]
    build_kb([docs["deposit"], changed, docs["mortgage"]], tmp_path / "full", config)
    inc, full = open_kb(tmp_path / "inc"), open_kb(tmp_path / "full")
    assert sorted(c["id"] for c in inc.chunks) == sorted(c["id"] for c in full.chunks)
    assert _results(inc) == _results(full)
    assert "600元" in inc.search("白金信用卡年费", k=1, mode="bm25")[0].text
    with pytest.raises(DomainlmError, match="no document with id 'nope'"):
        remove_documents(tmp_path / "inc", ["nope"])


def test_add_equals_rebuild_with_dense_and_mined_terms(tmp_path, small_kb_dense):
    """With embeddings and the dictionary mined at build time: a rebuild given that dictionary is identical."""
    kb = open_kb(small_kb_dense)
    build_kb(DOCS[:2], tmp_path / "inc", KBConfig())
    add_documents(tmp_path / "inc", DOCS[2:])
    terms = tmp_path / "terms.txt"
    terms.write_text("\n".join(open_kb(tmp_path / "inc").mined_terms), encoding="utf-8")
    build_kb(DOCS, tmp_path / "full", KBConfig(mine_terms=False, terms=str(terms)))
    inc, full = open_kb(tmp_path / "inc"), open_kb(tmp_path / "full")
    assert _results(inc, "bm25") == _results(full, "bm25")
    # Dense vectors depend on which chunks share a batch at the 1e-4 level where the embedder runs bf16
    # (an fp32 accumulator rounded to bf16 can land one ulp apart), so dense scores agree to that, not to the bit.
    for mode in ("dense", "hybrid"):
        _same_ranking(_results(inc, mode), _results(full, mode))
    _same_ranking(_results(inc, "hybrid"), _results(kb, "hybrid"))


def _same_ranking(a: list, b: list, tolerance: float = 1e-3) -> None:
    for hits_a, hits_b in zip(a, b, strict=True):
        assert [c for c, _ in hits_a] == [c for c, _ in hits_b]
        assert all(abs(x - y) <= tolerance for (_, x), (_, y) in zip(hits_a, hits_b, strict=True))


def test_reopens_in_a_new_process_with_nothing_lost(small_kb):
    kb = open_kb(small_kb)
    info = read_json(small_kb / "kb.json")
    assert info["format_version"] == FORMAT_VERSION and info["n_chunks"] == len(kb) and info["files"]
    code = (
        "import json,sys; from domainlm.kb import open_kb; kb=open_kb(sys.argv[1]);"
        f"print(json.dumps([[(h.chunk_id, round(h.score,4)) for h in kb.search(q,k=5,mode='bm25')] for q in {QUERIES!r}]));"
        "print(json.dumps(kb.chunks, ensure_ascii=False))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(small_kb)], capture_output=True, text=True, check=True).stdout
    results, chunks = out.splitlines()
    assert json.loads(results) == [[list(x) for x in r] for r in _results(kb)]
    assert json.loads(chunks) == kb.chunks


def test_user_terms_load_without_rebuild(tmp_path):
    build_kb(DOCS, tmp_path / "kb", KBConfig(embedder="none", mine_terms=False))
    kb = open_kb(tmp_path / "kb")
    assert "白金信用卡" not in kb.tokenizer.tokens("白金信用卡年费")
    (tmp_path / "kb" / "terms.txt").write_text("白金信用卡\n", encoding="utf-8")
    assert "白金信用卡" in kb.tokenizer.tokens("白金信用卡年费")
    assert kb.search("白金信用卡年费", k=1, mode="bm25")[0].doc_id == "card"


def test_reader_keeps_working_while_a_writer_updates(tmp_path):
    build_kb(DOCS[:2], tmp_path / "kb", KBConfig(embedder="none"))
    before = open_kb(tmp_path / "kb")
    add_documents(tmp_path / "kb", DOCS[2:])
    assert before.search("活期存款年利率", k=1, mode="bm25")[0].doc_id == "deposit"  # old generation, still mapped
    assert open_kb(tmp_path / "kb").search("mortgage", k=1, mode="bm25")[0].doc_id == "mortgage"
    assert len(list((tmp_path / "kb").glob("gen-*"))) == 1


def test_bad_knowledge_bases_give_clear_errors(tmp_path, small_kb):
    with pytest.raises(DomainlmError, match="no such knowledge base"):
        open_kb(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DomainlmError, match="not a knowledge base"):
        open_kb(tmp_path / "empty")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(small_kb, broken)
    gen = broken / read_json(broken / "kb.json")["generation"]
    data = gen / "bm25" / "data.csc.index.npy"
    good = data.read_bytes()
    raw = bytearray(good)
    raw[-3] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(DomainlmError, match="corrupted"):
        open_kb(broken)
    data.write_bytes(good)
    (gen / "chunks.jsonl").unlink()
    with pytest.raises(DomainlmError) as missing:
        open_kb(broken)
    assert str(missing.value).startswith(f"{gen / 'chunks.jsonl'}: index file missing")  # names the file
    newer = tmp_path / "newer"
    shutil.copytree(small_kb, newer)
    info = read_json(newer / "kb.json")
    write_json(newer / "kb.json", dict(info, format_version=FORMAT_VERSION + 1))
    with pytest.raises(DomainlmError, match="newer than this domainlm reads"):
        open_kb(newer)
    (newer / "kb.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DomainlmError, match="not valid JSON"):
        open_kb(newer)


def test_bad_queries_and_empty_inputs(tmp_path, small_kb):
    kb = open_kb(small_kb)
    with pytest.raises(DomainlmError, match="the limit is 2000"):
        kb.search("存款" * 50_000)
    with pytest.raises(DomainlmError, match="empty query"):
        kb.search("   ")
    with pytest.raises(DomainlmError, match="unknown search mode"):
        kb.search("存款", mode="fuzzy")
    garbage = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes().decode("latin-1")
    assert isinstance(kb.search(garbage, mode="bm25"), list)
    with pytest.raises(DomainlmError, match="no documents"):
        build_kb([], tmp_path / "none", KBConfig(embedder="none"))
    assert not (tmp_path / "none" / "kb.json").exists()
    build_kb(DOCS[:1], tmp_path / "one", KBConfig(embedder="none"))
    remove_documents(tmp_path / "one", ["deposit"])
    emptied = open_kb(tmp_path / "one")
    assert len(emptied) == 0 and emptied.search("存款") == []


def test_rerank_reorders_the_first_n_by_sentence_coverage(small_kb):
    kb = open_kb(small_kb)
    plain = kb.search("白金信用卡取现手续费", k=4, mode="bm25")
    reranked = kb.search("白金信用卡取现手续费", k=4, mode="bm25", rerank=4)
    assert sorted(h.chunk_id for h in plain) == sorted(h.chunk_id for h in reranked)
    assert [h.rank for h in reranked] == list(range(1, len(reranked) + 1))
    assert reranked[0].doc_id == "card"


def test_a_killed_writers_temp_folders_are_removed_by_later_runs(tmp_path):
    import fcntl

    kb = tmp_path / "kb"
    build_kb(DOCS[:2], kb, KBConfig(embedder="none"))

    def leave(name):  # what `kb add` killed while writing its new generation leaves behind
        (kb / name).mkdir()
        (kb / name / "chunks.jsonl").write_text("{}\n", encoding="utf-8")

    # A reader does not touch a temp folder while a writer holds the lock (it may be that writer's)...
    leave(".gen-000002.live")
    with open(kb / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert len(open_kb(kb)) and (kb / ".gen-000002.live").is_dir()
        fcntl.flock(lock, fcntl.LOCK_UN)
    # ...and removes it once no writer runs: its writer is gone (a dead process holds no lock).
    open_kb(kb)
    assert not (kb / ".gen-000002.live").exists()

    leave(".gen-000002.k1ll3d")
    leave("gen-000002")  # killed after renaming its generation into place, before writing kb.json
    add_documents(kb, DOCS[2:3])  # would otherwise fail to rename its own gen-000002 into place
    assert sorted(p.name for p in kb.iterdir() if "gen-" in p.name) == ["gen-000002"]
    assert {d["id"] for d in open_kb(kb).documents} == {d["id"] for d in DOCS[:3]}

    leave(".gen-000003.k1ll3d")
    remove_documents(kb, [DOCS[0]["id"]])
    assert sorted(p.name for p in kb.iterdir() if "gen-" in p.name) == ["gen-000003"]
    leave(".gen-000004.k1ll3d")
    build_kb(DOCS, kb, KBConfig(embedder="none"))
    assert sorted(p.name for p in kb.iterdir() if "gen-" in p.name) == ["gen-000004"]
