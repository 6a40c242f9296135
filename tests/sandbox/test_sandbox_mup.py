"""muP model: shape, parametrisation rules, and the coordinate check (activation sizes flat in width)."""

import math

import pytest

torch = pytest.importorskip("torch")

from domainlm.sandbox import tokenizer  # noqa: E402
from domainlm.sandbox.coord_check import coord_check, spread  # noqa: E402
from domainlm.sandbox.mup_model import ModelConfig, MupTransformer  # noqa: E402


def test_model_shape_and_mup_rules():
    model = MupTransformer(ModelConfig(width=128, base_width=32, depth=2, n_heads=4))
    assert model.cfg.width_mult == 4
    # read-out starts at zero, hidden matrices at 1/sqrt(fan_in)
    assert float(model.head.weight.detach().abs().max()) == 0.0
    qkv = model.blocks[0].attn.qkv.weight
    assert float(qkv.detach().std()) == pytest.approx(1 / math.sqrt(128), rel=0.05)
    # 1/d attention, equal to 1/sqrt(d) at the base width
    assert model.blocks[0].attn.scale == pytest.approx(math.sqrt(8) / 32)
    base = MupTransformer(ModelConfig(width=32, base_width=32, n_heads=4))
    assert base.blocks[0].attn.scale == pytest.approx(1 / math.sqrt(8))
    hidden, other = model.param_groups(0.02)
    assert hidden["lr"] == pytest.approx(0.02 / 4) and other["lr"] == 0.02
    norm_gains = (2 * 2 + 1) * 128  # two per block plus the final norm
    assert sum(p.numel() for p in hidden["params"]) + norm_gains == model.num_params()
    logits = model(torch.randint(0, tokenizer.VOCAB_SIZE, (2, 10)))
    assert logits.shape == (2, 10, tokenizer.VOCAB_SIZE)


def test_model_is_causal():
    torch.manual_seed(0)
    model = MupTransformer(ModelConfig(width=32, base_width=32, mup=False))
    ids = torch.randint(0, 256, (1, 12))
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 256
    assert torch.allclose(model(ids)[0, :-1], model(changed)[0, :-1], atol=1e-6)


def test_coordinate_check_flat_under_mup_not_under_sp(cmrc_path):
    import numpy as np

    from domainlm.sandbox.data import load_texts

    text = "".join(load_texts(cmrc_path).texts[:60])
    streams = {"general": tokenizer.encode(text)}
    widths = (32, 64, 128, 256)
    mup = coord_check(streams, widths, mup=True, base_width=32, lr=0.01, steps=4)
    sp = coord_check(streams, widths, mup=False, base_width=32, lr=0.01, steps=4)
    for layer in ("embed", "block1", "block2", "logits"):
        assert spread(mup, layer) < 1.6, (layer, {w: mup[w][layer] for w in widths})
    # the standard parametrisation blows up with width: the check can tell the two apart
    assert spread(sp, "block2") > 4 * spread(mup, "block2")
    assert np.isfinite([v for sizes in mup.values() for v in sizes.values()]).all()
