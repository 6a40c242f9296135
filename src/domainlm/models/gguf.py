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

    def decode_ids(self, prompt_ids, new_tokens):
        # llama.cpp's low-level generator never stops by itself: it decodes until told to stop.
        n = 0
        for _ in self.llm.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            n += 1
            if n >= new_tokens:
                break
        return n
