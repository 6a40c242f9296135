"""The knowledge base on Milvus: the same ``kb`` API with the index in an engine that runs as a cluster.

``domainlm kb build ... --store URL`` (or ``kb.store`` in domainlm.yaml) keeps the KB folder exactly as
the on-disk store writes it, minus the index files: ``kb.json`` names the store, and each generation's
``chunks.jsonl`` / ``documents.jsonl`` / ``tokens.jsonl`` stay the source of truth for governance,
citations and the answer reader's term statistics. The index lives in one Milvus collection per build:
a row per chunk with its id, document id, the normalised text that BM25 reads, metadata (source, title,
headings, offsets), the sparse BM25 vector Milvus computes from that text with its jieba analyzer, and the
KB embedder's dense vector.

Why Milvus (of the engines with keyword and vector search that run on several machines):

- **Chinese keyword search in the engine.** Its BM25 function tokenises with jieba (search mode, HMM off,
  like the on-disk store), and takes the KB's mined and user terms as the analyzer's dictionary plus our
  stop words as a filter, so a term such as "积存金" is one token in both stores. OpenSearch and
  Elasticsearch need a plugin (IK, smartcn) installed on every node for the same.
- **Hybrid search on the server.** ``hybrid_search`` runs the BM25 and the dense request and fuses them
  with reciprocal-rank fusion (``RRFRanker``, the KB's ``rrf_k``) in one call. Weighted fusion (the KB
  default) is two engine searches fused here, as the on-disk store fuses: the engines' ``WeightedRanker``
  normalises BM25 differently from version to version (see :meth:`MilvusKnowledgeBase._weighted`).
- **One client for a laptop and a cluster.** Milvus Lite (``milvus:///path/kb.db``) serves the same
  client API inside this process, for tests and small teams; a server or cluster (``milvus://host:19530``)
  is the same pymilvus client, with rows sharded and replicated by the cluster, and ``kb add``/``kb remove``
  upsert and delete in place rather than rewriting an index. (Milvus Lite 3.x is a Python implementation of
  that API, not the server's engine: it honours the analyzer's jieba mode, dictionary and stop words but not
  ``hmm: false``, and it adds the dictionary's words to the process's global jieba dictionary.)

Consistency: a build writes a new collection (``<name>_g<generation>``) and drops the previous one only
after ``kb.json`` points at the new generation, so a failed or killed rebuild leaves the old KB whole.
A build killed (even with SIGKILL) is resumed by running it again: the embedding resumes from the KB
folder's checkpoints (:mod:`domainlm.kb.store`), and since ``kb.json`` never named the killed build's
generation, the rerun writes the same one, so its collection, partly written, is dropped and written
afresh under the same name (:func:`create_collection`), then the old build's is dropped: one row per
chunk, no orphaned collection. Milvus Lite's lock on its file is an ``flock`` (Lite 3.x) or a ``lockf``
(Lite 2.x), which the kernel drops with the killed process, so the rerun opens the file; only a live
process holding it stops the rerun (one error line, see :func:`client`).
``kb add``/``kb remove`` change the collection in place, then write the new generation; search keeps only
chunks its generation lists, so a reader never cites a chunk its ``chunks.jsonl`` lacks, and re-running
an interrupted add or remove brings the two back in line (upserts and deletes by id are idempotent).
Limits: the analyzer's dictionary is fixed when a collection is built, so terms added to ``terms.txt``
later reach the answer reader at once but Milvus's BM25 only after a rebuild; Milvus Lite serves one
process at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.errors import DomainlmError
from domainlm.io import iter_jsonl
from domainlm.kb import ann
from domainlm.kb.config import KBConfig
from domainlm.kb.embed import load_embedder
from domainlm.kb.search import MODES, Hit, KnowledgeBase, _fusion_depth, read_generation
from domainlm.kb.store import KB_FILE, index_text
from domainlm.kb.text import STOPWORDS, normalize

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 65535  # Milvus's VARCHAR limit
_ID_BYTES = 1024
_BATCH = 512  # rows per insert call: well under the gRPC message limit for 400-character chunks
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_HOST = re.compile(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]")
CONNECT_TIMEOUT = 10.0  # seconds: an unreachable cluster is an error line, not a hang


@dataclass(frozen=True)
class Store:
    """Where a KB's collection lives: ``uri`` as pymilvus takes it (a Lite file path or an http URL)."""

    uri: str
    collection: str | None  # None: derived from the KB folder at build time

    @property
    def lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://"))

    def url(self, collection: str | None = None) -> str:
        """The URL kb.json records: enough to reopen this exact collection."""
        base = f"milvus://{self.uri}" if self.lite else self.uri
        name = collection or self.collection
        return f"{base}?collection={name}" if name else base


