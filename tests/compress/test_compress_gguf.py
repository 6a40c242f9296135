"""GGUF export: llama.cpp's converter and quantizer, run in llama-cpp-python, checked for template parity.

Where llama-cpp-python (the runtime) is not installed, gguf-f16 and gguf-q8_0 are still made by the converter
alone, with parity and the gate marked not run; gguf-q4_k_m says in one line what to install. Those tests
hide the runtime (``sys.modules["llama_cpp"] = None``), so they run whether it is installed or not.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from domainlm.compress import CompressConfig, compress
from domainlm.io import read_json
from domainlm.sample.defaults import SPEED_PROMPTS

pytest.importorskip("gguf", reason="the GGUF header is read with the gguf package (domainlm[test])")
pytest.importorskip("sentencepiece", reason="llama.cpp's converter imports sentencepiece (domainlm[gguf])")
needs_runtime = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                   reason="llama-cpp-python (the llama.cpp runtime) is not installed")


@pytest.fixture
def no_runtime(monkeypatch):
    """As if llama-cpp-python were not installed: ``import llama_cpp`` raises ImportError."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from domainlm.models.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def converter():
    from domainlm.compress.gguf_export import converter_dir
    from domainlm.errors import DomainlmError

    try:  # cached, $DOMAINLM_LLAMA_CPP, or fetched once from llama-cpp-python's sdist with pip
        return converter_dir(fetch=True)
    except DomainlmError as exc:
        pytest.skip(str(exc))


@needs_runtime
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


@needs_runtime
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


def test_q8_0_with_the_converter_alone_marks_parity_and_gate_not_run(tiny, gate_suite, converter, no_runtime,
                                                                     tmp_path):
    from rich.console import Console

    from domainlm.compress.gguf_export import gguf_metadata

    console = Console(record=True, width=400)
    out = tmp_path / "q8"
    result = compress(str(tiny), out, CompressConfig(target="gguf-q8_0", suites=[str(gate_suite)]), console=console)
    path = out / "model-q8_0.gguf"
    assert Path(result.outputs["artifact"]).resolve() == path.resolve()
    meta = gguf_metadata(path)
    assert int(meta["general.file_type"]) == 7  # llama.cpp's MOSTLY_Q8_0: the converter quantized it itself
    assert meta["tokenizer.chat_template"] == (tiny / "chat_template.jinja").read_text(encoding="utf-8")
    parity, gate = read_json(out / "parity.json"), read_json(out / "gate.json")
    assert parity["ran"] is False and parity["passed"] is None
    assert gate["ran"] is False and gate["passed"] is None
    assert "pip install 'domainlm[gguf]'" in parity["reason"] and "pip install 'domainlm[gguf]'" in gate["reason"]
    assert result.metrics["parity"] == {"ran": False, "reason": parity["reason"]}
    assert result.metrics["gate"] == {"ran": False, "reason": gate["reason"]}
    said = console.export_text()
    assert f"template parity: not run ({parity['reason']})" in said
    assert f"quality gate: not run ({gate['reason']})" in said


def test_q4_k_m_without_the_runtime_says_what_to_install(tiny, no_runtime, tmp_path, capsys):
    from domainlm.cli import main

    out = tmp_path / "q4"
    code = main(["compress", str(tiny), "--to", "gguf-q4_k_m", "--out", str(out), "--no-gate"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.endswith(errors[0])  # one line, the last, and nothing after it
    assert errors[0].startswith("error: gguf-q4_k_m (llama.cpp's quantizer) needs the llama.cpp runtime")
    assert "pip install 'domainlm[gguf]'" in err and "Traceback" not in err
    assert not list(out.rglob("*.gguf"))
