"""Model families as teams bring them: real tokenizers and chat templates, tiny random weights, offline.

The tokenizers and templates come from llama-cpp-python's source distribution, which vendors llama.cpp's
vocabulary-only GGUF files (``vendor/llama.cpp/models/ggml-vocab-*.gguf``) and its collection of real chat
templates (``vendor/llama.cpp/models/templates/*.jinja``). The sdist is fetched once with pip (no install)
(or read from ``$DOMAINLM_LLAMA_CPP_SDIST``, an archive already on disk) and only those files are kept in the
cache, ``~/.cache/domainlm/llama.cpp-models/<version>`` (CI caches that folder); building a tokenizer from a GGUF file takes transformers about a
minute, so each built tokenizer is saved once in the cache too. Weights are random and tiny: the matrix
checks which tokens carry the loss and what the saved folder holds, never what the model says.

Where llama.cpp ships no vocabulary for a family (GLM, the DeepSeek-V3 markers, MiniCPM's ChatML tokens),
the closest vocabulary is used and the family's own control tokens are added as special tokens, as the
family's ``tokenizer_config.json`` declares them; :data:`FAMILIES` says which for each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The sdist whose templates the matrix was written against (llama.cpp's collection changes between versions).
SDIST_VERSION = "0.3.36"


def models_cache() -> Path:
    from domainlm.models import cache_root

    return cache_root() / "llama.cpp-models" / SDIST_VERSION


def unpack_models(archive: Path, target: Path) -> Path:
    """Keep only the matrix's vocabularies and the chat templates of the sdist's ``vendor/llama.cpp/models``
    (a few MB of its 76), in ``target``."""
    vocabs = {f"ggml-vocab-{family.vocab}.gguf" for family in FAMILIES}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, tarfile.open(archive) as tar:
        prefix = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/models/"
        members = []
        for member in tar.getmembers():
            rel = member.name[len(prefix):] if member.name.startswith(prefix) else ""
            if (rel in vocabs or rel.startswith("templates/")) and member.isfile():
                member.name = rel
                members.append(member)
        tar.extractall(Path(tmp) / "models", members=members, filter="data")
        if not list((Path(tmp) / "models").glob("ggml-vocab-*.gguf")):
            raise RuntimeError(f"{archive.name}: no vendor/llama.cpp/models/ggml-vocab-*.gguf inside")
        try:
            os.replace(Path(tmp) / "models", target)
        except OSError:
            if not (target / "templates").is_dir():  # another process won the race: fine
                raise
    return target


def llama_cpp_models() -> Path:
    """The cached models folder; fetched from the package index on first use (RuntimeError when it cannot be)."""
    target = models_cache()
    if (target / "templates").is_dir():
        return target
    local = os.environ.get("DOMAINLM_LLAMA_CPP_SDIST")  # an already downloaded llama_cpp_python-*.tar.gz
    if local:
        return unpack_models(Path(local), target)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={SDIST_VERSION}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode or not archives:
            last = (done.stderr.strip().splitlines() or ["no archive"])[-1]
            raise RuntimeError(f"cannot fetch llama-cpp-python=={SDIST_VERSION}'s sdist ({last})")
        return unpack_models(archives[0], target)


def gguf_tokenizer(models: Path, vocab: str):
    """The tokenizer transformers builds from ``ggml-vocab-<vocab>.gguf``, built once and cached as a folder."""
    from transformers import AutoTokenizer

    built = models / "tokenizers" / vocab
    if not (built / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(models, gguf_file=f"ggml-vocab-{vocab}.gguf")
        with tempfile.TemporaryDirectory(dir=models) as tmp:
            tok.save_pretrained(tmp)
            built.parent.mkdir(exist_ok=True)
            try:
                os.replace(tmp, built)
            except OSError:
                if not (built / "tokenizer_config.json").is_file():
                    raise
    return AutoTokenizer.from_pretrained(built)


@dataclass(frozen=True)
class Family:
    """One family: where its tokenizer and template come from, its architecture, and its turn format.

    ``eot`` is the token that ends an assistant turn in the family's format (what the model must learn to
    emit); ``stops`` are the generation config's end tokens. ``tool_format`` names how the family writes a
    tool call; ``parsed_by_serve`` says whether ``domainlm.parsing.parse_tool_calls`` reads it as serve decodes
    it, and ``serve_gap`` (the matrix's xfail reason) says why not where it does not.
    """

    name: str
    vocab: str
    template: str
    arch: str
    eot: str
    stops: tuple[str, ...]
    tool_format: str
    thinking: bool
    parsed_by_serve: bool
    special: tuple[str, ...] = ()  # control tokens the family marks special (added where the vocab lacks them)
    plain: tuple[str, ...] = ()  # tokens the family adds as ordinary text tokens
    user_marker: str = ""  # how a user turn starts: never inside the loss
    tool_marker: str = ""  # what only the family's own tool-call format writes
    notes: str = ""
    serve_gap: str = ""
    config: Callable[[int], object] | None = field(default=None, compare=False)


def _tiny(kind: str, vocab_size: int, **extra):
    from transformers import AutoConfig

    base = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                tie_word_embeddings=True)
    return AutoConfig.for_model(kind, **{**base, **extra})


FAMILIES = [
    Family("Qwen2.5", "qwen2", "Qwen-Qwen2.5-7B-Instruct", "qwen2", "<|im_end|>", ("<|im_end|>", "<|endoftext|>"),
           "hermes <tool_call>{json}</tool_call>", False, True,
           special=("<|im_start|>", "<|im_end|>", "<|endoftext|>"), plain=("<tool_call>", "</tool_call>"),
           user_marker="<|im_start|>user", tool_marker="<tool_call>\n{\"name\": "),
    Family("Qwen3", "qwen2", "Qwen-Qwen3-0.6B", "qwen3", "<|im_end|>", ("<|im_end|>", "<|endoftext|>"),
           "hermes <tool_call>{json}</tool_call>", True, True,
           special=("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
           plain=("<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>"),
           user_marker="<|im_start|>user", tool_marker="<tool_call>\n{\"name\": ",
           notes="Qwen3's vocabulary is Qwen2.5's plus <think> tokens (added)"),
    Family("Qwen3.5", "qwen35", "Qwen3.5-4B", "qwen3_5_text", "<|im_end|>", ("<|im_end|>", "<|endoftext|>"),
           "<tool_call><function=name><parameter=k>v</parameter></function></tool_call>", True, True,
           special=("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
           plain=("<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>"),
           user_marker="<|im_start|>user", tool_marker="<function=get_exchange_rate>\n<parameter=base>",
           notes="the generation prompt opens the think block (<think>\\n): the loss starts inside it"),
    Family("GLM-4.6", "qwen2", "GLM-4.6", "glm4_moe", "<|user|>", ("<|endoftext|>", "<|user|>", "<|observation|>"),
           "<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>", True, True,
           special=("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
                    "<|endoftext|>"),
           plain=("<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>",
                  "</arg_value>", "<tool_response>", "</tool_response>"),
           user_marker="<|user|>", tool_marker="<arg_key>base</arg_key>",
           notes="no GLM vocabulary in llama.cpp: Qwen2's BPE with GLM's control tokens added; a GLM turn has no "
                 "end token of its own: the next role token (<|user|>/<|observation|>) or <|endoftext|> ends it"),
    Family("DeepSeek-V3.1", "deepseek-llm", "deepseek-ai-DeepSeek-V3.1", "deepseek_v3", "<｜end▁of▁sentence｜>",
           ("<｜end▁of▁sentence｜>",),
           "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>name<｜tool▁sep｜>{json}<｜tool▁call▁end｜>…", True, True,
           special=("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
                    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
                    "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
                    "<｜tool▁output▁end｜>"),
           plain=("<think>", "</think>"), user_marker="<｜User｜>", tool_marker="<｜tool▁sep｜>",
           notes="DeepSeek-LLM's BPE (the V3 vocabulary is not in llama.cpp) with V3's markers added; the markers "
                 "are special tokens, which serve's decoder keeps (domainlm.parsing.CONTENT_MARKERS)"),
    Family("Llama-3.1", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct", "llama", "<|eot_id|>",
           ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), "JSON {\"name\", \"parameters\"} (no tag)", False, True,
           special=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                    "<|eom_id|>", "<|python_tag|>"),
           user_marker="<|start_header_id|>user", tool_marker="\"parameters\": "),
    Family("MiniCPM5", "llama-spm", "openbmb-MiniCPM5-1B", "minicpm5_moe", "<|im_end|>", ("<|im_end|>", "</s>"),
           "<function name=\"n\"><param name=\"k\">v</param></function>", True, True,
           special=("<|im_start|>", "<|im_end|>"),
           plain=("<think>", "</think>", "<tool_response>", "</tool_response>"), user_marker="<|im_start|>user",
           tool_marker="<function name=\"get_exchange_rate\"><param name=\"base\">",
           notes="MiniCPM's SentencePiece vocabulary is not in llama.cpp: LLaMA's (same kind) with ChatML added"),
]

ARCH_EXTRA = {
    "qwen3": dict(head_dim=16),
    "qwen3_5_text": dict(head_dim=16, layer_types=["linear_attention", "full_attention"], linear_key_head_dim=16,
                         linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=2),
    "minicpm5_moe": dict(moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1),
    "glm4_moe": dict(head_dim=16, moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2,
                     n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1, partial_rotary_factor=0.5),
    "deepseek_v3": dict(q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
                        moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                        first_k_dense_replace=1, n_group=1, topk_group=1, num_key_value_heads=2),
}


def family_tokenizer(models: Path, family: Family):
    """The family's tokenizer: its vocabulary, its control tokens marked special, its template attached."""
    from tokenizers import AddedToken

    tok = gguf_tokenizer(models, family.vocab)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in family.special], special_tokens=True)
    if family.plain:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in family.plain])
    tok.chat_template = (models / "templates" / f"{family.template}.jinja").read_text(encoding="utf-8")
    if family.eot in tok.get_vocab():
        tok.eos_token = family.stops[0] if family.name == "GLM-4.6" else family.eot
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_family_model(models: Path, family: Family, out: Path) -> Path:
    """A tiny random-weight model of ``family``'s architecture with its real tokenizer and template, saved."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tok = family_tokenizer(models, family)
    vocab_size = (len(tok) + 63) // 64 * 64
    config = _tiny(family.arch, vocab_size, **ARCH_EXTRA.get(family.arch, {}))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    stops = [tok.convert_tokens_to_ids(t) for t in family.stops]
    model.generation_config = GenerationConfig(eos_token_id=stops, pad_token_id=tok.pad_token_id,
                                               bos_token_id=tok.bos_token_id, do_sample=False)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
