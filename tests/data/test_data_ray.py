"""--engine ray runs the same operators on Ray Data (a local cluster) and writes the same bytes."""

import pytest

from domainlm.data import clean


def test_ray_engine_matches_local(tmp_path):
    pytest.importorskip("ray.data")
    from domainlm.sample import generate_sample

    generate_sample(tmp_path / "sample", seed=0, size="tiny")
    inputs = [tmp_path / "sample" / "docs", tmp_path / "sample" / "web"]
    local = clean(inputs, tmp_path / "local", {"engine": "local", "workers": 2})
    ray = clean(inputs, tmp_path / "ray", {"engine": "ray", "workers": 2})
    assert ray.metrics["kept"] == local.metrics["kept"] and ray.metrics["duplicates"] == local.metrics["duplicates"]
    for name in ("clean.jsonl", "rejected.jsonl", "trace.jsonl", "datacard.md"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
