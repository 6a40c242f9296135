"""``gguf-f16`` / ``gguf-q8_0`` / ``gguf-q4_k_m``: export for llama.cpp, tokenizer and chat template embedded.

No converter is written here: llama.cpp's own ``convert_hf_to_gguf.py`` (with its ``conversion`` package and
``gguf-py``) does the Hugging Face → GGUF work, q8_0 included (``--outtype q8_0``), and llama.cpp's quantizer
(``llama_model_quantize``, called through llama-cpp-python) makes Q4_K_M. The converter ships in
llama-cpp-python's source distribution, not in its wheel, so it is taken from ``$DOMAINLM_LLAMA_CPP`` (a
llama.cpp checkout) or from the cache, where :func:`fetch_converter` unpacks it from the sdist of the
*installed* llama-cpp-python (the writer and the runtime then agree on the file format) or, where the
runtime is not installed, of :data:`CONVERTER_VERSION`. So gguf-f16 and gguf-q8_0 need only the converter
and its Python dependencies; gguf-q4_k_m, the parity check and the quality gate need the runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.models import cache_root

CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
# llama.cpp's enum llama_ftype: the value of LLAMA_FTYPE_MOSTLY_Q4_K_M.
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
# The converter used where llama-cpp-python is not installed: the version the family matrix
# (tests/models/test_family_gguf.py) checks, so its files are known to carry each family's template and stops.
CONVERTER_VERSION = "0.3.36"
# llama-cpp-python has no Linux wheel on PyPI: pip compiles llama.cpp, which users must be told before they wait.
INSTALL_RUNTIME = ("pip install 'domainlm[gguf]' (llama-cpp-python compiles llama.cpp from source: "
                   "20+ minutes on 2 cores)")


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python's version, or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def runtime_missing(what: str) -> str | None:
    """Why ``what`` cannot run here (one line saying what to install), or None where llama-cpp-python imports."""
    try:
        import llama_cpp  # noqa: F401  (importing also loads the compiled library, which a broken build lacks)
    except ImportError:
        return f"{what} needs the llama.cpp runtime, which is not installed: {INSTALL_RUNTIME}"
    return None


def converter_version() -> str:
    """The llama-cpp-python release whose converter writes the file: the installed one, else the pinned one."""
    return llama_cpp_version() or CONVERTER_VERSION


def converter_dir(fetch: bool = True) -> Path:
    """The folder holding ``convert_hf_to_gguf.py``; fetched into the cache on first use."""
    env = os.environ.get("DOMAINLM_LLAMA_CPP")
    if env:
        if not (Path(env) / "convert_hf_to_gguf.py").is_file():
            raise DomainlmError(f"DOMAINLM_LLAMA_CPP={env}: no convert_hf_to_gguf.py there")
        return Path(env)
    cached = cache_root() / "llama.cpp" / converter_version()
    if (cached / "convert_hf_to_gguf.py").is_file():
        return cached
    if not fetch:
        raise DomainlmError(f"no GGUF converter in {cached}; set DOMAINLM_LLAMA_CPP to a llama.cpp checkout")
    return fetch_converter(cached)


def fetch_converter(target: Path) -> Path:
    """Unpack llama.cpp's converter into ``target`` from llama-cpp-python's sdist: ``$DOMAINLM_LLAMA_CPP_SDIST``
    when that is this version's archive already on disk (offline CI), else downloaded with pip (no install)."""
    version = converter_version()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        local = Path(os.environ.get("DOMAINLM_LLAMA_CPP_SDIST", ""))
        if local.name == f"llama_cpp_python-{version}.tar.gz" and local.is_file():
            archives = [local]
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   f"llama-cpp-python=={version}", "-d", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True)
            archives = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            if done.returncode or not archives:
                last = (done.stderr.strip().splitlines() or ["no archive"])[-1]
                raise DomainlmError(f"cannot fetch llama.cpp's GGUF converter (llama-cpp-python=={version} sdist: "
                                    f"{last}); set DOMAINLM_LLAMA_CPP to a llama.cpp checkout instead")
        staging = Path(tmp) / "converter"
        with tarfile.open(archives[0]) as archive:
            prefix = f"{archive.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            members = []
            for member in archive.getmembers():
                rel = member.name[len(prefix):] if member.name.startswith(prefix) else None
                if rel and any(rel == f or (f.endswith("/") and rel.startswith(f)) for f in CONVERTER_FILES):
                    member.name = rel
                    members.append(member)
            archive.extractall(staging, members=members, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise DomainlmError(f"{archives[0].name}: no vendor/llama.cpp/convert_hf_to_gguf.py inside")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "convert_hf_to_gguf.py").is_file():  # another process won the race: fine
                raise
    return target


def convert(source: str | Path, out_file: str | Path, outtype: str) -> Path:
    """Run llama.cpp's converter on the model folder ``source``; ``outtype`` is f32, f16 or q8_0."""
    import importlib.util

    # The converter tries a SentencePiece vocabulary first for most architectures (Qwen2, Llama…), so without
    # the package it stops on an import error deep inside; say so before starting it.
    if importlib.util.find_spec("sentencepiece") is None:
        raise DomainlmError("llama.cpp's GGUF converter needs sentencepiece: pip install sentencepiece "
                            "(or 'domainlm[gguf]', which also builds the llama.cpp runtime)")
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "domainlm.compress.convert_runner", str(converter_dir()),
           str(source), "--outfile", str(out_file), "--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    if done.returncode or not out_file.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
        raise DomainlmError(f"{source}: GGUF conversion failed ({reason.strip()})")
    return out_file


def quantize_gguf(source_file: Path, out_file: Path, ftype: int = LLAMA_FTYPE_MOSTLY_Q4_K_M) -> Path:
    """llama.cpp's quantizer (the ``llama-quantize`` tool's library call) from an f32/f16 GGUF file."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(source_file).encode(), str(out_file).encode(), ctypes.byref(params))
    if code != 0 or not out_file.is_file():
        raise DomainlmError(f"{source_file}: llama.cpp quantization failed (code {code})")
    return out_file


def export_gguf(source: str | Path, out_file: str | Path, target: str) -> Path:
    """``target`` is gguf-f16, gguf-q8_0 or gguf-q4_k_m; writes one .gguf file."""
    quant = target.removeprefix("gguf-")
    out_file = Path(out_file)
    if quant in ("f16", "q8_0"):
        return convert(source, out_file, quant)
    if quant != "q4_k_m":
        raise DomainlmError(f"unknown GGUF target '{target}'")
    missing = runtime_missing("gguf-q4_k_m (llama.cpp's quantizer)")
    if missing:  # before the conversion, so nobody waits for a file that cannot be quantized
        raise DomainlmError(f"{missing}; gguf-f16 and gguf-q8_0 need only the converter")
    with tempfile.TemporaryDirectory(dir=out_file.parent) as tmp:
        full = convert(source, Path(tmp) / "f32.gguf", "f32")  # quantize from full precision: one rounding only
        return quantize_gguf(full, out_file)


def gguf_metadata(path: str | Path) -> dict:
    """The GGUF header's key/values that matter for parity (chat template, special token ids), read with the
    ``gguf`` package's reader (no llama.cpp runtime needed)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise DomainlmError("reading a GGUF header needs the gguf package: pip install 'domainlm[gguf]'") from None

    reader = GGUFReader(str(path))
    out = {}
    for key in ("general.architecture", "tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.pre",
                "general.file_type"):
        field = reader.fields.get(key)
        if field is not None:
            out[key] = field.contents()
    return out
