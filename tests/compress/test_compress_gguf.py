"""GGUF export: llama.cpp's converter and quantizer, run in llama-cpp-python, checked for template parity."""

from __future__ import annotations

import pytest

from domainlm.compress import CompressConfig, compress
from domainlm.io import read_json
from domainlm.sample.defaults import SPEED_PROMPTS

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def converter():
    from domainlm.compress.gguf_export import converter_dir
    from domainlm.errors import DomainlmError

    try:  # cached, $DOMAINLM_LLAMA_CPP, or fetched once from llama-cpp-python's sdist with pip
        return converter_dir(fetch=True)
    except DomainlmError as exc:
        pytest.skip(str(exc))


def test_gguf_f16_passes_parity_and_answers_in_llama_cpp(teacher, gate_suite, converter, tmp_path):
    from domainlm.compress.gguf_export import gguf_metadata
    from domainlm.models import load_model

    out = tmp_path / "f16"
    compress(str(teacher), out, CompressConfig(target="gguf-f16", suites=[str(gate_suite)], min_retention=0.9),
             speed_prompts=SPEED_PROMPTS)
    path = out / "model-f16.gguf"
    meta = gguf_metadata(path)
    assert meta["general.architecture"] == "qwen2"
    assert meta["tokenizer.chat_template"] == (teacher / "chat_template.jinja").read_text(encoding="utf-8")
    parity = read_json(out / "parity.json")
    assert parity["passed"] and parity["tokens_identical"] and parity["template_identical"]
    assert parity["greedy_agree"] + parity["greedy_near_ties"] == parity["prompts"]
    gate = read_json(out / "gate.json")
    assert gate["mcq_by_generation"] and gate["result"]["tokens_per_s"] > 0
    lm = load_model(str(path))
    assert lm.info["backend"] == "llama.cpp"
    assert isinstance(lm.chat([[{"role": "user", "content": "你好"}]], max_new_tokens=4)[0], str)


@pytest.mark.parametrize("target", ["gguf-q8_0", "gguf-q4_k_m"])
def test_quantized_gguf_loads_and_keeps_the_tokenizer(teacher, converter, tmp_path, target):
    from domainlm.compress.gguf_export import gguf_metadata
    from domainlm.models import load_model

    out = tmp_path / target
    compress(str(teacher), out, CompressConfig(target=target, gate=False))
    path = out / f"model-{target.removeprefix('gguf-')}.gguf"
    # llama.cpp's file types: 7 = MOSTLY_Q8_0, 15 = MOSTLY_Q4_K_M
    assert int(gguf_metadata(path)["general.file_type"]) == {"gguf-q8_0": 7, "gguf-q4_k_m": 15}[target]
    assert read_json(out / "parity.json")["tokens_identical"]
    assert path.stat().st_size < (teacher / "model.safetensors").stat().st_size
    assert load_model(str(path)).generate(["海港银行"], max_new_tokens=4)
