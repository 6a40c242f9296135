"""Model specs and backends: ``load_model(spec)`` gives one interface over every kind of model.

Importing this package is light; torch and transformers load only inside :func:`load_model`.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.models.base import LanguageModel
from domainlm.models.spec import ModelSpec, parse_spec


def resolve_hf_dir(spec: str | Path) -> Path:
    """A Hugging Face folder for a spec that names one: ``tiny`` (built and cached) or a local folder."""
    from domainlm.errors import DomainlmError

    parsed = parse_spec(spec)
    if parsed.kind == "tiny":
        from domainlm.models.tiny import tiny_model_dir

        return tiny_model_dir()
    if parsed.kind in ("hf", "vllm"):
        return Path(parsed.target)
    raise DomainlmError(f"model spec '{spec}': a Hugging Face model folder or 'tiny' is needed here")


def load_model(spec: str | Path, **options) -> LanguageModel:
    """Load a model by spec: ``tiny`` | local HF folder | ``file.gguf`` | ``openai:http://host:port/v1#name``.

    ``options`` go to the backend (transformers: ``device``, ``dtype``, ``batch_size``; openai:
    ``timeout``, ``concurrency``; gguf: ``n_ctx``, ``n_threads``).
    """
    parsed = parse_spec(spec)
    if parsed.kind == "openai":
        from domainlm.models.openai_http import OpenAIModel

        return OpenAIModel(parsed.target, parsed.model_name, **options)
    if parsed.kind == "gguf":
        from domainlm.models.gguf import GGUFModel

        return GGUFModel(parsed.target, **options)
    if parsed.kind == "vllm":
        from domainlm.models.vllm_backend import VLLMModel

        return VLLMModel(parsed.target, **options)
    from domainlm.models.hf import TransformersModel

    return TransformersModel(resolve_hf_dir(spec), spec=parsed.text, **options)


__all__ = ["LanguageModel", "ModelSpec", "load_model", "parse_spec", "resolve_hf_dir"]
