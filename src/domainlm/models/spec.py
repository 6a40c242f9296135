"""Model specs: the one string a user writes to name a model, parsed into what to load.

``tiny`` · a local Hugging Face directory (a full model, or a LoRA adapter folder) · a ``.gguf`` file ·
``openai:http://host:port/v1#model-name`` (any OpenAI-compatible endpoint; replicas of one model:
``openai:http://h1:8000/v1,http://h2:8000/v1#model-name``) · ``vllm:DIR`` (a local HF
directory served in-process by vLLM, when vLLM is installed on a GPU machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from domainlm.errors import DomainlmError


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # tiny | hf | gguf | openai | vllm
    target: str  # path, URL (openai: comma-separated URLs of replicas) or "" for tiny
    model_name: str = ""  # openai: the model name after '#'

    @property
    def text(self) -> str:
        if self.kind == "tiny":
            return "tiny"
        if self.kind == "openai":
            return f"openai:{self.target}#{self.model_name}"
        if self.kind == "vllm":
            return f"vllm:{self.target}"
        return self.target


def parse_spec(spec: str | Path) -> ModelSpec:
    """Turn a spec string into a :class:`ModelSpec`; a bad spec is one clear error line."""
    text = str(spec).strip()
    if not text:
        raise DomainlmError("model spec is empty; use tiny, a model folder, a .gguf file or openai:URL#model")
    if text == "tiny":
        return ModelSpec("tiny", "")
    if text.startswith("openai:"):
        # Several servers of one model (replicas) are comma-separated: openai:http://h1/v1,http://h2/v1#name
        urls_text, _, name = text[len("openai:") :].partition("#")
        urls = [u.strip().rstrip("/") for u in urls_text.split(",")]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise DomainlmError(f"model spec '{text}': '{url}' is not a URL; expected "
                                    "openai:http://host:port/v1#model-name (replicas: URL,URL#model-name)")
        if len(set(urls)) != len(urls):
            raise DomainlmError(f"model spec '{text}': a server is listed twice")
        return ModelSpec("openai", ",".join(urls), name or "default")
    if text.startswith("vllm:"):
        path = Path(text[len("vllm:") :])
        if not (path / "config.json").is_file():
            raise DomainlmError(f"model spec '{text}': {path} is not a Hugging Face model folder (no config.json)")
        return ModelSpec("vllm", str(path))
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise DomainlmError(f"model spec '{text}': no such .gguf file")
        return ModelSpec("gguf", str(path))
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return ModelSpec("hf", str(path))
        raise DomainlmError(f"model spec '{text}': folder has no config.json or adapter_config.json")
    raise DomainlmError(
        f"model spec '{text}': not 'tiny', an existing model folder, a .gguf file or openai:URL#model"
    )
