"""``merge``: a LoRA adapter folded into its base model, saved as a plain Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.models import load_hf, parse_spec, resolve_hf_dir


def is_adapter(path: str | Path) -> bool:
    path = Path(path)
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def save_hf(model, tokenizer, out: str | Path) -> Path:
    """Save model weights (safetensors), config, generation config and tokenizer with its chat template."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def merge_adapter(source: str | Path, out: str | Path) -> Path:
    """Fold the adapter at ``source`` into its base (peft ``merge_and_unload``) and save to ``out``.

    A full model folder is copied through unchanged in weights, so ``merge`` is also a safe way to get
    a self-contained folder (tokenizer + chat template beside the weights) from any local spec.
    """
    # load_hf loads an adapter onto its base and merges it
    model, tokenizer = load_hf(source, device="cpu", dtype="float32")
    return save_hf(model, tokenizer, out)


def hf_folder(spec: str, scratch: str | Path) -> Path:
    """A full Hugging Face folder for ``spec``: ``tiny`` or a model folder as is, an adapter merged into ``scratch``."""
    parsed = parse_spec(spec)
    if parsed.kind not in ("tiny", "hf"):
        raise DomainlmError(f"model spec '{spec}': compression needs 'tiny' or a local Hugging Face folder")
    path = resolve_hf_dir(spec)
    if is_adapter(path):
        return merge_adapter(path, Path(scratch) / "merged-source")
    return path
