"""Runs llama.cpp's ``convert_hf_to_gguf.py`` in its own process: ``python -m domainlm.compress.convert_runner DIR ARGS``.

One thing is added (by hand, as no library does it): llama.cpp recognises a BPE pre-tokenizer by hashing the
token ids of a test string, i.e. by the *vocabulary* of a known model. domainlm's ``tiny`` tokenizer has its
own vocabulary but exactly Qwen2's pre-tokenizer regex, so when the hash is unknown and the tokenizer's
Split regex is Qwen2's, it is declared ``qwen2``. Anything else still fails as the converter decides; the
template parity check afterwards proves llama.cpp tokenizes as the source does.

A second: models with a multi-token-prediction head (Qwen3.5, GLM-4.x, DeepSeek-V3) make the converter expect
that head's tensors, but transformers drops them on load, so a model domainlm trained and saved has none and
the converter stops on an assertion. Where the folder holds no MTP tensors, ``--no-mtp`` is passed, which
is what the converter's own option is for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from domainlm.models import QWEN2_PATTERN


def split_patterns(model_dir: Path) -> list[str]:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return []
    pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return [s["pattern"].get("Regex", "") for s in steps if s.get("type") == "Split" and isinstance(s.get("pattern"), dict)]


def has_mtp(model_dir: Path) -> bool:
    """Whether the folder holds a multi-token-prediction head: declared in config.json, or ``mtp.*`` tensors
    (Qwen3-Next declares none); read from the safetensors headers, no weights loaded."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config = {**config, **config.get("text_config", {})}
    if config.get("mtp_num_hidden_layers") or config.get("num_nextn_predict_layers"):
        return True
    names: list[str] = []
    for path in model_dir.glob("*.safetensors"):
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            names += json.loads(f.read(size))
    return any(name.startswith(("mtp.", "model.mtp.")) for name in names)


def main() -> None:
    converter = Path(sys.argv[1])
    sys.path.insert(0, str(converter))
    sys.path.insert(1, str(converter / "gguf-py"))
    from conversion.base import TextModel  # type: ignore[import-not-found]

    original = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if split_patterns(Path(self.dir_model)) == [QWEN2_PATTERN]:
                return "qwen2"
            raise

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    import convert_hf_to_gguf  # type: ignore[import-not-found]

    args = sys.argv[2:]
    model_dir = Path(args[0])
    from conversion import get_model_class  # type: ignore[import-not-found]

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    try:
        model_class = get_model_class(config["architectures"][0])
    except (KeyError, IndexError, NotImplementedError, ValueError, ImportError):
        model_class = None  # the converter itself will say the architecture is unsupported
    if model_class is not None and model_class.supports_mtp_export and not has_mtp(model_dir):
        args.append("--no-mtp")
    sys.argv = [str(converter / "convert_hf_to_gguf.py"), *args]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
