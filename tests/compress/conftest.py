"""Shared fixtures: the sample domain, a small gate suite from its eval tasks, and a trained tiny teacher.

The teacher is a real tiny Qwen2 model (tokenizer learned from the sample documents) fine-tuned for a
few dozen steps on the sample's training tasks with the train stage, so its domain score is above
chance and compression has something to lose.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchao")

GATE_TASKS = ("mcq", "intent", "knowledge_qa", "unanswerable")


@pytest.fixture(scope="session")
def sample_root() -> Path:
    from domainlm.compress.gate import default_suite

    return default_suite().parent.parent


@pytest.fixture(scope="session")
def gate_suite(sample_root, tmp_path_factory) -> Path:
    """Four of the sample's eval tasks, short answers (a suite.yaml is how eval suites set this)."""
    folder = tmp_path_factory.mktemp("gate") / "suite"
    folder.mkdir()
    for task in GATE_TASKS:
        shutil.copy(sample_root / "tasks" / "eval" / f"{task}.jsonl", folder / f"{task}.jsonl")
    shutil.copy(sample_root / "tasks" / "taxonomy.json", folder / "taxonomy.json")
    (folder / "suite.yaml").write_text("name: gate\nmax_new_tokens: 12\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def train_files(sample_root) -> list[str]:
    return sorted(str(p) for p in (sample_root / "tasks" / "train").glob("*.jsonl"))


@pytest.fixture(scope="session")
def teacher(sample_root, train_files, tmp_path_factory) -> Path:
    from domainlm.io import iter_jsonl
    from domainlm.models.testing import make_tiny_model
    from domainlm.train import TrainConfig, train

    texts = [r["text"] for r in iter_jsonl(sample_root / "truth" / "documents.jsonl")]
    root = tmp_path_factory.mktemp("teacher")
    base = make_tiny_model(root / "base", vocab_from=texts, vocab_size=1500, hidden_size=64, num_layers=4,
                           intermediate_size=128)
    cfg = TrainConfig(stage="sft", max_steps=40, batch_size=8, seq_len=256, lr=3e-3, eval_fraction=0)
    train(str(base), train_files, root / "teacher", cfg)
    return root / "teacher"
