import json
import subprocess
import sys

import pytest

from domainlm.errors import DomainlmError
from domainlm.models import load_model, parse_spec
from domainlm.models.tiny import TinyRecipe, tiny_model_dir

PROMPTS = ["海港银行的定期存款", "Harbor Bank credit card", "信用卡年费", "a", "The mortgage term is up to"]


def test_import_is_torch_free():
    code = "import sys, domainlm.models, domainlm.models.testing; print('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize(
    "spec, message",
    [("", "empty"), ("openai:localhost:8000#m", "expected openai:http"), ("missing.gguf", "no such .gguf"),
     ("/no/such/folder", "not 'tiny'")],
)
def test_bad_specs_are_one_clear_error(spec, message):
    with pytest.raises(DomainlmError, match=message):
        parse_spec(spec)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(DomainlmError, match="no config.json"):
        parse_spec(tmp_path)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_models_load_and_describe_themselves(arch, tiny_qwen, tiny_llama):
    path = tiny_qwen if arch == "qwen2" else tiny_llama
    model = load_model(path)
    info = model.info
    assert info["backend"] == "transformers" and info["arch"] == arch
    assert info["n_layers"] == 2 and info["hidden_size"] == 32
    assert info["vocab_size"] == len(model.tokenizer) and info["params"] > 10_000
    assert model.supports_logprobs


def test_greedy_generation_does_not_depend_on_batch_size(tiny_qwen):
    one = load_model(tiny_qwen, batch_size=1).generate(PROMPTS, max_new_tokens=12)
    many = load_model(tiny_qwen, batch_size=8).generate(PROMPTS, max_new_tokens=12)
    assert one == many
    assert all(isinstance(t, str) for t in one) and any(one)


def test_sampling_is_reproducible_from_seed(tiny_qwen):
    model = load_model(tiny_qwen)
    a = model.generate(PROMPTS[:2], max_new_tokens=10, temperature=1.0, seed=3)
    b = model.generate(PROMPTS[:2], max_new_tokens=10, temperature=1.0, seed=3)
    assert a == b


def test_stop_strings_cut_the_output(tiny_qwen):
    model = load_model(tiny_qwen)
    full = model.generate(["海港银行"], max_new_tokens=16)[0]
    assert len(full) > 2
    stop = full[1:3]
    assert model.generate(["海港银行"], max_new_tokens=16, stop=[stop])[0] == full[: full.find(stop)]


def test_chat_uses_the_models_chatml_template(tiny_qwen):
    model = load_model(tiny_qwen)
    conv = [{"role": "system", "content": "你是银行助理。"}, {"role": "user", "content": "年费多少？"}]
    rendered = model.render_chat(conv)
    assert rendered == "<|im_start|>system\n你是银行助理。<|im_end|>\n<|im_start|>user\n年费多少？<|im_end|>\n<|im_start|>assistant\n"
    tools = [{"type": "function", "function": {"name": "query_balance", "parameters": {"type": "object"}}}]
    assert '"name": "query_balance"' in model.render_chat(conv, tools)
    out = model.chat([conv, conv[1:]], max_new_tokens=6)
    assert len(out) == 2 and all("<|im_" not in t for t in out)


def test_loglikelihood_matches_a_direct_forward_pass(tiny_qwen):
    import torch

    model = load_model(tiny_qwen, batch_size=3)
    requests = [("海港银行的", "定期存款"), ("Harbor", " Bank"), ("", "hello world"), ("信用卡", "年费")]
    scores = model.loglikelihood(requests)
    assert scores == pytest.approx(load_model(tiny_qwen, batch_size=1).loglikelihood(requests), abs=1e-4)
    tok = model.tokenizer
    ctx, cont = tok("Harbor", add_special_tokens=False)["input_ids"], tok(" Bank", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model.model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
    direct = sum(float(logits[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
    assert scores[1] == pytest.approx(direct, abs=1e-4)
    assert all(s < 0 for s in scores)


def test_tiny_spec_builds_once_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINLM_CACHE", str(tmp_path))
    recipe = TinyRecipe(vocab_size=400, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32)
    texts = ["海港银行 Harbor Bank 存款 deposit"] * 20
    first = tiny_model_dir(texts, recipe)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_dir(texts, recipe) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert tiny_model_dir(texts + ["more"], recipe) != first
    config = json.loads((first / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["hidden_size"] == 16
    assert (first / "chat_template.jinja").is_file() or "chat_template" in (first / "tokenizer_config.json").read_text()


def test_saved_model_loads_with_plain_transformers(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    text = "海港银行 3.25% Harbor Bank\n{\"a\": 1}"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert AutoModelForCausalLM.from_pretrained(tiny_llama).config.model_type == "llama"
