"""Text sources for sandbox runs, tokenised to byte streams, and the mixing sampler.

A source is one of:

* a sample-domain folder (``domainlm sample --out DIR``): the clean text of ``truth/documents.jsonl``;
* a folder of documents: every ``*.jsonl`` (Document records), ``*.txt`` and ``*.md`` file in it;
* a Document JSONL file (``{"id", "text", ...}``); records without a string ``text`` are skipped and
  counted, never fatal;
* a SQuAD-style JSON file (``data[].paragraphs[].context``), e.g. CMRC 2018 passages used as general
  Chinese text;
* a plain ``.txt`` / ``.md`` file.

Every source is split by document: every ``1/val_fraction``-th document is held out for validation, so
validation text is never trained on. Tokens are stored as ``.npy`` files in the sweep folder and memory
mapped by the worker processes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainlm.errors import DomainlmError
from domainlm.io import atomic_write, iter_jsonl
from domainlm.sandbox import tokenizer


@dataclass
class LoadedText:
    texts: list[str]
    skipped: int = 0


def _from_jsonl(path: Path, out: LoadedText) -> None:
    for record in iter_jsonl(path):
        text = record.get("text")
        if isinstance(text, str) and text.strip():
            out.texts.append(text)
        else:
            out.skipped += 1  # a bad record never kills the batch


def _from_squad(path: Path, out: LoadedText) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DomainlmError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DomainlmError(f"{path}: expected a SQuAD-style object with a 'data' list")
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []) if isinstance(article, dict) else []:
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if isinstance(context, str) and context.strip():
                out.texts.append(context)
            else:
                out.skipped += 1


def load_texts(path: str | Path) -> LoadedText:
    """The documents of one source (see the module docstring for what a source may be)."""
    path = Path(path)
    out = LoadedText(texts=[])
    if path.is_dir():
        truth = path / "truth" / "documents.jsonl"
        if truth.is_file():
            _from_jsonl(truth, out)
        else:
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix in (".jsonl", ".txt", ".md"):
                    _load_file(file, out)
    elif path.is_file():
        _load_file(path, out)
    else:
        raise DomainlmError(f"{path}: no such file or folder")
    if not out.texts:
        raise DomainlmError(f"{path}: no text found (expected Document JSONL, SQuAD JSON, .txt/.md or a sample folder)")
    return out


def _load_file(file: Path, out: LoadedText) -> None:
    if file.suffix == ".jsonl":
        _from_jsonl(file, out)
    elif file.suffix == ".json":
        _from_squad(file, out)
    elif file.suffix in (".txt", ".md"):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DomainlmError(f"{file}: not UTF-8 text (clean it first with `domainlm clean`)") from None
        if text.strip():
            out.texts.append(text)
    else:
        raise DomainlmError(f"{file}: unsupported source type '{file.suffix}' (use .jsonl, .json, .txt or .md)")


def split_tokens(texts: list[str], val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Byte tokens of the training and validation documents, each document ended by EOT."""
    every = max(2, round(1 / val_fraction)) if val_fraction > 0 else 0
    train, val = [], []
    for index, text in enumerate(texts):
        ids = tokenizer.encode(text, eot=True).astype(np.uint16)
        (val if every and index % every == every - 1 else train).append(ids)
    if not val:  # one document: hold out its tail instead
        whole = np.concatenate(train)
        cut = int(len(whole) * (1 - max(val_fraction, 0.1)))
        return whole[:cut], whole[cut:]
    return np.concatenate(train), np.concatenate(val)


def prepare_sources(
    sources: dict[str, str | Path], out_dir: str | Path, val_fraction: float = 0.1, max_chars: int = 0
) -> dict[str, dict]:
    """Tokenise every source into ``out_dir/<name>.{train,val}.npy``; returns per-source stats."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {}
    for name, path in sources.items():
        loaded = load_texts(path)
        texts = loaded.texts
        if max_chars:
            kept, total = [], 0
            for text in texts:
                if total >= max_chars:
                    break
                kept.append(text[: max_chars - total])
                total += len(kept[-1])
            texts = kept
        train, val = split_tokens(texts, val_fraction)
        for split, array in (("train", train), ("val", val)):
            with atomic_write(out_dir / f"{name}.{split}.npy", "wb", encoding=None) as handle:
                np.save(handle, array)
        stats[name] = {"path": str(path), "documents": len(texts), "skipped_records": loaded.skipped,
                       "train_tokens": int(len(train)), "val_tokens": int(len(val))}
    return stats


def load_prepared(data_dir: str | Path, names) -> dict[str, dict[str, np.ndarray]]:
    data_dir = Path(data_dir)
    return {
        name: {split: np.load(data_dir / f"{name}.{split}.npy", mmap_mode="r") for split in ("train", "val")}
        for name in names
    }


class MixSampler:
    """Random training windows: each row of a batch comes from a source drawn with the mix weights."""

    def __init__(self, streams: dict[str, np.ndarray], weights: dict[str, float], seq_len: int, seed: int):
        names = [n for n in streams if weights.get(n, 0) > 0]
        if not names:
            raise DomainlmError("data mix: every source has weight 0")
        for name in names:
            if len(streams[name]) <= seq_len + 1:
                raise DomainlmError(f"data source '{name}': {len(streams[name])} tokens, fewer than seq_len+1")
        total = sum(weights[n] for n in names)
        self.names = names
        self.probs = np.array([weights[n] / total for n in names])
        self.streams = streams
        self.seq_len = seq_len
        self.rng = np.random.default_rng(seed)

    def batch(self, batch_size: int) -> np.ndarray:
        rows = np.empty((batch_size, self.seq_len + 1), dtype=np.int64)
        picks = self.rng.choice(len(self.names), size=batch_size, p=self.probs)
        for row, pick in enumerate(picks):
            stream = self.streams[self.names[pick]]
            start = self.rng.integers(0, len(stream) - self.seq_len - 1)
            rows[row] = stream[start : start + self.seq_len + 1]
        return rows


def eval_windows(stream: np.ndarray, seq_len: int, max_windows: int) -> np.ndarray:
    """Fixed, evenly spaced validation windows (the same for every run, whatever its seed)."""
    if len(stream) <= seq_len + 1:
        raise DomainlmError(f"validation stream of {len(stream)} tokens is shorter than seq_len+1={seq_len + 1}")
    count = min(max_windows, (len(stream) - 1) // seq_len)
    starts = np.linspace(0, len(stream) - seq_len - 1, count).astype(np.int64)
    return np.stack([np.asarray(stream[s : s + seq_len + 1], dtype=np.int64) for s in starts])
