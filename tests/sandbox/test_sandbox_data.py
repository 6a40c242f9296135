"""Byte tokenizer, text sources (sample domain, Document JSONL with bad records, SQuAD JSON), mix sampler."""

import json

import numpy as np
import pytest

from domainlm.errors import DomainlmError
from domainlm.sandbox import tokenizer
from domainlm.sandbox.data import MixSampler, eval_windows, load_texts, prepare_sources


def test_byte_tokenizer_round_trips_chinese_and_english():
    text = "海港银行 Harbor Bank：年利率 1.85%"
    ids = tokenizer.encode(text, eot=True)
    assert ids[-1] == tokenizer.EOT and ids.max() < tokenizer.VOCAB_SIZE
    assert len(ids) == len(text.encode("utf-8")) + 1
    assert tokenizer.decode(ids) == text


def test_document_jsonl_skips_bad_records(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "第一篇文档。"}\n{"id": "b"}\n{"id": "c", "text": 5}\n{"id": "d", "text": "two"}\n',
                    encoding="utf-8")
    loaded = load_texts(path)
    assert loaded.texts == ["第一篇文档。", "two"] and loaded.skipped == 2


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{not json\n', encoding="utf-8")
    with pytest.raises(DomainlmError, match=r"docs.jsonl:2"):
        load_texts(path)


def test_squad_passages_as_general_text(shared_benchmarks):
    # CMRC 2018 passages stand in for "general Chinese text" in data mixes.
    loaded = load_texts(shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json")
    assert len(loaded.texts) > 800 and all(isinstance(t, str) for t in loaded.texts)


def test_prepare_sources_holds_out_whole_documents(tmp_path):
    docs = [{"id": str(i), "text": f"document number {i} " * 5} for i in range(20)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(d) for d in docs), encoding="utf-8")
    stats = prepare_sources({"d": tmp_path / "d.jsonl"}, tmp_path / "out", val_fraction=0.1)
    train = np.load(tmp_path / "out" / "d.train.npy")
    val = np.load(tmp_path / "out" / "d.val.npy")
    assert stats["d"]["documents"] == 20
    assert tokenizer.decode(val).count("document number") == 2 * 5  # documents 9 and 19
    assert "document number 9 " not in tokenizer.decode(train)


def test_mix_sampler_follows_weights():
    streams = {"a": np.zeros(1000, dtype=np.uint16), "b": np.ones(1000, dtype=np.uint16)}
    batch = MixSampler(streams, {"a": 0.8, "b": 0.2}, seq_len=16, seed=0).batch(2000)
    share_a = float((batch[:, 0] == 0).mean())
    assert 0.76 < share_a < 0.84
    with pytest.raises(DomainlmError, match="weight 0"):
        MixSampler(streams, {"a": 0, "b": 0}, seq_len=16, seed=0)


def test_eval_windows_fixed_and_bounded():
    stream = np.arange(500)
    w = eval_windows(stream, 32, 8)
    assert w.shape == (8, 33) and w[-1, -1] == 499
    assert np.array_equal(w, eval_windows(stream, 32, 8))
