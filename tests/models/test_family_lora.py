"""LoRA adapters from ``domainlm train --method lora`` load in plain peft, for real model families.

For three families of the conformance matrix (``families.py``: real tokenizer and chat template, tiny random
weights) a 2-step LoRA sft run writes ``OUT/adapter``; that folder alone must give
``peft.AutoPeftModelForCausalLM`` the same logits as domainlm's own loader (which merges the adapter into its
base), name the base by its absolute path (the user's folder, not a cache), and carry the tokenizer, the chat
template and the generation config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from families import FAMILIES, build_family_model, llama_cpp_models

pytest.importorskip("gguf", reason="transformers reads the GGUF vocabularies with the gguf package (domainlm[test])")
pytest.importorskip("peft", reason="LoRA needs the train extra (peft)")

LORA_FAMILIES = [f for f in FAMILIES if f.name in ("Qwen2.5", "Llama-3.1", "DeepSeek-V3.1")]
TOOLS = [{"type": "function", "function": {
    "name": "get_exchange_rate", "description": "查询两种货币之间的实时汇率",
    "parameters": {"type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
                   "required": ["base", "quote"]}}}]
CALL = {"name": "get_exchange_rate", "arguments": {"base": "USD", "quote": "CNY"}}
ROWS = [
    {"messages": [{"role": "user", "content": "什么是存款准备金率？"},
                  {"role": "assistant", "content": "存款准备金率是商业银行须按存款的一定比例缴存中央银行的资金比例。"}]},
    {"messages": [{"role": "system", "content": "你是一家商业银行的客服助理。"},
                  {"role": "user", "content": "美元兑人民币汇率是多少？"},
                  {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": CALL}]},
                  {"role": "tool", "content": "1 USD = 7.1 CNY"},
                  {"role": "assistant", "content": "目前 1 美元约合 7.1 元人民币。"}], "tools": TOOLS},
]
PROBE = [{"role": "user", "content": "下调准备金率对市场有什么影响？"}]


@pytest.fixture(scope="module")
def models_dir():
    try:
        return llama_cpp_models()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"llama.cpp's tokenizers and templates are not available offline: {exc}")


def write_rows(path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def lora_config():
    from domainlm.train import TrainConfig

    # A high learning rate: two steps must move the adapter far enough from zero to change the logits.
    return TrainConfig(stage="sft", method="lora", lora_r=4, max_steps=2, batch_size=1, seq_len=384, lr=5e-2,
                       eval_fraction=0.0, seed=0)


def logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


@pytest.mark.parametrize("family", LORA_FAMILIES, ids=[f.name for f in LORA_FAMILIES])
def test_lora_adapter_loads_in_plain_peft_with_its_base_tokenizer_and_template(family, models_dir, tmp_path,
                                                                                monkeypatch):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from domainlm.models import load_model
    from domainlm.train.stage import train

    base = build_family_model(models_dir, family, tmp_path / "base")
    monkeypatch.chdir(tmp_path)  # the user names the base relative to where they run: the adapter must not
    result = train("base", [write_rows(tmp_path / "sft.jsonl")], tmp_path / "out", lora_config())
    adapter = tmp_path / "out" / "adapter"

    # The base is recorded as the user's folder, absolute (found from any directory), and as they named it.
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == str(base.resolve())
    lineage = json.loads((adapter / "domainlm_lineage.json").read_text(encoding="utf-8"))
    assert lineage["base"] == "base" and lineage["base_dir"] == str(base.resolve())
    assert Path(result.outputs["base"]) == base.resolve()
    monkeypatch.chdir(Path(__file__).parent)

    # The adapter folder carries the tokenizer, its chat template and the stop tokens.
    base_tok, tok = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(adapter)
    assert tok.chat_template == base_tok.chat_template and len(tok) == len(base_tok)
    rendered = tok.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    assert rendered == base_tok.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    assert GenerationConfig.from_pretrained(adapter).eos_token_id == GenerationConfig.from_pretrained(base).eos_token_id

    # Plain peft (adapter applied, not merged) = domainlm's loader (merged) = the merged output folder.
    ids = tok(rendered + ROWS[0]["messages"][1]["content"], add_special_tokens=False)["input_ids"]
    plain = AutoPeftModelForCausalLM.from_pretrained(adapter).eval()
    peft_logits = logits(plain, ids)
    ours = load_model(str(adapter), device="cpu")
    assert torch.allclose(logits(ours.model, ids), peft_logits, atol=1e-4)
    assert torch.allclose(logits(load_model(str(tmp_path / "out"), device="cpu").model, ids), peft_logits, atol=1e-4)
    # The adapter did change the model (two steps moved it off zero), so the comparison above means something.
    base_logits = logits(AutoModelForCausalLM.from_pretrained(base).eval(), ids)
    assert (peft_logits - base_logits).abs().max() > 1e-3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step LoRA run from ``tiny`` (whose model is built from the training data, in the cache)."""
    from domainlm.train.stage import train

    home = tmp_path_factory.mktemp("tiny-lora")
    result = train("tiny", [write_rows(home / "sft.jsonl")], home / "out", lora_config())
    return result, home / "out" / "adapter"


def test_a_tiny_base_is_recorded_as_its_built_folder_and_as_tiny(tiny_run):
    from peft import AutoPeftModelForCausalLM

    result, adapter = tiny_run
    built = str(result.outputs["base"])  # the cache folder of the tiny model built for this run
    assert json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"] == built
    assert json.loads((adapter / "domainlm_lineage.json").read_text(encoding="utf-8"))["base"] == "tiny"
    assert (adapter / "tokenizer_config.json").is_file()
    assert AutoPeftModelForCausalLM.from_pretrained(adapter).peft_config["default"].base_model_name_or_path == built


def test_an_adapter_whose_base_is_gone_is_one_clear_error(tiny_run, tmp_path):
    import shutil

    from domainlm.errors import DomainlmError
    from domainlm.models import load_model

    _, adapter = tiny_run
    moved = Path(shutil.copytree(adapter, tmp_path / "elsewhere" / "adapter"))
    config = json.loads((moved / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(tmp_path / "deleted-base")
    (moved / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(DomainlmError) as err:
        load_model(str(moved))
    message = str(err.value)
    assert "\n" not in message and "deleted-base" in message and "trained from 'tiny'" in message
