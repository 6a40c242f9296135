"""The knowledge base on disk: its generations, the writer lock, and the writers (build, add, remove).

Layout of a KB folder (``format_version`` 1)::

    kb.json            format version, settings, current generation, file checksums (written last)
    manifest.json      the stage manifest (inputs, config, metrics), as every stage writes
    terms.txt          user domain terms, one a line: read at every open, no rebuild needed
    rejected.jsonl     inputs that could not be read, with the reason
    gen-000001/        one immutable generation of the index
        chunks.jsonl     chunk records (id, doc_id, source, title, headings, start, end, text)
        tokens.jsonl     the BM25 tokens of each chunk (so add/remove re-index without re-tokenising)
        documents.jsonl  document registry (id, source, sha256, n_chunks)
        mined_terms.txt  terms mined from the corpus at build time
        bm25/            bm25s index (memory-mapped on open)
        dense.npy        float32 [n_chunks, dim] embeddings (memory-mapped, read-only)
        dense.usearch    ANN graph over dense.npy, from ann.ANN_THRESHOLD chunks up (see domainlm.kb.ann)
        dense_keys.npy   uint64 key of each row in that graph
    .embed-cache/      vectors checkpointed while embedding (removed once a generation holds them): a
                       killed build or add re-embeds only what it does not hold

A writer (build/add/remove) holds ``.lock``, writes a complete new generation, then atomically replaces
``kb.json``: readers in other processes keep the generation they opened and never see a half-written one.
Reading and searching an opened generation is :mod:`domainlm.kb.search`.

With ``config.store`` set (a Milvus URL, see :mod:`domainlm.kb.milvus`) the layout is the same minus
``bm25/``, ``dense.npy`` and the ANN files: the index is a Milvus collection, ``kb.json``'s ``store`` names it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.errors import DomainlmError
from domainlm.io import iter_jsonl, read_json, sha256_file, sha256_text, write_json, write_jsonl, write_text
from domainlm.kb import ann
from domainlm.kb.chunking import chunk_document
from domainlm.kb.config import KBConfig
from domainlm.kb.embed import embed_passages, load_embedder
from domainlm.kb.terms import mine_terms
from domainlm.kb.text import Tokenizer, read_terms, tokenize_texts
from domainlm.progress import counting_bar

FORMAT_VERSION = 1
KB_FILE = "kb.json"
USER_TERMS = "terms.txt"
LOCK_FILE = ".lock"
EMBED_CACHE = ".embed-cache"
_GENERATION = re.compile(r"gen-\d{6}")


@dataclass
class _Generation:
    """One generation in memory, as the writers load, change and write it (every list in chunk order)."""

    chunks: list[dict]
    tokens: list[list[str]]
    documents: list[dict]
    mined_terms: list[str]
    vectors: np.ndarray | None
    index: object | None = None  # the ANN graph updated for these chunks; None: built when one is needed


@contextlib.contextmanager
def _writer_lock(kb_dir: Path):
    kb_dir.mkdir(parents=True, exist_ok=True)
    with open(kb_dir / LOCK_FILE, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            _remove_leftovers(kb_dir)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(kb_dir: Path) -> list[str]:
    """Remove what a killed writer left in the KB; call only while holding the writer lock.

    Why this is safe: only a writer holding ``.lock`` creates ``.gen-*`` temp folders and ``gen-*``
    folders, and the kernel drops a flock when its process dies (even on SIGKILL). So while we hold the
    lock, any temp folder belongs to a writer that is gone, never to one still writing. A ``gen-*``
    folder that ``kb.json`` does not name is unreferenced: either older than the current one (a writer
    finishes by removing those too; a reader that has it memory-mapped keeps its data, and one that is
    just opening it retries with the new kb.json) or newer (a writer died between renaming it into place
    and writing kb.json; no reader ever saw it, and it would block the next writer's rename). When
    kb.json exists but cannot be read, only the temp folders go: we cannot tell which generation is live.
    Returns the names removed.
    """
    info_path = kb_dir / KB_FILE
    current, known = None, True  # no kb.json: no generation is referenced
    if info_path.exists():
        try:
            current = read_json(info_path)["generation"]
        except (DomainlmError, OSError, KeyError, TypeError):
            known = False  # unreadable description: keep every generation
    removed = []
    for entry in kb_dir.iterdir():
        stale_temp = entry.name.startswith(".gen-")
        unreferenced = known and bool(_GENERATION.fullmatch(entry.name)) and entry.name != current
        if entry.is_dir() and (stale_temp or unreferenced):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def remove_leftovers_if_idle(kb_dir: Path) -> None:
    """For readers: remove a killed writer's leftovers when no writer is running right now (the lock is
    free), else leave them to that writer. Never fails: a read-only KB (no write permission, read-only
    disk) is simply left as it is."""
    try:
        if not any(e.name.startswith(".gen-") for e in kb_dir.iterdir()):
            return  # the common case: nothing to do, and no lock file is touched
        with open(kb_dir / LOCK_FILE, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a writer is running; it cleans up itself
            try:
                _remove_leftovers(kb_dir)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return


def only_build_leftovers(kb_dir: str | Path) -> bool:
    """Whether ``kb_dir`` holds nothing but what a KB build writes before its kb.json (the lock file, temp
    and finished generation folders, terms.txt): the folder of a build that was killed or failed, which a
    new build may take over. An empty folder counts too."""
    for entry in Path(kb_dir).iterdir():
        name = entry.name
        if not (name in _BUILD_FILES or name.startswith(".gen-") or _GENERATION.fullmatch(name)):
            return False
    return True


_BUILD_FILES = {LOCK_FILE, USER_TERMS, EMBED_CACHE}


def remove_unbuilt(kb_dir: str | Path) -> bool:
    """Remove ``kb_dir`` after a failed first build, when it holds no ``kb.json`` (no KB was ever written
    there), nothing but a writer's own files (:func:`only_build_leftovers`), no embedding checkpoints (an
    interrupted build keeps them, so that the next one resumes), and no other writer holds the lock. The
    caller knows the folder did not exist before its run. Returns whether it was removed."""
    kb_dir = Path(kb_dir)
    try:
        if not kb_dir.is_dir() or (kb_dir / KB_FILE).exists() or not only_build_leftovers(kb_dir):
            return False
        if any((kb_dir / EMBED_CACHE).glob("*/shard-*.npz")):
            return False
        with open(kb_dir / LOCK_FILE, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another build is writing here now
            if (kb_dir / KB_FILE).exists():
                return False
            shutil.rmtree(kb_dir)
    except OSError:
        return False
    return True


def read_info(kb_dir: Path) -> dict:
    """kb.json of ``kb_dir``, checked to be a knowledge base description this domainlm can read."""
    if not kb_dir.is_dir():
        raise DomainlmError(f"{kb_dir}: no such knowledge base folder")
    path = kb_dir / KB_FILE
    if not path.is_file():
        raise DomainlmError(f"{kb_dir}: not a knowledge base (no {KB_FILE}); build one with `domainlm kb build`")
    info = read_json(path)
    if not isinstance(info, dict) or "format_version" not in info or "generation" not in info:
        raise DomainlmError(f"{path}: not a knowledge base description (missing format_version/generation)")
    if info["format_version"] > FORMAT_VERSION:
        raise DomainlmError(
            f"{path}: format_version {info['format_version']} is newer than this domainlm reads ({FORMAT_VERSION}); upgrade domainlm"
        )
    return info


# ---------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------


def _progress():
    return counting_bar()


def _chunk_documents(documents: list[dict], config: KBConfig) -> tuple[list[dict], list[dict]]:
    chunks: list[dict] = []
    registry: list[dict] = []
    for doc in documents:
        title = str((doc.get("meta") or {}).get("title") or "")
        doc_chunks = chunk_document(
            doc["id"], doc["text"], chunk_chars=config.chunk_chars, title=title, source=doc["source"]
        )
        chunks.extend(c.to_record() for c in doc_chunks)
        registry.append(
            {"id": doc["id"], "source": doc["source"], "sha256": sha256_text(doc["text"]), "n_chunks": len(doc_chunks)}
        )
    return chunks, registry


def index_text(chunk: dict) -> str:
    """Title and headings before the chunk text, for both BM25 and embeddings."""
    head = " / ".join(h for h in [chunk.get("title", ""), *chunk.get("headings", [])] if h)
    return f"{head}\n{chunk['text']}" if head else chunk["text"]


def _tokenize(chunks: list[dict], tokenizer, show_progress: bool, workers: int | None) -> list[list[str]]:
    if not chunks:
        return []
    texts = [index_text(chunk) for chunk in chunks]
    with _progress() if show_progress else contextlib.nullcontext() as progress:
        task = progress.add_task("tokenising", total=len(texts)) if progress else None
        on_batch = (lambda n: progress.advance(task, n)) if progress else None
        return tokenize_texts(tokenizer, texts, workers=workers, on_batch=on_batch)


def _embed(chunks: list[dict], embedder, show_progress: bool, kb_dir: Path) -> tuple[np.ndarray, int]:
    """Vectors of ``chunks``, checkpointed under ``kb_dir/.embed-cache``; also how many the checkpoints
    of an interrupted run held."""
    texts = [index_text(c) for c in chunks]
    with _progress() if show_progress else contextlib.nullcontext() as progress:
        task = progress.add_task("embedding", total=len(texts)) if progress else None
        on_batch = (lambda n: progress.advance(task, n)) if progress else None
        return embed_passages(embedder, [c["id"] for c in chunks], texts, kb_dir / EMBED_CACHE, on_batch)


def _next_generation(kb_dir: Path) -> str:
    previous = read_info(kb_dir) if (kb_dir / KB_FILE).is_file() else None
    return f"gen-{int(previous['generation'].split('-')[1]) + 1 if previous else 1:06d}"


def _write_generation(
    kb_dir: Path, gen: _Generation, config: KBConfig, embedder_name: str | None, dim: int, store: str | None = None,
    store_ann: dict | None = None,
) -> dict:
    """Write a complete generation folder, then point kb.json at it; returns the new kb.json. With a
    ``store`` (the URL of the Milvus collection that holds the index) no index files are written;
    ``store_ann`` is then the calibration of its dense index (milvus.calibrate_dense)."""
    import bm25s

    name = _next_generation(kb_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=kb_dir))
    try:
        write_jsonl(tmp / "chunks.jsonl", gen.chunks)
        write_jsonl(tmp / "tokens.jsonl", ({"t": t} for t in gen.tokens))
        write_jsonl(tmp / "documents.jsonl", gen.documents)
        write_text(tmp / "mined_terms.txt", "".join(t + "\n" for t in gen.mined_terms))
        ann_info = store_ann
        if store is None:
            if gen.chunks:
                retriever = bm25s.BM25(k1=config.k1, b=config.b)
                retriever.index(gen.tokens, show_progress=False)
                retriever.save(str(tmp / "bm25"))
            if gen.vectors is not None and len(gen.chunks):
                np.save(tmp / "dense.npy", np.ascontiguousarray(gen.vectors, dtype=np.float32))
            ann_info = _write_ann(tmp, gen, config, dim)
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        os.replace(tmp, kb_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info = {
        "format_version": FORMAT_VERSION,
        "generation": name,
        "n_documents": len(gen.documents),
        "n_chunks": len(gen.chunks),
        "embedder": embedder_name,
        "dim": dim,
        "config": config.model_dump(mode="json"),
        "files": files,
    }
    if ann_info:
        info["ann"] = ann_info
    if store:
        info["store"] = store
    write_json(kb_dir / KB_FILE, info)
    # Older generations are no longer referenced. A process that has one memory-mapped keeps reading
    # it (the data stays until it closes the mapping).
    for old in kb_dir.glob("gen-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return info


def _write_ann(folder: Path, gen: _Generation, config: KBConfig, dim: int) -> dict | None:
    """Save the ANN graph of ``gen`` into ``folder`` when it has enough chunks (building it when ``gen``
    brings none), calibrated on its vectors (``ann.calibrate``: which search, which expansion, recall@10
    against exact search); None below the threshold, where the KB searches exactly."""
    n = len(gen.chunks)
    if gen.vectors is None or n == 0 or n < ann.threshold(config):
        return None
    keys = ann.chunk_keys([c["id"] for c in gen.chunks])
    if len(np.unique(keys)) != n:
        return None  # two chunk ids share a 64-bit hash (odds ~n^2/2^65): exact search stays correct
    index = gen.index
    if index is None or len(index) != n:
        index = ann.update_index(None, dim, keys[:0], keys, gen.vectors)
    index.save(str(folder / ann.INDEX_FILE))
    np.save(folder / ann.KEYS_FILE, keys)
    from importlib.metadata import version

    return {
        "library": f"usearch {version('usearch')}",
        "threshold": ann.threshold(config),
        "recall_sample": min(ann.RECALL_SAMPLE, n),
        **ann.calibrate(index, gen.vectors, keys, prefer=config.ann_search),
    }


def build_kb(
    documents: list[dict], out: str | Path, config: KBConfig | None = None, *, show_progress: bool = False,
    workers: int | None = None,
) -> dict:
    """Build a knowledge base from documents ``{"id","text","source","meta"}``; returns kb.json's content.
    ``workers``: processes that tokenise a large corpus (default: one per available core; see
    :func:`domainlm.kb.text.tokenize_texts`).

    A later document with an id already seen is skipped (the first wins) and reported in ``info["duplicates"]``.
    """
    config = config or KBConfig()
    out = Path(out)
    seen: set[str] = set()
    unique, duplicates = [], []
    for doc in documents:
        (duplicates if doc["id"] in seen else unique).append(doc)
        seen.add(doc["id"])
    if not unique:
        raise DomainlmError("no documents to index (every input was empty or unreadable)")
    user_terms = []
    if config.terms:
        if not Path(config.terms).is_file():
            raise DomainlmError(f"{config.terms}: term file not found")
        user_terms = read_terms(config.terms)
    remote = None
    if config.store:
        from domainlm.kb import milvus

        remote = milvus.parse_url(config.store)  # a bad URL fails here, before anything is written
        # So does a store that cannot be reached or a Lite file another process holds: now, not after the
        # embedding (hours for a large corpus). The client is kept (one per URI) for the writes below.
        milvus.client(remote)
    embedder = load_embedder(config.embedder)
    with _writer_lock(out):
        chunks, registry = _chunk_documents(unique, config)
        tokenizer = Tokenizer()
        mined = mine_terms((d["text"] for d in unique), known=tokenizer.known_words()) if config.mine_terms else []
        tokenizer.add_terms(mined + user_terms)
        tokens = _tokenize(chunks, tokenizer, show_progress, workers)
        vectors, reused = _embed(chunks, embedder, show_progress, out) if embedder else (None, 0)
        if config.terms:
            write_text(out / USER_TERMS, "".join(t + "\n" for t in user_terms))
        gen = _Generation(chunks, tokens, registry, mined, vectors)
        dim = embedder.dim if embedder else 0
        store_url, store_ann = None, None
        if remote is not None:
            # A new collection per build: the old one serves readers until kb.json names the new one.
            collection = f"{remote.collection or milvus.default_collection(out)}_g{_next_generation(out)[4:]}"
            dense_index = milvus.create_collection(remote, collection, dim, mined + user_terms, config)
            milvus.upsert_chunks(remote, collection, chunks, vectors)
            if vectors is not None and dense_index:
                store_ann = milvus.calibrate_dense(remote, collection, vectors, [c["id"] for c in chunks], dense_index)
            store_url = remote.url(collection)
            gen.vectors = None  # the collection holds them
        before = read_info(out).get("store") if (out / KB_FILE).is_file() else None
        info = _write_generation(out, gen, config, embedder.name if embedder else None, dim, store_url, store_ann)
        if remote is not None:
            milvus.drop_other_builds(remote, collection)
        if before and before != store_url:
            _drop_collection(before)  # the KB moved to another store (or back to files): free the old one
        shutil.rmtree(out / EMBED_CACHE, ignore_errors=True)  # dense.npy (or the collection) holds them now
    info["embedded"] = {"new": len(chunks) - reused if embedder else 0, "from_checkpoint": reused}
    info["duplicates"] = [d["id"] for d in duplicates]
    return info


def _drop_collection(url: str) -> None:
    """Drop a collection this KB no longer uses; a store that cannot be reached keeps it (the KB is
    complete without it, so that is no reason to fail a build)."""
    from domainlm.kb import milvus

    try:
        store, collection = milvus.collection_of(url)
        c = milvus.client(store)
        if c.has_collection(collection):
            c.drop_collection(collection)
    except Exception:  # noqa: BLE001 - best effort, see above
        return


# ---------------------------------------------------------------------------------------------------
# Incremental updates
# ---------------------------------------------------------------------------------------------------


def _load_generation(kb_dir: Path, info: dict) -> _Generation:
    gdir = kb_dir / info["generation"]
    chunks = list(iter_jsonl(gdir / "chunks.jsonl"))
    tokens = [r["t"] for r in iter_jsonl(gdir / "tokens.jsonl")]
    documents = list(iter_jsonl(gdir / "documents.jsonl"))
    mined = [t for t in (gdir / "mined_terms.txt").read_text(encoding="utf-8").splitlines() if t]
    vectors = np.load(gdir / "dense.npy") if (gdir / "dense.npy").is_file() else None
    if info.get("store"):
        return _Generation(chunks, tokens, documents, mined, None)  # the vectors are in the collection
    if info.get("dim") and vectors is None:
        vectors = np.zeros((0, info["dim"]), dtype=np.float32)
    # The graph is loaded to be changed in place (add/remove update it rather than build it again).
    index = ann.load_index(gdir / ann.INDEX_FILE) if (gdir / ann.INDEX_FILE).is_file() else None
    return _Generation(chunks, tokens, documents, mined, vectors, index)


def _drop(gen: _Generation, doc_ids: set[str]) -> _Generation:
    keep = [i for i, c in enumerate(gen.chunks) if c["doc_id"] not in doc_ids]
    dropped = [c["id"] for c in gen.chunks if c["doc_id"] in doc_ids]
    index = gen.index
    if index is not None and dropped:
        index = ann.update_index(index, 0, ann.chunk_keys(dropped), np.zeros(0, np.uint64), np.zeros((0, 0)))
    return _Generation(
        [gen.chunks[i] for i in keep],
        [gen.tokens[i] for i in keep],
        [d for d in gen.documents if d["id"] not in doc_ids],
        gen.mined_terms,
        gen.vectors[keep] if gen.vectors is not None else None,
        index,
    )


def add_documents(kb_dir: str | Path, documents: list[dict], *, show_progress: bool = False, workers: int | None = None) -> dict:
    """Add documents to a KB (a document whose id exists replaces it); only new text is tokenised and
    embedded, then BM25 statistics are recomputed over all chunks, so the result equals a rebuild of the
    same documents with the KB's term dictionary. Returns the new kb.json plus counts."""
    kb_dir = Path(kb_dir)
    info = read_info(kb_dir)
    config = KBConfig.model_validate(info["config"])
    with _writer_lock(kb_dir):
        info = read_info(kb_dir)  # re-read under the lock: another writer may have finished meanwhile
        gen = _load_generation(kb_dir, info)
        unique: dict[str, dict] = {}
        for doc in documents:
            unique.setdefault(doc["id"], doc)
        known = {d["id"]: d for d in gen.documents}
        changed = [d for d in unique.values() if known.get(d["id"], {}).get("sha256") != sha256_text(d["text"])]
        replaced = sorted(d["id"] for d in changed if d["id"] in known)
        gen = _drop(gen, set(replaced))
        chunks, registry = _chunk_documents(changed, config)
        tokenizer = Tokenizer(gen.mined_terms + read_terms(kb_dir / USER_TERMS))
        tokens = _tokenize(chunks, tokenizer, show_progress, workers)
        embedder = load_embedder(config.embedder)
        new_vectors, _ = _embed(chunks, embedder, show_progress, kb_dir) if embedder else (None, 0)
        vectors, index = gen.vectors, gen.index
        store = info.get("store")
        if store:
            # In place: every changed document's rows go (also those a killed add left), then its new
            # chunks are upserted; re-running an interrupted add ends in the same collection.
            from domainlm.kb import milvus

            remote, collection = milvus.collection_of(store)
            milvus.delete_documents(remote, collection, [d["id"] for d in changed])
            milvus.upsert_chunks(remote, collection, chunks, new_vectors)
        elif embedder is not None:
            vectors = np.concatenate([gen.vectors.reshape(-1, info["dim"]), new_vectors]) if gen.vectors is not None else new_vectors
            if index is not None and chunks:
                index = ann.update_index(index, embedder.dim, np.zeros(0, np.uint64), ann.chunk_keys([c["id"] for c in chunks]), new_vectors)
        merged = _Generation(gen.chunks + chunks, gen.tokens + tokens, gen.documents + registry, gen.mined_terms, vectors, index)
        # A Milvus collection changes in place and keeps its calibrated search expansion.
        new_info = _write_generation(kb_dir, merged, config, info.get("embedder"), info.get("dim", 0), store, info.get("ann") if store else None)
        shutil.rmtree(kb_dir / EMBED_CACHE, ignore_errors=True)
    new_info["added"] = sorted(d["id"] for d in changed if d["id"] not in known)
    new_info["replaced"] = replaced
    new_info["unchanged"] = sorted(d["id"] for d in unique.values() if d not in changed)
    return new_info


def remove_documents(kb_dir: str | Path, doc_ids: list[str]) -> dict:
    """Remove documents by id; unknown ids are reported in ``missing`` (an error when none is known)."""
    kb_dir = Path(kb_dir)
    read_info(kb_dir)
    with _writer_lock(kb_dir):
        info = read_info(kb_dir)
        gen = _load_generation(kb_dir, info)
        known = {d["id"] for d in gen.documents}
        missing = sorted(set(doc_ids) - known)
        present = set(doc_ids) & known
        if not present:
            raise DomainlmError(f"{kb_dir}: no document with id {', '.join(repr(i) for i in missing[:5])}")
        config = KBConfig.model_validate(info["config"])
        if info.get("store"):
            from domainlm.kb import milvus

            remote, collection = milvus.collection_of(info["store"])
            milvus.delete_documents(remote, collection, sorted(present))
        new_info = _write_generation(
            kb_dir, _drop(gen, present), config, info.get("embedder"), info.get("dim", 0), info.get("store"),
            info.get("ann") if info.get("store") else None,
        )
    new_info["removed"] = sorted(present)
    new_info["missing"] = missing
    return new_info