def parse_url(url: str, base: Path | None = None) -> Store:
    """``milvus:///abs/kb.db`` or ``milvus://rel/kb.db`` (Milvus Lite, a file ending in .db; a relative
    path is taken from ``base`` or the working directory), ``milvus://host:port``, ``http(s)://host:port``
    (a server or cluster), each with an optional ``?collection=NAME``. A bad URL is a one-line error."""
    if not isinstance(url, str) or not url.strip():
        raise DomainlmError("kb store: empty URL (expected milvus:///path/kb.db or milvus://host:19530)")
    rest, _, query = url.strip().partition("?")
    collection = None
    if query:
        key, _, value = query.partition("=")
        if key != "collection" or not _NAME.fullmatch(value):
            raise DomainlmError(
                f"kb store {url!r}: the only option is ?collection=NAME (letters, digits, underscores; not starting with a digit)"
            )
        collection = value
    if rest.startswith(("http://", "https://")):
        scheme, _, hostport = rest.partition("://")
        return Store(f"{scheme}://{_hostport(url, hostport.rstrip('/'))}", collection)
    if not rest.startswith("milvus://"):
        raise DomainlmError(f"kb store {url!r}: unknown scheme (expected milvus:///path/kb.db, milvus://host:19530 or http://host:19530)")
    target = rest[len("milvus://"):]
    if target.endswith(".db"):
        path = Path(target)
        path = path if path.is_absolute() else (base or Path.cwd()) / path
        return Store(str(path.resolve()), collection)
    return Store(f"http://{_hostport(url, target.rstrip('/'))}", collection)


def _hostport(url: str, hostport: str) -> str:
    host, sep, port = hostport.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise DomainlmError(f"kb store {url!r}: expected host:port (e.g. milvus://127.0.0.1:19530) or a Milvus Lite file ending in .db")
    return hostport


