"""What the library falls back to when nobody names data: the sample domain (Harbor Bank), seed 0, size tiny.

The library itself takes explicit arguments; the commands and the ``tiny`` model spec fill them in from
here. Keeping every sample-domain default in the sample package means the compression gate, the distiller
and the model loader do not have to know the sample exists, and a domain of your own never meets Harbor
Bank by accident. The generated sample is cached under ``$DOMAINLM_CACHE`` (``~/.cache/domainlm``).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from domainlm.io import iter_jsonl
from domainlm.models import BUILTIN_CORPUS, Corpus, builtin_corpus, cache_root
from domainlm.sample.generate import generate_sample

SAMPLE_DIR = Path(__file__).resolve().parent

# Conversations `domainlm compress` times decoding on (tokens/s in gate.json): bank questions in both
# languages, short enough that decoding, not prefill, dominates.
SPEED_PROMPTS = [
    [{"role": "user", "content": "请介绍一下海港银行的信用卡产品。"}],
    [{"role": "user", "content": "What documents do I need to open a savings account?"}],
    [{"role": "user", "content": "定期存款提前支取怎么计息？"}],
    [{"role": "user", "content": "Explain the fees of a cross-border transfer."}],
]


def sample_root() -> Path:
    """The sample domain (seed 0, size tiny), generated once into the cache."""
    folder = cache_root() / "sample" / "seed0-tiny"
    if not (folder / "tasks" / "eval").is_dir():
        generate_sample(folder, seed=0, size="tiny")
    return folder


def gate_suite() -> Path:
    """The sample's ``tasks/eval``: what ``domainlm compress`` gates on without ``--gate``."""
    return sample_root() / "tasks" / "eval"


def distill_data() -> list[str]:
    """The sample's training tasks and documents: what ``domainlm compress --to distill|prune`` trains on
    without ``--data``."""
    root = sample_root()
    return [str(root / "tasks" / "train"), str(root / "truth" / "documents.jsonl")]


def _tiny_texts() -> list[str]:
    texts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_sample(Path(tmp) / "sample", seed=0, size="tiny")
        truth = Path(tmp) / "sample" / "truth" / "documents.jsonl"
        if truth.is_file():
            texts = [r["text"] for r in iter_jsonl(truth) if r.get("text")]
    return texts + builtin_corpus()


def _tiny_key() -> str:
    # The sample is a function of this package's code, so its sources (and the builtin text) name the
    # corpus: a cached `tiny` is found without generating the sample, and rebuilt when the generator changes.
    digest = hashlib.sha256(BUILTIN_CORPUS.read_bytes())
    for path in sorted(SAMPLE_DIR.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tiny_corpus() -> Corpus:
    """What the ``tiny`` model spec's tokenizer learns from: the sample's documents and the builtin text."""
    return Corpus(key=_tiny_key(), make=_tiny_texts)
