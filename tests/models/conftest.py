from pathlib import Path

import pytest

from domainlm.models.testing import make_tiny_model


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("qwen") / "m", arch="qwen2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("llama") / "m", arch="llama")