def default_collection(kb_dir: Path) -> str:
    """A name unique to the KB folder, so that two KBs can share one Lite file or one cluster."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", kb_dir.resolve().name).strip("_")[:40] or "kb"
    digest = hashlib.sha256(str(kb_dir.resolve()).encode()).hexdigest()[:10]
    return f"kb_{slug}_{digest}"


_clients: dict[str, object] = {}


def client(store: Store):
    """One MilvusClient per URI in this process (Milvus Lite starts one embedded server per file)."""
    if store.uri not in _clients:
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise DomainlmError("the Milvus store needs pymilvus and milvus-lite: pip install 'domainlm[milvus]'") from None
        if store.lite:
            Path(store.uri).parent.mkdir(parents=True, exist_ok=True)
            import jieba

            jieba.setLogLevel(logging.WARNING)  # Lite's analyzer loads jieba; its banner is noise on the CLI
        # Checked before connecting too: Lite 2.x, failing to start on a file another process holds,
        # deletes that process's lock file, so a check after the failure would find nothing.
        if store.lite and _lite_locked(Path(store.uri)):
            raise DomainlmError(_LOCKED.format(url=store.url()))
        # Lite logs a traceback when it cannot start; the one-line error below says why instead.
        lite_log = logging.getLogger("milvus_lite.server_manager")
        level, lite_log.level = lite_log.level, logging.CRITICAL
        try:
            _clients[store.uri] = MilvusClient(
                uri=store.uri, token=os.environ.get("MILVUS_TOKEN", ""), timeout=CONNECT_TIMEOUT
            )
        except Exception as exc:  # pymilvus raises its own and gRPC errors; all mean "cannot reach it"
            if store.lite and _lite_locked(Path(store.uri)):
                raise DomainlmError(_LOCKED.format(url=store.url())) from None
            raise DomainlmError(f"kb store {store.url()}: cannot connect ({_reason(exc)})") from None
        finally:
            lite_log.level = level
    return _clients[store.uri]


_LOCKED = (
    "kb store {url}: another process has this Milvus Lite file open (Lite serves one process at a time; "
    "for several, use a Milvus server: milvus://host:19530)"
)


def _lite_locked(db: Path) -> bool:
    return _locked(db / "LOCK") or _locked(db.parent / f".{db.name}.lock", posix=True)


def _locked(lock_file: Path, posix: bool = False) -> bool:
    """Whether another process holds Milvus Lite's advisory lock ``lock_file``: an ``flock`` on
    ``<db>/LOCK`` in Lite 3.x (``db`` is a folder), a POSIX ``lockf`` (``posix``) on ``.<db name>.lock``
    beside the file in Lite 2.x (which runs the Milvus server binary as a child process)."""
    import fcntl

    lock = fcntl.lockf if posix else fcntl.flock
    try:
        with open(lock_file, "r+") as handle:  # r+: test an existing lock file, never create one
            try:
                lock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError; lockf may raise PermissionError (EACCES) instead
                return True
            lock(handle, fcntl.LOCK_UN)
    except OSError:  # no such lock file: the other Lite version's layout, or no Lite there yet
        return False
    return False


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())[:300]


def _call(store: Store, what: str, fn, *args, **kwargs):
    """Run one engine call; its failure is a one-line DomainlmError naming the store and the call."""
    try:
        return fn(*args, **kwargs)
    except DomainlmError:
        raise
    except Exception as exc:
        raise DomainlmError(f"kb store {store.url()}: {what} failed ({_reason(exc)})") from None


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def analyzer(terms: list[str]) -> dict:
    """jieba as the on-disk store cuts: search mode (a compound and its parts), HMM off, the KB's terms in
    the dictionary, our stop words, spaces and punctuation dropped. The text is normalised (width, case,
    traditional→simplified) before it reaches Milvus, as the on-disk tokenizer normalises it."""
    words = sorted({normalize(t.strip()) for t in terms if t.strip() and " " not in t.strip()})
    return {
        "tokenizer": {"type": "jieba", "dict": ["_default_", *words], "mode": "search", "hmm": False},
        "filter": ["lowercase", {"type": "stop", "stop_words": sorted(STOPWORDS | _non_words())}],
    }


def _non_words() -> set[str]:
    """Spaces and punctuation marks as jieba emits them (one a token, after normalising): the on-disk
    tokenizer drops tokens without a word character, and Milvus's jieba keeps them, so the server's engine
    would match a query's spaces against every chunk's (a stop list, because Milvus 2.5 lacks the
    ``removepunct`` and ``regex`` filters)."""
    ranges = [range(0x21, 0x7F), range(0xA1, 0xC0), range(0x2000, 0x2070), range(0x3000, 0x3040), range(0xFF01, 0xFF66)]
    marks = {normalize(chr(code)) for r in ranges for code in r}
    return {m for m in marks if len(m) == 1 and not m.isspace() and not re.search(r"\w", m)} | {" ", "\t", "\n", "\r", "\r\n"}


def create_collection(store: Store, name: str, dim: int, terms: list[str], config: KBConfig) -> dict | None:
    """A fresh collection. An existing one of that name is what a killed build of the same generation left:
    it is dropped first rather than completed, since its rows may be partial and its analyzer dictionary
    (the mined and user terms) may differ from this build's. Rewriting its rows costs little beside the
    embedding, which resumes from checkpoints (measured on 2 busy cores, Milvus Lite: 1,496 CMRC chunks
    upserted and flushed in 7.5 s, ~200 a second, several times what the embedding does).

    Returns the dense index made (:func:`_dense_index`; None without vectors)."""
    c = client(store)
    if _call(store, "has_collection", c.has_collection, name):
        _call(store, "drop_collection", c.drop_collection, name)
    params = analyzer(terms)
    dense = _create(store, name, dim, params, config)
    failure = _insert_fails(store, name, dim)
    if failure is None:
        return dense
    # Some engines (the Milvus 2.5 in milvus-lite 2.5.1) take a jieba analyzer with a dictionary at create
    # time and then fail every insert, with an error that does not say why (the reason is in the server's
    # log). Their built-in jieba still cuts Chinese; the KB's mined and user terms are then not whole tokens
    # in the engine's BM25. Said on stderr and in kb info.
    _call(store, "drop_collection", c.drop_collection, name)
    dense = _create(store, name, dim, {**params, "tokenizer": "jieba"}, config)
    if _insert_fails(store, name, dim) is not None:
        raise DomainlmError(f"kb store {store.url(name)}: cannot insert rows ({failure})")
    log.warning(
        "kb store %s: this Milvus engine cannot insert through a jieba analyzer with the KB's dictionary; using its "
        "built-in jieba dictionary (domain terms are not whole tokens in its BM25; a newer Milvus takes the dictionary)",
        store.url(name),
    )
    return dense


def _insert_fails(store: Store, name: str, dim: int) -> str | None:
    """Why the engine cannot insert a row into the collection, or None when it can: one probe row, written
    and deleted (with a short timeout: pymilvus retries a failing insert for minutes otherwise)."""
    c = client(store)
    row = {"id": "__domainlm_probe__", "doc_id": "__domainlm_probe__", "text": "探测 probe", "meta": {}}
    if dim:
        row["dense"] = [1.0] + [0.0] * (dim - 1)
    try:
        c.upsert(name, [row], timeout=20)
    except Exception as exc:  # noqa: BLE001  (pymilvus and gRPC errors alike)
        return _reason(exc)
    _call(store, "delete", c.delete, name, ids=[row["id"]])
    return None


def _dense_index(kind: str) -> dict:
    """The dense index of a collection and how its search is tuned: ``{"index_type", "params", "search_param",
    "values"}``, where ``values`` are the settings of ``search_param`` that calibration tries in turn. HNSW (a
    server or cluster) with the disk store's graph settings; FLAT (exact search, nothing to tune) where the
    engine has no HNSW. Not IVF_FLAT, which Milvus Lite 2.x's local mode also takes: it never builds that
    index and searches with an interim index at a fixed nprobe instead, whatever the search asks
    (recall@10 vs exact 0.79 at every nprobe from 8 to all 1,264 lists, 100k clustered chunks)."""
    if kind == "HNSW":
        return {"index_type": "HNSW", "params": {"M": ann.CONNECTIVITY, "efConstruction": ann.EXPANSION_ADD},
                "search_param": "ef", "values": list(ann.EXPANSIONS)}
    return {"index_type": "FLAT", "params": {}, "search_param": None, "values": [None]}


def _create(store: Store, name: str, dim: int, params: dict, config: KBConfig) -> dict | None:
    from pymilvus import DataType, Function, FunctionType

    c = client(store)
    schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_ID_BYTES)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=_ID_BYTES)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=True, analyzer_params=params)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    if dim:
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]))
    # An explicit dense index whose search expansion is calibrated once the rows are in (calibrate_dense).
    # AUTOINDEX, used before, searched at a fixed setting: dense recall@10 vs exact 0.48 at 100k clustered
    # chunks on the Milvus 2.5 engine (benchmarks/kb_scale.py).
    for kind in ("HNSW", "FLAT") if dim else (None,):
        dense = _dense_index(kind) if kind else None
        index = c.prepare_index_params()
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": config.k1, "bm25_b": config.b})
        if dense:
            index.add_index(field_name="dense", index_type=dense["index_type"], metric_type="COSINE", params=dense["params"])
        try:
            _call(store, "create_collection", c.create_collection, name, schema=schema, index_params=index, consistency_level="Strong")
            return dense
        except DomainlmError as exc:
            if kind != "HNSW" or "invalid index type" not in str(exc).lower():
                raise
            if _call(store, "has_collection", c.has_collection, name):  # made before its index was refused
                _call(store, "drop_collection", c.drop_collection, name)
    return None


def _rows(chunks: list[dict], vectors: np.ndarray | None) -> list[dict]:
    rows = []
    for i, chunk in enumerate(chunks):
        text = normalize(index_text(chunk))
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES or len(chunk["id"].encode("utf-8")) > _ID_BYTES:
            raise DomainlmError(f"chunk {chunk['id']}: longer than Milvus takes ({MAX_TEXT_BYTES} bytes of text, {_ID_BYTES} of id); lower chunk_chars")
        row = {
            "id": chunk["id"], "doc_id": chunk["doc_id"], "text": text,
            "meta": {k: chunk.get(k) for k in ("source", "title", "headings", "start", "end")},
        }
        if vectors is not None:
            row["dense"] = np.asarray(vectors[i], dtype=np.float32).tolist()
        rows.append(row)
    return rows


def upsert_chunks(store: Store, name: str, chunks: list[dict], vectors: np.ndarray | None) -> None:
    """Write ``chunks`` (with their dense vectors, when the KB has an embedder) in batches; an id that is
    there already is replaced, so re-running an interrupted write is safe."""
    c = client(store)
    for start in range(0, len(chunks), _BATCH):
        part = slice(start, start + _BATCH)
        rows = _rows(chunks[part], vectors[part] if vectors is not None else None)
        _call(store, "upsert", c.upsert, name, rows)
    flush(store, name)


def calibrate_dense(
    store: Store, name: str, vectors: np.ndarray, chunk_ids: list[str], dense: dict, *, target: float = ann.TARGET_RECALL
) -> dict:
    """The setting of the engine's dense search (HNSW ``ef``; ``dense`` as :func:`_dense_index` gives it) for
    recall@10 >= ``target`` against exact search, found as the disk store calibrates its own graph
    (:func:`domainlm.kb.ann.calibrate`: the same question-like queries, settings tried in turn, the same
    margin), on the collection just written. What kb.json records under ``ann``.

    An index that misses the target at every setting (an engine may search another index than the one
    asked for, or ignore the setting) is replaced by FLAT, exact search, and measured again; the record
    keeps what was tried. A FLAT index is measured once (``search`` "exact"); one that still misses the
    target says so (``recall_at_10`` below ``target_recall``)."""
    c = client(store)
    k = min(ann.RECALL_K, len(vectors))
    if k == 0:
        return {}
    queries = ann.question_like_queries(vectors, ann.RECALL_SAMPLE, 0)
    rows = ann._exact_keys(vectors, np.arange(len(vectors), dtype=np.uint64), queries, k).astype(np.int64)
    exact = [set(ids) for ids in np.asarray(chunk_ids, dtype=object)[rows]]
    _call(store, "load_collection", c.load_collection, name)

    def measure(key: str | None, value: int | None) -> dict:
        params = {"metric_type": "COSINE", "params": {key: value} if key else {}}
        found = _call(store, "search", c.search, name, data=queries.tolist(), anns_field="dense", search_params=params,
                      limit=k, output_fields=["id"])
        recall = round(sum(len({h["id"] for h in hits} & exact[i]) for i, hits in enumerate(found)) / (k * len(queries)), 4)
        times = []
        for q in queries[: ann.TIMED_QUERIES]:
            t0 = time.perf_counter()
            c.search(name, data=[q.tolist()], anns_field="dense", search_params=params, limit=k, output_fields=["id"])
            times.append(time.perf_counter() - t0)
        return {key or "index": value or "FLAT", "recall_at_10": recall, "p50_ms": round(1000 * float(np.median(times)), 3)}

    key = dense["search_param"]
    tried = []
    for value in dense["values"]:
        tried.append(measure(key, value))
        if tried[-1]["recall_at_10"] >= target + ann.CALIBRATION_MARGIN:
            break
    record = {"library": f"Milvus {dense['index_type']} {dense['params']}", "recall_sample": len(queries)}
    if tried[-1]["recall_at_10"] < target and dense["index_type"] != "FLAT":
        log.warning("kb store %s: the %s index reached recall@10 %.4f at most (target %.2f); searching exactly (FLAT)",
                    store.url(name), dense["index_type"], max(t["recall_at_10"] for t in tried), target)
        _call(store, "release_collection", c.release_collection, name)
        _call(store, "drop_index", c.drop_index, name, "dense")
        index = c.prepare_index_params()
        index.add_index(field_name="dense", index_type="FLAT", metric_type="COSINE", params={})
        _call(store, "create_index", c.create_index, name, index)
        _call(store, "load_collection", c.load_collection, name)
        record = {"library": "Milvus FLAT {}", "recall_sample": len(queries), "missed_target": record["library"]}
        key = None
        tried.append(measure(None, None))
    best = tried[-1]
    if key is None:
        record.update(search="exact", search_param=None)
    else:
        record.update({"search": "graph", "search_param": key, key: best[key]})
    return {
        **record, "recall_at_10": best["recall_at_10"], "p50_ms": best["p50_ms"], "target_recall": target,
        "calibration_margin": ann.CALIBRATION_MARGIN, "calibration": tried,
    }


def flush(store: Store, name: str) -> None:
    """Seal what a writer wrote: Milvus searches unsealed (growing) rows by brute force, measured 10-20x
    slower than sealed, indexed ones (Milvus Lite, 800 CMRC chunks: BM25 590 ms vs 43 ms a query)."""
    _call(store, "flush", client(store).flush, name)


def delete_documents(store: Store, name: str, doc_ids: list[str]) -> None:
    c = client(store)
    for start in range(0, len(doc_ids), _BATCH):
        _call(store, "delete", c.delete, name, filter=f"doc_id in {json.dumps(doc_ids[start:start + _BATCH], ensure_ascii=False)}")
    if doc_ids:
        flush(store, name)


def drop_other_builds(store: Store, keep: str) -> None:
    """Drop the collections of earlier builds of this KB (``<base>_g<number>``), keeping ``keep``."""
    base = keep.rsplit("_g", 1)[0]
    c = client(store)
    for name in _call(store, "list_collections", c.list_collections):
        if name != keep and re.fullmatch(re.escape(base) + r"_g\d{6}", name):
            _call(store, "drop_collection", c.drop_collection, name)


def collection_of(url: str) -> tuple[Store, str]:
    """The store and collection that a kb.json's ``store`` URL names."""
    store = parse_url(url)
    if store.collection is None:
        raise DomainlmError(f"{KB_FILE}: store {url!r} names no collection; rebuild with `domainlm kb build --force`")
    return store, store.collection


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


