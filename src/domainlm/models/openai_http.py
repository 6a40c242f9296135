"""The OpenAI-compatible HTTP backend: ``openai:http://host:port/v1#model-name``.

Works with `domainlm serve`, vLLM, llama.cpp's server, Ollama and hosted APIs. Uses the standard
library's HTTP client (a few JSON POSTs need no extra dependency); requests run concurrently in threads
and come back in order. The API key, when needed, is read from ``$OPENAI_API_KEY``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from domainlm.errors import DomainlmError
from domainlm.models.base import LanguageModel, cut_at_stop


def format_tool_calls(tool_calls: list[dict]) -> str:
    """Tool calls as the text a ChatML model writes, so every backend's output is scored the same way."""
    parts = []
    for call in tool_calls:
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        parts.append("<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
                     + "\n</tool_call>")
    return "\n".join(parts)


class OpenAIModel(LanguageModel):
    supports_logprobs = False

    def __init__(self, base_url: str, model_name: str, *, timeout: float = 300.0, concurrency: int = 4):
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.timeout = timeout
        self.concurrency = concurrency
        self.info = {"spec": f"openai:{self.base_url}#{model_name}", "backend": "openai", "params": None,
                     "n_layers": None, "hidden_size": None, "vocab_size": None, "max_seq_len": None}

    def _post(self, route: str, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        request = urllib.request.Request(
            self.base_url + route, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")[:200]
            raise DomainlmError(f"{self.base_url}{route}: HTTP {exc.code} {body}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise DomainlmError(f"{self.base_url}{route}: cannot reach the server ({exc})") from None
        except json.JSONDecodeError:
            raise DomainlmError(f"{self.base_url}{route}: the server did not answer with JSON") from None

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1 or self.concurrency <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, prompts, *, max_new_tokens=128, temperature=0.0, stop=None, seed=0):
        def one(prompt: str) -> str:
            payload: dict[str, Any] = {"model": self.model_name, "prompt": prompt, "max_tokens": max_new_tokens,
                                       "temperature": temperature, "seed": seed}
            if stop:
                payload["stop"] = stop
            data = self._post("/completions", payload)
            try:
                return cut_at_stop(data["choices"][0]["text"] or "", stop)
            except (KeyError, IndexError, TypeError):
                raise DomainlmError(f"{self.base_url}/completions: unexpected answer {str(data)[:200]}") from None

        return self._map(one, list(prompts))

    def chat(self, conversations, *, max_new_tokens=128, temperature=0.0, tools=None, response_format=None, seed=0):
        def one(messages: list[dict]) -> str:
            payload: dict[str, Any] = {"model": self.model_name, "messages": messages, "max_tokens": max_new_tokens,
                                       "temperature": temperature, "seed": seed}
            if tools:
                payload["tools"] = tools
            if response_format:
                payload["response_format"] = response_format
            data = self._post("/chat/completions", payload)
            try:
                message = data["choices"][0]["message"]
            except (KeyError, IndexError, TypeError):
                raise DomainlmError(f"{self.base_url}/chat/completions: unexpected answer {str(data)[:200]}") from None
            text = message.get("content") or ""
            if message.get("tool_calls"):
                text = (text + "\n" if text else "") + format_tool_calls(message["tool_calls"])
            return text.strip()

        return self._map(one, list(conversations))
