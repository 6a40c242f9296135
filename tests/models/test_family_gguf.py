"""The conformance matrix, GGUF column: each family exported by ``domainlm compress --to gguf-f16``'s own path
keeps its chat template, its stop tokens and its architecture in the file.

The file is read with the ``gguf`` package's reader, so this runs where the llama.cpp runtime
(llama-cpp-python) is not installed: the export needs only llama.cpp's converter, which domainlm fetches
from llama-cpp-python's sdist (the same 0.3.36 archive the matrix takes its tokenizers from). Where the
converter cannot convert a family, the test is a strict xfail carrying the converter's own reason.

A model whose tokenizer names the wrong end-of-turn token must fail the stop check (the check can fail).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from families import FAMILIES, Family, build_family_model, llama_cpp_models

from domainlm.errors import DomainlmError

pytest.importorskip("gguf", reason="the GGUF header is read with the gguf package (domainlm[test])")
pytest.importorskip("sentencepiece", reason="llama.cpp's converter imports sentencepiece (domainlm[gguf])")

# The architecture llama.cpp names in the file, for each family's transformers architecture.
GGUF_ARCH = {"qwen2": "qwen2", "qwen3": "qwen3", "qwen3_5_text": "qwen35", "glm4_moe": "glm4moe",
             "deepseek_v3": "deepseek2", "llama": "llama", "minicpm5_moe": "minicpm5"}

# Families llama.cpp 0.3.36's converter does not convert, with the converter's message (matched, so a
# converter or fixture that starts converting them turns the strict xfail into a failure to look at).
CONVERTER_GAPS = {
    "MiniCPM5": ("Model MiniCPM5MoeForCausalLM is not supported",
                 "llama.cpp 0.3.36's converter has no MiniCPM5MoeForCausalLM (it knows MiniCPM5's vocabulary, "
                 "not its MoE architecture)"),
    "DeepSeek-V3.1": ("BPE pre-tokenizer was not recognized",
                      "the matrix's DeepSeek tokenizer is transformers' rebuild of ggml-vocab-deepseek-llm.gguf, "
                      "whose pre-tokenizer is plain ByteLevel, not DeepSeek's Split regexes; the converter "
                      "identifies a pre-tokenizer by hashing its output and rightly refuses an unknown one "
                      "(its table has a 'deepseek-v3' entry for the real DeepSeek-V3 tokenizer)"),
}


def export_f16(folder: Path, out: Path) -> Path:
    """What ``domainlm compress --to gguf-f16`` runs to make the file."""
    from domainlm.compress.gguf_export import export_gguf
    from domainlm.compress.stage import artifact_name

    return export_gguf(folder, out / artifact_name("gguf-f16"), "gguf-f16")


def gguf_header(path: Path) -> dict:
    """The header's scalars (as domainlm reads them) and the vocabulary's token texts."""
    from gguf import GGUFReader

    from domainlm.compress.gguf_export import gguf_metadata

    return {**gguf_metadata(path), "tokens": GGUFReader(str(path)).fields["tokenizer.ggml.tokens"].contents()}


def stop_problems(header: dict, family: Family) -> list[str]:
    """What is wrong with the file's end tokens for ``family``: each of eos/eot/eom present must be one of
    the family's stop tokens, and the token that ends an assistant turn must be among them (else llama.cpp
    runs past the end of the turn)."""
    ends = {key: header["tokens"][header[f"tokenizer.ggml.{key}_token_id"]] for key in ("eos", "eot", "eom")
            if f"tokenizer.ggml.{key}_token_id" in header}
    problems = [f"{key} is {text!r}, not one of {family.stops}" for key, text in ends.items()
                if text not in family.stops]
    if family.eot not in ends.values():
        problems.append(f"the end of turn {family.eot!r} is none of the file's end tokens {ends}")
    return problems


@pytest.fixture(scope="module")
def models_dir():
    try:
        return llama_cpp_models()
    except (RuntimeError, OSError) as exc:  # no index to fetch from, or an unreadable archive
        pytest.skip(f"llama.cpp's tokenizers and templates are not available offline: {exc}")


@pytest.fixture(scope="module")
def converter():
    from domainlm.compress.gguf_export import converter_dir
    from domainlm.errors import DomainlmError

    try:  # cached, $DOMAINLM_LLAMA_CPP, or fetched once from llama-cpp-python's sdist with pip
        return converter_dir(fetch=True)
    except DomainlmError as exc:
        pytest.skip(str(exc))


def _family_params():
    for family in FAMILIES:
        gap = CONVERTER_GAPS.get(family.name)
        # raises=: only the conversion failing with the converter's known message counts as the expected gap
        marks = [pytest.mark.xfail(strict=True, raises=DomainlmError, reason=gap[1])] if gap else []
        yield pytest.param(family, id=family.name, marks=marks)


@pytest.fixture(scope="module", params=list(_family_params()))
def family_gguf(request, models_dir, converter, tmp_path_factory):
    """(family, its saved folder, its gguf-f16 file's header); converted once per family."""
    family = request.param
    root = tmp_path_factory.mktemp(family.name)
    folder = build_family_model(models_dir, family, root / "base")
    try:
        path = export_f16(folder, root)
    except DomainlmError as exc:
        gap = CONVERTER_GAPS.get(family.name)
        if gap and gap[0] in str(exc):
            raise
        raise AssertionError(f"{family.name}: {exc}") from exc  # not a known gap: a failure, even under xfail
    return family, folder, gguf_header(path)


def test_gguf_keeps_template_stops_and_architecture(family_gguf, models_dir):
    family, folder, header = family_gguf
    template = (models_dir / "templates" / f"{family.template}.jinja").read_text(encoding="utf-8")
    assert header["tokenizer.chat_template"] == template
    assert header["general.architecture"] == GGUF_ARCH[family.arch]
    assert stop_problems(header, family) == []
    # the file's eos is the tokenizer's own, id for id
    eos = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["eos_token"]
    assert header["tokens"][header["tokenizer.ggml.eos_token_id"]] == eos


def test_a_wrong_end_of_turn_token_is_caught(models_dir, converter, tmp_path):
    """A Qwen2.5 folder whose tokenizer ends turns with <|endoftext|> (a common mistake: the base model's
    eos kept after chat tuning) converts, but the file does not stop at <|im_end|>: the check says so."""
    family = FAMILIES[0]
    assert family.name == "Qwen2.5"
    folder = build_family_model(models_dir, family, tmp_path / "base")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["eos_token"] = "<|endoftext|>"
    config_path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    header = gguf_header(export_f16(folder, tmp_path))
    assert header["tokens"][header["tokenizer.ggml.eos_token_id"]] == "<|endoftext|>"
    assert stop_problems(header, family) == [
        "the end of turn '<|im_end|>' is none of the file's end tokens {'eos': '<|endoftext|>'}"]
