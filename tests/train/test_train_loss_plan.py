import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from domainlm.train.loss import CausalLMLoss, chunked_cross_entropy
from domainlm.train.plan import KNOWN_SHAPES, Shape, plan


def test_chunked_loss_equals_full_cross_entropy_in_value_and_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(3, 17, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 50, (3, 17))
    labels[0, :5] = -100  # a prompt: no loss
    labels[2, 9:] = -100  # padding
    total, n = chunked_cross_entropy(hidden, weight, labels, chunk_rows=7)
    (total / n).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    logits = hidden @ weight.t()
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=-100)
    ref.backward()
    assert n == int((labels[:, 1:] != -100).sum())
    assert torch.allclose(total / n, ref)
    assert torch.allclose(grads[0], hidden.grad) and torch.allclose(grads[1], weight.grad)


def test_wrapper_matches_the_models_own_loss(sample_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(sample_model)
    ids = torch.randint(0, model.config.vocab_size, (2, 24))
    pos = torch.arange(24).expand(2, -1)
    ours, n = CausalLMLoss(model, chunked=True)(ids, ids, pos)
    plain, _ = CausalLMLoss(model, chunked=False)(ids, ids, pos)
    hf = model(input_ids=ids, labels=ids).loss
    assert n == 2 * 23
    assert float(ours / n) == pytest.approx(float(hf), rel=1e-5)
    assert float(plain / n) == pytest.approx(float(hf), rel=1e-5)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_plan_counts_parameters_exactly(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    from domainlm.models.testing import make_tiny_model

    path = make_tiny_model(tmp_path / arch, arch=arch, tie_embeddings=False)
    shape = Shape.from_config(json.loads((path / "config.json").read_text()))
    model = AutoModelForCausalLM.from_pretrained(path)
    assert shape.params == sum(p.numel() for p in model.parameters())
    from peft import get_peft_model

    from domainlm.train.config import TrainConfig
    from domainlm.train.model_setup import lora_config

    lora = get_peft_model(model, lora_config(TrainConfig(lora_r=4)))
    assert shape.lora_params(4) == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_plan_known_shapes_and_trends():
    assert KNOWN_SHAPES["qwen2-7b"].params == 7_615_616_512  # Qwen2.5-7B's published count
    shape = KNOWN_SHAPES["qwen2-1.5b"]
    lora, full = plan(shape, method="lora"), plan(shape, method="full")
    assert lora.peak_gib < full.peak_gib and lora.tokens_per_s > full.tokens_per_s
    ckpt = plan(shape, method="lora", grad_checkpointing=True)
    assert ckpt.activations_gib < lora.activations_gib / 5 and ckpt.tokens_per_s < lora.tokens_per_s
    assert plan(shape, method="lora", seq=4096).activations_gib == pytest.approx(2 * lora.activations_gib, rel=0.01)
    assert not plan(KNOWN_SHAPES["qwen2-7b"], method="full", gpu="4090").fits
    assert plan(shape, method="lora", chunked_loss=False, batch=4).loss_gib > 3.5 * plan(shape, method="lora", batch=4).loss_gib


def test_plan_command_prints_json_and_rejects_bad_method():
    run = subprocess.run([sys.executable, "-m", "domainlm", "plan", "--base", "qwen2-0.5b", "--method", "lora", "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["params"] == KNOWN_SHAPES["qwen2-0.5b"].params
    bad = subprocess.run([sys.executable, "-m", "domainlm", "plan", "--base", "qwen2-0.5b", "--method", "dora"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "error: --method dora: expected full, lora or qlora" in bad.stderr
