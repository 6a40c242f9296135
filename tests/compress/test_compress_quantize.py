"""int8 / int4 / merge: artifacts that load again through load_model, answer, and keep the domain score."""

from __future__ import annotations

import json

import pytest

from domainlm.compress import CompressConfig, compress
from domainlm.io import read_json
from domainlm.models import load_model


def test_int8_keeps_97_percent_of_the_domain_score(teacher, gate_suite, tmp_path):
    out = tmp_path / "int8"
    result = compress(str(teacher), out, CompressConfig(target="int8", suites=[str(gate_suite)], min_retention=0.97))
    gate = read_json(out / "gate.json")
    assert gate["passed"] and gate["retention"] >= 0.97
    # on the items it learned the teacher is above chance (1 in 4 options): retention means something
    assert gate["source"]["tasks"]["mcq"] > 0.25
    assert result.metrics["artifact"] == str(out / "model") and result.outputs["artifact"] == out / "model"
    assert result.outputs["gate"] == out / "gate.json" and result.metrics["retention"] == gate["retention"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    lm = load_model(str(out / "model"))
    layer = lm.model.model.layers[0].mlp.up_proj.weight
    assert "Int8" in type(layer).__name__  # really quantized, not dequantized on load
    answer = lm.chat([[{"role": "user", "content": "海港银行的营业时间？"}]], max_new_tokens=8)
    assert isinstance(answer[0], str)
    # weights are smaller on disk: the linear layers take one byte per weight instead of four
    assert gate["result"]["size_bytes"] < gate["source"]["size_bytes"]
    assert (out / "manifest.json").is_file() and (out / "parity.json").is_file()


def test_int4_loads_and_answers_and_a_rerun_is_skipped(teacher, tmp_path):
    out = tmp_path / "int4"
    cfg = CompressConfig(target="int4", gate=False, group_size=32)
    compress(str(teacher), out, cfg)
    lm = load_model(str(out / "model"))
    weight = lm.model.model.layers[0].mlp.down_proj.weight
    assert "Intx" in type(weight).__name__
    # 4-bit values: every quantized weight is an integer in [-8, 7]
    assert int(weight.qdata.min()) >= -8 and int(weight.qdata.max()) <= 7
    assert lm.generate(["海港银行"], max_new_tokens=4)
    parity = read_json(out / "parity.json")
    assert parity["tokens_identical"] and parity["template_identical"]
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = compress(str(teacher), out, cfg)  # same inputs and config: skipped
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    assert again.skipped and again.outputs["artifact"] == out / "model"  # the cached run still names its artifact


def test_merge_folds_a_lora_adapter_into_its_base(teacher, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(teacher)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(adapter)
    out = tmp_path / "merged"
    compress(str(adapter), out, CompressConfig(target="merge", gate=False))
    assert not (out / "model" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.inference_mode():
        expected = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-4)
    assert read_json(out / "parity.json")["passed"]


def test_unknown_target_is_a_clear_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        CompressConfig(target="int3")
