"""Real tiny models for tests: a random Qwen2 or Llama model with a BPE tokenizer trained on your texts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from domainlm.models.tiny import TEST_RECIPE, build_model_dir, builtin_corpus


def make_tiny_model(path: str | Path, arch: str = "qwen2", vocab_from: Sequence[str] | None = None,
                    **recipe_overrides) -> Path:
    """Write a small random HF model + tokenizer (with a ChatML chat template) to ``path``; returns it.

    ``vocab_from``: texts the BPE tokenizer learns from (default: the package's bilingual corpus).
    ``recipe_overrides``: fields of :class:`domainlm.models.tiny.TinyRecipe` (hidden_size, num_layers, ...).
    A few hundred thousand parameters: loads and generates in well under a second on CPU.
    """
    recipe = TEST_RECIPE.model_copy(update={"arch": arch, **recipe_overrides})
    texts = list(vocab_from) if vocab_from else builtin_corpus()
    return build_model_dir(path, texts, recipe)
