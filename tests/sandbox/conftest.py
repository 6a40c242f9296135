from pathlib import Path

import pytest

CMRC = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per run: on a busy 2-core machine torch's OpenMP threads spin against each
    other and a 2-thread run can be ten times slower than a 1-thread one."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def cmrc_path() -> Path:
    """CMRC 2018 passages: the 'general Chinese text' of data mixes in these tests."""
    if not CMRC.is_file():
        pytest.skip(f"{CMRC} is not beside this checkout")
    return CMRC.resolve()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The tiny Harbor Bank sample domain: the 'industry text' of data mixes."""
    from domainlm.sample.generate import generate_sample

    return generate_sample(tmp_path_factory.mktemp("harbor"), seed=0, size="tiny")
