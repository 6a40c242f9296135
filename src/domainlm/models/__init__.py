"""Model specs and backends: ``load_model(spec)`` gives one interface over every kind of model.

Importing this package is light: every backend imports its runtime (torch and transformers, llama.cpp,
vLLM) only when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.models.base import LanguageModel, cut_at_stop
from domainlm.models.gguf import GGUFModel
from domainlm.models.hf import TransformersModel, hidden_token_ids, load_hf, visible_text
from domainlm.models.openai_http import OpenAIModel
from domainlm.models.spec import ModelSpec, parse_spec
from domainlm.models.tiny import BUILTIN_CORPUS, QWEN2_PATTERN, Corpus, builtin_corpus, cache_root, tiny_model_dir
from domainlm.models.vllm_backend import VLLMModel


def resolve_hf_dir(spec: str | Path) -> Path:
    """A Hugging Face folder for a spec that names one: ``tiny`` (built and cached) or a local folder."""
    parsed = parse_spec(spec)
    if parsed.kind == "tiny":
        # The `tiny` spec's tokenizer learns the sample domain, which owns that corpus. Imported here, not at
        # the top: domainlm.sample.defaults needs domainlm.models.tiny (the cache folder, the builtin text).
        from domainlm.sample import tiny_corpus

        return tiny_model_dir(tiny_corpus())
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
        return OpenAIModel(parsed.target, parsed.model_name, **options)
    if parsed.kind == "gguf":
        return GGUFModel(parsed.target, **options)
    if parsed.kind == "vllm":
        return VLLMModel(parsed.target, **options)
    return TransformersModel(resolve_hf_dir(spec), spec=parsed.text, **options)


def load_scoring_model(spec: str | Path, *, batch_size: int = 8, device: str | None = None) -> LanguageModel:
    """A model loaded to be scored or timed: batch size and device go to the backend that runs the network
    in this process with them (transformers: ``tiny`` and HF folders); llama.cpp, vLLM and servers place
    and batch themselves. The eval stage, :func:`domainlm.evals.score` and the compression gate load here."""
    if parse_spec(spec).kind in ("tiny", "hf"):
        return load_model(spec, batch_size=batch_size, device=device)
    return load_model(spec)


__all__ = ["hidden_token_ids", "visible_text", "BUILTIN_CORPUS", "QWEN2_PATTERN", "Corpus", "LanguageModel", "ModelSpec", "builtin_corpus", "cache_root",
           "cut_at_stop", "load_hf", "load_model", "load_scoring_model", "parse_spec", "resolve_hf_dir", "tiny_model_dir"]
