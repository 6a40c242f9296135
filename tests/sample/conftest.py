import pytest

from domainlm.sample import generate_sample


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory):
    """The tiny sample domain, seed 0, generated once for all sample tests."""
    return generate_sample(tmp_path_factory.mktemp("sample") / "tiny0", seed=0, size="tiny")


@pytest.fixture(scope="session")
def small_files():
    """The small sample domain, seed 3, in memory ({relative path: bytes | records})."""
    from domainlm.sample import build_sample

    return build_sample(seed=3, size="small")
