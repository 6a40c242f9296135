"""The llama.cpp backend for ``.gguf`` files, through llama-cpp-python (the ``[gguf]`` extra)."""

from __future__ import annotations

from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.models.base import LanguageModel, cut_at_stop
from domainlm.models.openai_http import format_tool_calls


class GGUFModel(LanguageModel):
    supports_logprobs = False

    def __init__(self, path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise DomainlmError(f"{path}: .gguf models need llama-cpp-python: pip install 'domainlm[gguf]'") from None
        self.path = Path(path)
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        self.info = {"spec": str(path), "backend": "llama.cpp", "params": None, "n_layers": None,
                     "hidden_size": None, "vocab_size": self.llm.n_vocab(), "max_seq_len": self.llm.n_ctx()}

    def generate(self, prompts, *, max_new_tokens=128, temperature=0.0, stop=None, seed=0):
        out = []
        for prompt in prompts:  # llama.cpp decodes one sequence at a time: batch size cannot matter
            result = self.llm.create_completion(prompt, max_tokens=max_new_tokens, temperature=temperature,
                                                stop=stop or None, seed=seed)
            out.append(cut_at_stop(result["choices"][0]["text"], stop))
        return out

    def chat(self, conversations, *, max_new_tokens=128, temperature=0.0, tools=None, response_format=None, seed=0):
        out = []
        for messages in conversations:
            result = self.llm.create_chat_completion(messages=messages, tools=tools, response_format=response_format,
                                                     max_tokens=max_new_tokens, temperature=temperature, seed=seed)
            message = result["choices"][0]["message"]
            text = message.get("content") or ""
            if message.get("tool_calls"):
                text = (text + "\n" if text else "") + format_tool_calls(message["tool_calls"])
            out.append(text.strip())
        return out
