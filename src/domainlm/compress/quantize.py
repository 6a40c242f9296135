"""``int8`` / ``int4``: weight-only quantization with torchao, saved so ``load_model`` loads it again.

transformers' ``TorchAoConfig`` quantizes the linear layers while loading and ``save_pretrained`` writes
the quantized tensors to safetensors with the quantization config in ``config.json``, so a plain
``from_pretrained`` (what :func:`domainlm.models.load_model` does) restores the quantized model.

CPU: int8 is per-output-channel symmetric (``Int8WeightOnlyConfig``); int4 is per-group symmetric
(``IntxWeightOnlyConfig(int4, PerGroup(group_size))``). torchao has no packed int4 layout for CPU, so the
4-bit values are stored one per byte: int4 keeps 4-bit accuracy but is the same size on disk as int8.
GPU: int4 uses torchao's packed tinygemm layout (``Int4WeightOnlyConfig``), half the bytes of int8.
Embeddings and the (tied) output head stay in full precision, as in torchao's defaults.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import read_json


def torchao_config(bits: int, group_size: int, device: str):
    try:
        import torch
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerGroup
    except ImportError:
        raise DomainlmError("int8/int4 need torchao: pip install torchao") from None
    if bits == 8:
        return Int8WeightOnlyConfig()
    if device.startswith("cuda"):
        return Int4WeightOnlyConfig(group_size=max(32, group_size))
    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size))


def quantize(source: str | Path, out: str | Path, *, bits: int, group_size: int = 32, device: str | None = None) -> Path:
    """Quantize the model folder ``source`` to ``bits`` (8 or 4) and save it with its tokenizer to ``out``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    transformers.utils.logging.disable_progress_bar()
    if bits not in (4, 8):
        raise DomainlmError(f"bits must be 8 or 4, got {bits}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    source, out = Path(source), Path(out)
    config = json_config(source)
    width = min(config.get("hidden_size", 0), config.get("intermediate_size", 0))
    if bits == 4 and width % group_size:
        raise DomainlmError(f"{source}: int4 group_size {group_size} does not divide the layer width {width}")
    quant = TorchAoConfig(quant_type=torchao_config(bits, group_size, device))
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, dtype=torch.float32,
                                                 device_map=device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def json_config(folder: Path) -> dict:
    return read_json(folder / "config.json")
