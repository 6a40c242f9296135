"""The transformers backend: a Hugging Face model folder (or a LoRA adapter folder) on CPU or GPU."""

from __future__ import annotations

import json
import weakref
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from domainlm.errors import DomainlmError
from domainlm.models.base import LanguageModel, cut_at_stop
from domainlm.parsing import CONTENT_MARKERS


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str | None = None):
    import torch

    if dtype:
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_hf(path: str | Path, *, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) from a model folder; an adapter folder is loaded onto its base and merged."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    path = Path(path)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    try:
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            from peft import PeftModel

            base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
            if Path(base).is_absolute() and not Path(base).is_dir():
                raise DomainlmError(missing_base(path, base))
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
            tok_dir = path if (path / "tokenizer_config.json").is_file() else Path(base)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            tok_dir = path
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise DomainlmError(f"{path}: cannot load model ({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# Per tokenizer, the ids visible_text drops (weak keys: a swapped-out model's tokenizer is not kept alive).
_HIDDEN_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hidden_token_ids(tokenizer) -> frozenset[int]:
    """The token ids a model's answer is decoded without: every special token (bos/eos/pad, end of turn, role
    markers) except those that are content, the tool-call markers ``domainlm.parsing`` reads
    (:data:`~domainlm.parsing.CONTENT_MARKERS`). Built once per tokenizer.

    ``all_special_ids`` names only the bos/eos/unk/pad-style tokens; tokens added as special (DeepSeek's
    markers, Llama's headers) are flagged in ``added_tokens_decoder``, which is what
    ``skip_special_tokens=True`` drops, so both are read.
    """
    found = _HIDDEN_IDS.get(tokenizer)
    if found is None:
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        special = set(tokenizer.all_special_ids) | {i for i, token in added.items() if token.special}
        found = frozenset(i for i in special if tokenizer.convert_ids_to_tokens(i) not in CONTENT_MARKERS)
        _HIDDEN_IDS[tokenizer] = found
    return found


def visible_text(tokenizer, ids: Iterable[int]) -> str:
    """Generated ids as the answer's text: ``skip_special_tokens=True`` except that the tool-call markers a
    family made special tokens stay (decoded without them, DeepSeek's calls reach the parser as 'NAME{json}')."""
    hidden = hidden_token_ids(tokenizer)
    return tokenizer.decode([i for i in ids if i not in hidden], skip_special_tokens=False)


def missing_base(adapter: Path, base: str) -> str:
    """The error line for an adapter whose base folder is gone, with the base as training named it
    (``domainlm_lineage.json``): a ``tiny`` base lives in the cache and is built from the training data."""
    lineage = adapter / "domainlm_lineage.json"
    spec = json.loads(lineage.read_text(encoding="utf-8")).get("base") if lineage.is_file() else None
    named = f" (trained from '{spec}')" if spec and spec != base else ""
    merged = adapter.parent if (adapter.parent / "config.json").is_file() else None
    fix = f"load the merged model {merged}, which needs no base, or train again" if merged else "train again"
    return f"{adapter}: the adapter's base model {base}{named} is not there; {fix}"


def model_info(model, spec: str, backend: str) -> dict[str, Any]:
    cfg = model.config
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    hidden = getattr(text_cfg, "hidden_size", None)
    heads = getattr(text_cfg, "num_attention_heads", None)
    return {
        "spec": spec,
        "backend": backend,
        "arch": getattr(cfg, "model_type", None),
        "params": sum(p.numel() for p in model.parameters()),
        "n_layers": getattr(text_cfg, "num_hidden_layers", None),
        "hidden_size": hidden,
        "intermediate_size": getattr(text_cfg, "intermediate_size", None),
        "n_heads": heads,
        "n_kv_heads": getattr(text_cfg, "num_key_value_heads", heads),
        "head_dim": getattr(text_cfg, "head_dim", None) or (hidden // heads if hidden and heads else None),
        "vocab_size": getattr(text_cfg, "vocab_size", None),
        "max_seq_len": getattr(text_cfg, "max_position_embeddings", None),
        "tie_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "device": str(next(model.parameters()).device),
    }


class TransformersModel(LanguageModel):
    supports_logprobs = True

    def __init__(self, path: str | Path, *, spec: str | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 8):
        self.path = Path(path)
        self.model, self.tokenizer = load_hf(path, device=device, dtype=dtype)
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.info = model_info(self.model, spec or str(path), "transformers")
        self.info["path"] = str(self.path)
        self.stop_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> list[int]:
        ids: list[int] = []
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (eos if isinstance(eos, list) else [eos]) + [self.tokenizer.eos_token_id]:
            if value is not None and value not in ids:
                ids.append(value)
        # ChatML models end a turn with <|im_end|> even when their config names only <|endoftext|>.
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id and im_end not in ids:
            ids.append(im_end)
        return ids

    # ----------------------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate_ids(self, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float,
                      seed: int) -> list[list[int]]:
        """New token ids for each prompt.

        Greedy decoding batches only prompts of equal length, so no padding ever enters a batch and an
        answer never depends on what it was batched with. Sampling runs one prompt at a time from
        ``seed`` so a prompt's sample is the same whatever else is in the call.
        """
        import torch

        limit = int(self.info.get("max_seq_len") or 1 << 30)
        prompt_ids = [ids[-max(1, limit - max_new_tokens):] for ids in prompt_ids]
        out: list[list[int] | None] = [None] * len(prompt_ids)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, ids in enumerate(prompt_ids):
            groups[len(ids) if temperature == 0 else -1 - i].append(i)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            for _, members in sorted(groups.items()):
                for start in range(0, len(members), self.batch_size):
                    chunk = members[start : start + self.batch_size]
                    batch = torch.tensor([prompt_ids[i] for i in chunk], device=self.device)
                    if temperature > 0:
                        torch.manual_seed(seed)
                    result = self.model.generate(
                        input_ids=batch, attention_mask=torch.ones_like(batch), **kwargs
                    )
                    for row, i in enumerate(chunk):
                        new = result[row, batch.shape[1] :].tolist()
                        # Cut at the first stop token (later rows of a batch are padded after theirs).
                        for k, token in enumerate(new):
                            if token in self.stop_ids:
                                new = new[:k]
                                break
                        out[i] = new
        return out  # type: ignore[return-value]

    def generate(self, prompts, *, max_new_tokens=128, temperature=0.0, stop=None, seed=0):
        ids = [self._encode(p) or [self.stop_ids[0]] for p in prompts]
        new = self._generate_ids(ids, max_new_tokens, temperature, seed)
        return [cut_at_stop(visible_text(self.tokenizer, n), stop) for n in new]

    def render_chat(self, conversation: list[dict], tools: list[dict] | None = None) -> str:
        if not self.tokenizer.chat_template:
            raise DomainlmError(f"{self.path}: the tokenizer has no chat template; use generate() instead")
        return self.tokenizer.apply_chat_template(
            conversation, tools=tools or None, add_generation_prompt=True, tokenize=False
        )

    def chat(self, conversations, *, max_new_tokens=128, temperature=0.0, tools=None, response_format=None, seed=0):
        # response_format is honoured by what the model learned (sft on JSON outputs); the transformers
        # backend does not constrain decoding.
        ids = [self._encode(self.render_chat(conv, tools)) for conv in conversations]
        new = self._generate_ids(ids, max_new_tokens, temperature, seed)
        return [visible_text(self.tokenizer, n).strip() for n in new]

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        whole = self._encode(context + continuation)
        ctx = self._encode(context)
        if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
            cont = whole[len(ctx) :]
        else:  # the boundary merged into one token: score the continuation tokenized on its own
            cont = self._encode(continuation)
        if not ctx:  # score the first token too, conditioned on the document separator
            ctx = [self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.stop_ids[0]]
        return ctx, cont

    def loglikelihood(self, requests):
        import torch

        pairs = [self._split(c, x) for c, x in requests]
        out = [0.0] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                seqs = [pairs[i][0] + pairs[i][1] for i in chunk]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for row, seq in enumerate(seqs):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                for row, i in enumerate(chunk):
                    ctx, cont = pairs[i]
                    positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=logprobs.device)
                    targets = torch.tensor(cont, device=logprobs.device)
                    out[i] = float(logprobs[row, positions, targets].sum())
        return out

    def decode_ids(self, prompt_ids, new_tokens):
        import torch

        batch = torch.tensor([prompt_ids], device=self.device)
        with torch.inference_mode():
            out = self.model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=False,
                                      max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return out.shape[1] - batch.shape[1]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
