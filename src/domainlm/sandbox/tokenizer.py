"""A byte-level tokenizer: token id = UTF-8 byte value, plus one end-of-text id.

Why not a trained BPE: a sandbox run must measure the *model and data* choices, and its results must be
comparable across corpora, data mixes and machines. A trained tokenizer would be one more artefact to
build, version and keep identical between runs, and its merges would change with the corpus being swept.
Bytes need nothing trained, are deterministic, cover Chinese and English alike (a CJK character is 3
bytes), and give loss in bits per byte, which is comparable across languages and mixes.
Written by hand because it is four lines; no library does less.
"""

from __future__ import annotations

import numpy as np

VOCAB_SIZE = 257  # 256 byte values + end-of-text
EOT = 256


def encode(text: str, *, eot: bool = False) -> np.ndarray:
    ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    if eot:
        ids = np.append(ids, EOT)
    return ids


def decode(ids) -> str:
    data = bytes(int(i) for i in ids if 0 <= int(i) < 256)
    return data.decode("utf-8", errors="replace")
