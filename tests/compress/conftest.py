"""Shared fixtures: the sample domain, a small gate suite from its eval tasks, and a trained tiny teacher.

The teacher is a real tiny Qwen2 model (tokenizer learned from the sample documents) trained for 150 steps
on the gate tasks' training items and the documents. The gate suite is those same training items: what the
teacher was taught, so its score there is well above chance (about 0.4) and compression has something to
lose. (On the held-out eval items a model this small scores at chance level, where retention says nothing.)
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchao")

# unanswerable is left out: an untrained model that says nothing scores there, which would blur the gate tests
# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine torch's OpenMP threads
# spin against each other (measured here: over 10 minutes with 2 threads, under 3 minutes with 1). The thread
# count is restored after each module, so other packages' tests are unaffected.
@contextlib.contextmanager
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


GATE_TASKS = ("mcq", "intent", "knowledge_qa")


@pytest.fixture(scope="session")
def sample_root() -> Path:
    from domainlm.sample.defaults import sample_root

    return sample_root()


@pytest.fixture(scope="session")
def gate_suite(sample_root, tmp_path_factory) -> Path:
    """Three of the sample's tasks (the items the teacher learned), short answers (a suite.yaml is how eval
    suites set this)."""
    folder = tmp_path_factory.mktemp("gate") / "suite"
    folder.mkdir()
    for task in GATE_TASKS:
        shutil.copy(sample_root / "tasks" / "train" / f"{task}.jsonl", folder / f"{task}.jsonl")
    shutil.copy(sample_root / "tasks" / "taxonomy.json", folder / "taxonomy.json")
    (folder / "suite.yaml").write_text("name: gate\nmax_new_tokens: 12\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def train_files(sample_root) -> list[str]:
    return sorted(str(p) for p in (sample_root / "tasks" / "train").glob("*.jsonl"))


@pytest.fixture(scope="session")
def teacher(sample_root, train_files, tmp_path_factory) -> Path:
    """150 steps of plain cross-entropy (the compress stage's own loop with no teacher) on the gate tasks'
    training items and the documents."""
    from domainlm.compress import CompressConfig
    from domainlm.compress.data import training_examples
    from domainlm.compress.distill import train_student
    from domainlm.compress.merge import save_hf
    from domainlm.io import iter_jsonl
    from domainlm.models.hf import load_hf
    from domainlm.models.testing import make_tiny_model

    documents = sample_root / "truth" / "documents.jsonl"
    texts = [r["text"] for r in iter_jsonl(documents)]
    root = tmp_path_factory.mktemp("teacher")
    base = make_tiny_model(root / "base", vocab_from=texts, vocab_size=1500, hidden_size=64, num_layers=4,
                           intermediate_size=128)
    model, tokenizer = load_hf(base, device="cpu", dtype="float32")
    gate_train = [f for f in train_files if Path(f).stem in GATE_TASKS]
    # 384 tokens: room for an intent prompt with its 24 labels, so every gate task is trained
    examples, _ = training_examples([*gate_train, documents], tokenizer, 384)
    with one_thread():  # session fixtures are set up before the module-scoped thread limit applies
        train_student(model, None, examples, CompressConfig(target="distill", steps=150, lr=3e-3),
                      tokenizer.pad_token_id, kd_weight=0.0)
    return save_hf(model, tokenizer, root / "teacher")
