"""Load a base model for training with the chosen method: full weights, LoRA (peft) or QLoRA (4-bit base)."""

from __future__ import annotations

import json
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.train.config import TrainConfig


def base_dtype(cfg: TrainConfig):
    """Weights dtype at load time. Full fine-tuning keeps fp32 master weights (bf16 compute comes from
    autocast); LoRA freezes the base, so on a GPU it is loaded in bf16 and only the adapters are fp32."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if cfg.method in ("lora", "qlora") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    targets = "all-linear" if cfg.lora_targets == "all-linear" else [t.strip() for t in cfg.lora_targets.split(",")]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")


def load_for_training(base_dir: str | Path, cfg: TrainConfig):
    """(model, tokenizer) ready to train: adapters attached for lora/qlora, checkpointing on if asked."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    base_dir = Path(base_dir)
    if (base_dir / "adapter_config.json").is_file() and not (base_dir / "config.json").is_file():
        raise DomainlmError(f"{base_dir}: an adapter folder; train from its merged model folder instead")
    kwargs: dict = {"dtype": base_dtype(cfg)}
    if cfg.method == "qlora":
        if not torch.cuda.is_available():
            raise DomainlmError("--method qlora needs an NVIDIA GPU (bitsandbytes 4-bit); use lora on CPU")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise DomainlmError("--method qlora needs bitsandbytes: pip install bitsandbytes") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
    except (OSError, ValueError) as exc:
        raise DomainlmError(f"{base_dir}: cannot load the base model ({str(exc).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = prepare_for_training(model, cfg)
    if not torch.cuda.is_available():
        model.to("cpu")
    return model, tokenizer


def prepare_for_training(model, cfg: TrainConfig):
    """Gradient checkpointing if asked, then LoRA adapters (on a 4-bit base for qlora)."""
    model.config.use_cache = False
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method in ("lora", "qlora"):
        from peft import get_peft_model, prepare_model_for_kbit_training

        if cfg.method == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.grad_checkpointing)
        model = get_peft_model(model, lora_config(cfg))
    return model


def save_trained(model, tokenizer, out: Path, cfg: TrainConfig, base_dir: Path, base_spec: str | None = None) -> list[str]:
    """Write the result as a normal HF model folder (LoRA merged in), with the base model's tokenizer and chat
    template. Returns the written names.

    For lora/qlora, ``adapter/`` is also a complete peft adapter folder, loadable without domainlm:
    ``peft.AutoPeftModelForCausalLM.from_pretrained(out / "adapter")`` and ``AutoTokenizer.from_pretrained`` of
    the same folder. Its ``base_model_name_or_path`` is the base folder's absolute path (the user's folder; for
    ``tiny``, the cache folder of the tiny model built for this run); it carries the tokenizer with its chat
    template and the base's generation config (stop tokens). ``domainlm_lineage.json`` (in both folders) keeps
    ``base_spec``, the base as the user named it (``tiny``, a folder), beside that path.
    """
    import torch

    written = []
    out.mkdir(parents=True, exist_ok=True)
    base_path = Path(base_dir).resolve()
    lineage = {"base": base_spec or str(base_path), "base_dir": str(base_path), "stage": cfg.stage, "method": cfg.method}
    if cfg.method in ("lora", "qlora"):
        adapter = out / "adapter"
        # peft records the path the base was loaded from, which may be relative to where training ran;
        # the adapter must find its base from anywhere.
        for config in model.peft_config.values():
            config.base_model_name_or_path = str(base_path)
        model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
        model.get_base_model().generation_config.save_pretrained(adapter)
        _write_lineage(adapter, lineage)
        written.append("adapter")
        if cfg.method == "qlora":  # merge into full-precision base weights, not the 4-bit ones
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            full = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
            model = PeftModel.from_pretrained(full, adapter)
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    written += ["config.json", "tokenizer_config.json"]
    _write_lineage(out, lineage)
    written.append("domainlm_lineage.json")
    return written


def _write_lineage(folder: Path, lineage: dict) -> None:
    (folder / "domainlm_lineage.json").write_text(json.dumps(lineage, ensure_ascii=False, indent=2), encoding="utf-8")
