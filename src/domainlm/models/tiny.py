"""The ``tiny`` model: a byte-level BPE tokenizer and a small Qwen2-architecture model, built here offline.

Nothing is downloaded. The tokenizer is trained with the ``tokenizers`` library on the texts the caller
passes (the ``tiny`` spec passes the sample domain's documents, see :mod:`domainlm.sample.defaults`), gets
ChatML special tokens and a Qwen-style chat template; the model is randomly initialised from a seed
(training it is ``domainlm train --base tiny``). The result is a normal Hugging Face directory, so
transformers, peft, TRL and the GGUF converter load it. Built models are cached under ``$DOMAINLM_CACHE``
(default ``~/.cache/domainlm``) keyed by their recipe and corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from domainlm import __version__

HERE = Path(__file__).resolve().parent
CHAT_TEMPLATE = (HERE / "chat_template.jinja").read_text(encoding="utf-8")
BUILTIN_CORPUS = HERE / "default_corpus.txt"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer pattern: words, single digits, punctuation runs, newlines, spaces. Chinese runs
# are \p{L} and stay one pre-token, so BPE learns frequent character pairs inside them.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class TinyRecipe(BaseModel):
    """Shape of a tiny model. The default trains the sample domain in minutes on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = Field("qwen2", pattern="^(qwen2|llama)$")
    vocab_size: int = Field(4096, ge=300, description="Target BPE vocabulary (smaller if the corpus is small).")
    hidden_size: int = Field(256, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(8, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(768, ge=8)
    max_seq_len: int = Field(2048, ge=64)
    tie_embeddings: bool = True
    seed: int = 0


# The recipe `make_tiny_model` uses for unit tests elsewhere: a few hundred thousand parameters.
TEST_RECIPE = TinyRecipe(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)


def cache_root() -> Path:
    return Path(os.environ.get("DOMAINLM_CACHE") or Path.home() / ".cache" / "domainlm")


def builtin_corpus() -> list[str]:
    """The small bilingual text shipped with the package (bank sentences, general text, digits, JSON)."""
    return [line for line in BUILTIN_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Corpus:
    """Texts made only when a model must be built, named by a cheap ``key``: a cached model is found by the
    key without making the texts (for the sample domain's corpus that would mean generating the sample)."""

    key: str
    make: Callable[[], list[str]]


def train_tokenizer(texts: Iterable[str], vocab_size: int, chat_template: str = CHAT_TEMPLATE):
    """A byte-level BPE tokenizer (Qwen2-style pre-tokenization) as a transformers fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=1 << 30,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = chat_template
    return fast


def build_model_dir(out: str | Path, texts: Sequence[str], recipe: TinyRecipe = TinyRecipe()) -> Path:
    """Train the tokenizer on ``texts``, initialise a model from ``recipe.seed`` and save both to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config

    out = Path(out)
    tokenizer = train_tokenizer(texts, recipe.vocab_size)
    vocab = len(tokenizer)
    eos, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    common = dict(
        vocab_size=vocab,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        max_position_embeddings=recipe.max_seq_len,
        tie_word_embeddings=recipe.tie_embeddings,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=eos,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    config = Qwen2Config(**common) if recipe.arch == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=[eos, im_end], pad_token_id=eos, do_sample=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def recipe_key(recipe: TinyRecipe, texts: Sequence[str] | Corpus) -> str:
    corpus = texts.key if isinstance(texts, Corpus) else hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    payload = json.dumps({"recipe": recipe.model_dump(), "corpus": corpus, "domainlm": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def tiny_model_dir(texts: Sequence[str] | Corpus, recipe: TinyRecipe = TinyRecipe()) -> Path:
    """The cached directory of a tiny model for this corpus and recipe, built on first use."""
    target = cache_root() / "tiny" / f"{recipe.arch}-{recipe_key(recipe, texts)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        build_model_dir(tmp, texts.make() if isinstance(texts, Corpus) else list(texts), recipe)
        try:
            os.replace(tmp, target)  # atomic: a half-built model is never found under the cache key
        except OSError:
            if not (target / "config.json").is_file():  # lost a race with another process: theirs is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
