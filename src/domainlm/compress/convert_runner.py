"""Runs llama.cpp's ``convert_hf_to_gguf.py`` in its own process: ``python -m domainlm.compress.convert_runner DIR ARGS``.

One thing is added (by hand, as no library does it): llama.cpp recognises a BPE pre-tokenizer by hashing the
token ids of a test string, i.e. by the *vocabulary* of a known model. domainlm's ``tiny`` tokenizer has its
own vocabulary but exactly Qwen2's pre-tokenizer regex, so when the hash is unknown and the tokenizer's
Split regex is Qwen2's, it is declared ``qwen2``. Anything else still fails as the converter decides; the
template parity check afterwards proves llama.cpp tokenizes as the source does.
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

    sys.argv = [str(converter / "convert_hf_to_gguf.py"), *sys.argv[2:]]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
