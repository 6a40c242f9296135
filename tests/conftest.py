import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"

# Tests never reach a model hub; everything they load is made locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def shared_benchmarks() -> Path:
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"{SHARED_BENCHMARKS} is not beside this checkout")
    return SHARED_BENCHMARKS


@pytest.fixture
def unreadable_file():
    """Make ``path`` a file whose read fails for every user, root included: a link to /proc/self/mem
    (reading it at offset 0 raises EIO). chmod 000 would not do: root reads through it."""

    def make(path: Path) -> Path:
        if not os.path.exists("/proc/self/mem"):
            pytest.skip("needs Linux /proc to make a file no user can read")
        path.symlink_to("/proc/self/mem")
        return path

    return make


@pytest.fixture
def unprivileged() -> list[str]:
    """Command prefix under which permission bits hold: nothing for a normal user; for root (CI runs as
    root), setpriv dropping the capabilities that let root read and list any folder."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"] if setpriv else None
    if prefix is None or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without a working setpriv: no way to make a folder unreadable to root")
    return prefix
