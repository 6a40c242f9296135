"""The vLLM backend (``vllm:DIR``): fast batched generation on a GPU machine where vLLM is installed."""

from __future__ import annotations

from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.models.base import LanguageModel, cut_at_stop


class VLLMModel(LanguageModel):
    supports_logprobs = False

    def __init__(self, path: str | Path, *, gpu_memory_utilization: float = 0.85, max_model_len: int | None = None):
        try:
            from vllm import LLM
        except ImportError:
            raise DomainlmError(f"vllm:{path}: vLLM is not installed (it needs a GPU machine: pip install vllm)") from None
        self.path = Path(path)
        self.llm = LLM(model=str(path), gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        cfg = self.llm.llm_engine.model_config.hf_config
        self.info = {"spec": f"vllm:{path}", "backend": "vllm", "params": None,
                     "n_layers": getattr(cfg, "num_hidden_layers", None), "hidden_size": getattr(cfg, "hidden_size", None),
                     "vocab_size": getattr(cfg, "vocab_size", None), "max_seq_len": getattr(cfg, "max_position_embeddings", None)}

    def _params(self, max_new_tokens, temperature, stop, seed):
        from vllm import SamplingParams

        return SamplingParams(max_tokens=max_new_tokens, temperature=temperature, stop=stop or None, seed=seed)

    def generate(self, prompts, *, max_new_tokens=128, temperature=0.0, stop=None, seed=0):
        results = self.llm.generate(list(prompts), self._params(max_new_tokens, temperature, stop, seed))
        return [cut_at_stop(r.outputs[0].text, stop) for r in results]

    def chat(self, conversations, *, max_new_tokens=128, temperature=0.0, tools=None, response_format=None, seed=0):
        results = self.llm.chat(list(conversations), self._params(max_new_tokens, temperature, None, seed), tools=tools)
        return [r.outputs[0].text.strip() for r in results]
