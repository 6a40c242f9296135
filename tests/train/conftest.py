import json
from pathlib import Path

import pytest

from domainlm.models.testing import make_tiny_model


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    from domainlm.sample import generate_sample

    return generate_sample(tmp_path_factory.mktemp("sample") / "harbor", seed=0, size="tiny")


def sample_texts(sample: Path) -> list[str]:
    texts = [json.loads(line)["text"] for line in (sample / "truth" / "documents.jsonl").open(encoding="utf-8")]
    for path in sorted((sample / "tasks" / "train").glob("*.jsonl")):
        texts += [line for line in path.open(encoding="utf-8")]
    return texts


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory, sample_dir) -> Path:
    """A random Qwen2 model (hidden 64) whose tokenizer learned the sample domain's vocabulary."""
    return make_tiny_model(tmp_path_factory.mktemp("base") / "qwen", arch="qwen2", vocab_from=sample_texts(sample_dir),
                           vocab_size=1500, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=192)