class MilvusKnowledgeBase(KnowledgeBase):
    """A knowledge base whose index is a Milvus collection; the same interface as :class:`KnowledgeBase`
    (``search``, ``chunk``, ``len``, ``modes``, ``tokenizer``, ``idf``, ``doc_freq``, ``chunks``)."""

    def __init__(self, path: Path, info: dict):
        self.path = path
        self.info = info
        self.config = KBConfig.model_validate(info["config"])
        gdir = path / info["generation"]
        self.chunks, self.documents, self.mined_terms = read_generation(gdir, info)
        self.store, self.collection = collection_of(info["store"])
        self._client = client(self.store)
        if not _call(self.store, "has_collection", self._client.has_collection, self.collection):
            raise DomainlmError(f"kb store {info['store']}: collection {self.collection} is missing; rebuild with `domainlm kb build --force`")
        _call(self.store, "load_collection", self._client.load_collection, self.collection)
        self._row = {c["id"]: i for i, c in enumerate(self.chunks)}
        self._gdir = gdir
        self._doc_freq: Counter | None = None
        self.bm25 = None  # the engine holds the index: nothing of it is in memory here
        self.vectors = None
        self.ann = None
        self._tokenizer = None
        self._embedder = None
        self._terms_mtime: float | None = None
        self._query_vectors: dict[str, np.ndarray] = {}
        self.query_cache_size = 256

    @property
    def embedder(self):
        if self._embedder is None and self.info.get("dim"):
            self._embedder = load_embedder(self.config.embedder)
        return self._embedder

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.info.get("dim") else ("bm25",)

    def doc_freq(self, token: str) -> int:
        """How many chunks contain ``token``, counted from the generation's tokens.jsonl (the same
        jieba tokens the on-disk store indexes; Milvus does not expose its document frequencies)."""
        if self._doc_freq is None:
            self._doc_freq = Counter()
            for record in iter_jsonl(self._gdir / "tokens.jsonl"):
                self._doc_freq.update(set(record["t"]))
        return self._doc_freq.get(token, 0)

    def chunk(self, chunk_id: str) -> dict | None:
        row = self._row.get(chunk_id)
        return self.chunks[row] if row is not None else None

    def store_summary(self) -> dict:
        stats = _call(self.store, "get_collection_stats", self._client.get_collection_stats, self.collection)
        described = _call(self.store, "describe_collection", self._client.describe_collection, self.collection)
        params = next((f.get("params", {}).get("analyzer_params") for f in described.get("fields", []) if f.get("name") == "text"), None)
        if isinstance(params, str):
            params = json.loads(params)
        tokenizer = (params or {}).get("tokenizer")
        analyzer_name = "jieba with the KB's dictionary" if isinstance(tokenizer, dict) else "jieba, the engine's own dictionary"
        return {"kind": "milvus", "url": self.info["store"], "collection": self.collection,
                "lite": self.store.lite, "rows": int(stats.get("row_count", 0)), "analyzer": analyzer_name}

    def bm25_scores(self, query: str) -> np.ndarray:
        """BM25 score of each chunk as the engine computes it, for its best ``_fusion_depth`` chunks
        (the others: 0; the engine does not score every row)."""
        return self._scores(self._engine_search(query, "bm25", _fusion_depth(len(self.chunks), 5)), 0.0)

    def dense_scores(self, query: str, depth: int | None = None, also: np.ndarray | None = None) -> np.ndarray:
        """Cosine of ``query`` with the engine's ``depth`` nearest chunks (default: all); the rest -inf."""
        if not self.info.get("dim"):
            return np.zeros(len(self.chunks), dtype=np.float32)
        return self._scores(self._engine_search(query, "dense", depth or len(self.chunks)), -np.inf)

    def _scores(self, pairs: list[tuple[int, float]], fill: float) -> np.ndarray:
        scores = np.full(len(self.chunks), fill, dtype=np.float32)
        for row, score in pairs:
            scores[row] = score
        return scores

    def _query_vector(self, query: str) -> list[float]:
        qv = self._query_vectors.get(query)
        if qv is None:
            qv = self.embedder.queries([query])[0]
            if len(self._query_vectors) >= self.query_cache_size:
                self._query_vectors.pop(next(iter(self._query_vectors)))
            self._query_vectors[query] = qv
        return np.asarray(qv, dtype=np.float32).tolist()

    def _engine_search(self, query: str, mode: str, limit: int, fusion: str | None = None) -> list[tuple[int, float]]:
        """(row in chunks, score) of the engine's best ``limit`` chunks, best first. BM25 distances come
        back as the scores (the Milvus server) or negated (Milvus Lite 3.x); both are returned as the
        BM25 score here. Chunks the opened generation does not list (written by a writer that has not
        finished) are left out."""
        from pymilvus import AnnSearchRequest, RRFRanker

        limit = max(1, min(limit, len(self.chunks), 16384))  # 16384: Milvus's largest top-k
        bm25 = {"data": [normalize(query)], "anns_field": "sparse", "param": {"metric_type": "BM25"}}
        dense = {"anns_field": "dense", "param": {"metric_type": "COSINE"}}
        tuned = self.info.get("ann") or {}
        key = tuned.get("search_param")
        if key:  # the calibrated setting (a KB built before calibration searches at the engine's default)
            # HNSW's ef must be at least the number of hits asked for, here or in a fusion's deeper search.
            floor = max(limit, _fusion_depth(len(self.chunks), limit)) if key == "ef" else 1
            dense["param"]["params"] = {key: max(int(tuned[key]), floor)}
        c = self._client
        if mode == "bm25":
            result = _call(self.store, "search", c.search, self.collection, data=bm25["data"], anns_field="sparse",
                           search_params=bm25["param"], limit=limit, output_fields=["id"])
        elif mode == "dense":
            result = _call(self.store, "search", c.search, self.collection, data=[self._query_vector(query)],
                           anns_field="dense", search_params=dense["param"], limit=limit, output_fields=["id"])
        elif fusion == "weighted":
            return self._weighted(query, limit)
        else:
            depth = _fusion_depth(len(self.chunks), limit)
            requests = [AnnSearchRequest(**bm25, limit=depth),
                        AnnSearchRequest(data=[self._query_vector(query)], **dense, limit=depth)]
            result = _call(self.store, "hybrid_search", c.hybrid_search, self.collection, requests,
                           RRFRanker(self.config.rrf_k), limit=limit, output_fields=["id"])
        out = []
        for hit in result[0]:
            row = self._row.get(hit["id"])
            if row is not None:
                score = float(hit["distance"])
                # BM25 scores are >= 0; Milvus Lite 3.x returns them negated, the server's engine as they are.
                out.append((row, abs(score) if mode == "bm25" else score))
        return out

    def _weighted(self, query: str, limit: int) -> list[tuple[int, float]]:
        """Weighted fusion as the on-disk store computes it (``w * bm25 / max(bm25) + (1 - w) * cosine``)
        over the engine's BM25 and dense candidates, the cosine of a BM25-only candidate computed here from
        its stored vector. Not the engine's ``WeightedRanker``: its BM25 normalisation differs between
        engines (Milvus 2.5's ranks BM25 backwards, ``1 - 2/pi * atan(s)``; Lite 3.x uses ``2/pi * atan(s)``),
        and fusing here keeps the two stores' rankings the same."""
        depth = _fusion_depth(len(self.chunks), limit)
        bm25 = dict(self._engine_search(query, "bm25", depth))
        dense = dict(self._engine_search(query, "dense", depth))
        missing = [self.chunks[row]["id"] for row in bm25 if row not in dense]
        if missing:
            qv = np.asarray(self._query_vector(query), dtype=np.float32)
            stored = _call(self.store, "get", self._client.get, self.collection, ids=missing, output_fields=["dense"])
            for record in stored:
                row = self._row.get(record["id"])
                if row is not None:
                    dense[row] = float(np.asarray(record["dense"], dtype=np.float32) @ qv)
        top = max(bm25.values(), default=0.0)
        w = self.config.bm25_weight
        fused = {row: w * (bm25.get(row, 0.0) / top if top > 0 else 0.0) + (1 - w) * dense.get(row, 0.0) for row in bm25.keys() | dense.keys()}
        return sorted(fused.items(), key=lambda p: (-p[1], self.chunks[p[0]]["id"]))[:limit]

    def search(
        self, query: str, k: int = 5, mode: str = "hybrid", *, fusion: str | None = None, rerank: int = 0
    ) -> list[Hit]:
        """Top ``k`` chunks for ``query``, as :meth:`KnowledgeBase.search`: bm25 and dense are the engine's
        own searches; hybrid is weighted fusion of the two (:meth:`_weighted`, the default) or the engine's
        ``hybrid_search`` with RRF (the KB's ``rrf_k``). A hybrid
        hit's ``bm25``/``dense`` are None: the engine returns only the fused score. Ties are broken by
        chunk id."""
        if mode not in MODES:
            raise DomainlmError(f"unknown search mode '{mode}' (expected one of {', '.join(MODES)})")
        if mode == "dense" and not self.info.get("dim"):
            raise DomainlmError(f"{self.path}: built without embeddings (embedder 'none'); use --mode bm25")
        if not isinstance(query, str) or not query.strip():
            raise DomainlmError("empty query")
        if len(query) > self.config.max_query_chars:
            raise DomainlmError(f"query is {len(query)} characters; the limit is {self.config.max_query_chars} (max_query_chars)")
        if not self.chunks or k <= 0:
            return []
        if mode == "hybrid" and not self.info.get("dim"):
            mode = "bm25"
        want = max(k, rerank)
        # A few extra: ties at the cut are ordered by id, and rows of an unfinished writer are dropped.
        pairs = self._engine_search(query, mode, want + 8, fusion or self.config.fusion)
        pairs = sorted(pairs, key=lambda p: (-round(p[1], 6), self.chunks[p[0]]["id"]))[:want]
        hits = []
        for rank, (row, score) in enumerate(pairs, start=1):
            c = self.chunks[row]
            hits.append(Hit(
                chunk_id=c["id"], doc_id=c["doc_id"], source=c["source"], title=c.get("title", ""),
                headings=c.get("headings", []), start=c["start"], end=c["end"], text=c["text"],
                score=round(score, 6), rank=rank,
                bm25=round(score, 6) if mode == "bm25" else None, dense=round(score, 6) if mode == "dense" else None,
            ))
        if rerank:
            from domainlm.kb.answer import rerank as rerank_hits

            hits = rerank_hits(self, query, hits)
        return hits[:k]
