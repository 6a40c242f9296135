import pytest

from domainlm.sample import generate_sample


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory):
    """The tiny sample domain, seed 0, generated once for all sample tests."""
    return generate_sample(tmp_path_factory.mktemp("sample") / "tiny0", seed=0, size="tiny")
