"""Distillation beats the same student without a teacher; pruning with recovery beats pruning without.

"Beats" is measured as held-out cross-entropy on the sample domain's *eval* tasks (answers the models
never trained on), the same data and the same number of steps on both sides. Distillation is tested where it
is used: the teacher has learned from more than the distillation data shows (here: all training tasks;
the students see 8 packed sequences of them), and its token distributions carry that to the student.
"""

from __future__ import annotations

import pytest

from domainlm.compress import CompressConfig
from domainlm.compress.data import heldout_loss, training_examples


@pytest.fixture(scope="module")
def loaded(teacher, sample_root, train_files):
    from domainlm.models.hf import load_hf

    model, tokenizer = load_hf(teacher, device="cpu", dtype="float32")
    train, _ = training_examples(train_files, tokenizer, 256)
    held, _ = training_examples([sample_root / "tasks" / "eval"], tokenizer, 256)
    return model, tokenizer, train, held


def test_distilled_student_beats_the_same_student_without_teacher(loaded):
    from domainlm.compress.distill import make_student, train_student

    teacher, tokenizer, train, held = loaded
    pad = tokenizer.pad_token_id
    cfg = CompressConfig(target="distill", steps=40, lr=2e-3, seed=0)
    with_teacher = make_student(teacher, train, pad, n_layers=2, mlp_keep=1.0)
    without = make_student(teacher, train, pad, n_layers=2, mlp_keep=1.0)
    assert with_teacher.config.num_hidden_layers == 2
    few = train[:8]
    train_student(with_teacher, teacher, few, cfg, pad, kd_weight=1.0)
    train_student(without, None, few, cfg, pad, kd_weight=0.0)
    kd_loss, ce_loss = heldout_loss(with_teacher, held, pad), heldout_loss(without, held, pad)
    assert kd_loss < ce_loss


def test_gkd_loss_is_zero_only_for_identical_distributions():
    import torch

    from domainlm.compress.distill import kd_loss

    logits = torch.randn(5, 11)
    for kind in ("forward_kl", "gkd"):
        assert torch.allclose(kd_loss(logits, logits, kind), torch.zeros(5), atol=1e-6)
        assert (kd_loss(logits, logits.flip(-1), kind) > 0).all()


def test_pruning_with_recovery_beats_pruning_without(loaded):
    import copy

    from domainlm.compress.distill import train_student
    from domainlm.compress.prune import prune_model

    source, tokenizer, train, held = loaded
    pad = tokenizer.pad_token_id
    pruned = copy.deepcopy(source)
    info = prune_model(pruned, train, pad, drop_layers=1, mlp_keep=0.5)
    assert len(info["kept_layers"]) == 3 and info["kept_layers"][0] == 0 and info["kept_layers"][-1] == 3
    assert pruned.config.intermediate_size == 64 and pruned.model.layers[0].mlp.up_proj.out_features == 64
    # the dropped layer is the one that changed its input least (lowest block influence among the middle ones)
    dropped = ({0, 1, 2, 3} - set(info["kept_layers"])).pop()
    assert info["block_influence"][dropped] == min(info["block_influence"][1:3])
    recovered = copy.deepcopy(pruned)
    train_student(recovered, source, train, CompressConfig(target="prune", steps=30, lr=2e-3), pad)
    assert heldout_loss(recovered, held, pad) < heldout_loss(pruned, held, pad)
    # a pruned model still generates with a KV cache (layer indices were renumbered)
    out = recovered.generate(input_ids=__import__("torch").tensor([[5, 6, 7]]), max_new_tokens=5, min_new_tokens=5,
                             do_sample=False)
    assert out.shape[1] == 8
