"""The version ledger: every model the line or the flywheel made, with its size, its cost per token, its
scores and its knowledge density, so density can be followed across versions.

A ledger is a JSONL file, appended to and never rewritten, one object a line (:class:`VersionRecord`):

    ARTIFACTS/versions.jsonl   the line's models: base, tuned, each promoted compression target, recorded by the
                               report step from the eval stage's results (``source``: line, or rebase after a
                               change of base)
    REGISTRY/versions.jsonl    a flywheel registry's versions: v0001 at init, each promoted candidate with its
                               gate scores (``source``: flywheel)

A later line for the same ``version`` supersedes an earlier one: a flywheel version is recorded unscored when
it is made and again once a gate has scored it. A registry made before the ledger existed still reads: the
versions ``registry.json`` lists and the ledger does not get a record built from that history (its gate score,
and the weights counted now).

What a record holds, and how each number is earned:

* ``weights``: parameters counted from the weight files' tensor shapes (safetensors headers, GGUF tensor
  infos), never from a config; a quantized tensor counts the elements it stands for. Bytes on disk, bits per
  parameter (8 · bytes / params, scales and unquantized layers included), and the quantization the file declares.
* ``compute``: forward FLOPs per token ≈ 2 × (parameters − an untied input embedding, which is a lookup),
  :func:`domainlm.evals.density.dense_flops_per_token`; attention over the context comes on top and grows with
  it (the eval's measured FLOPs per item include it: ``density.score_per_tflop``).
* ``scores``: the eval's overall score with its interval and item count, per category (the benchmark's
  dimensions), the general-ability panel and its retention against the reference (the line's base model), and
  the trust notes of :func:`domainlm.evals.density.trust_notes`.
* ``density``: :func:`domainlm.evals.density.version_density`.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from domainlm.errors import DomainlmError
from domainlm.evals import dense_flops_per_token, trust_notes, version_density
from domainlm.io import dumps, numbered_jsonl, read_json, sha256_text

LEDGER = "versions.jsonl"
PLOT = "versions.png"
SOURCES = ("line", "rebase", "flywheel", "registry")

# Tensor names of the input embedding and of the LM head, in Hugging Face checkpoints and in GGUF files.
_EMBEDDING = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$|^token_embd\.weight$")
_HEAD = re.compile(r"(^|\.)lm_head\.weight$|^output\.weight$")
# torchao writes a quantized weight W as W's prefix + "._weight_qdata" (+ "_scale", "_zero_point"); these
# layouts keep one stored element per weight (int4 is stored unpacked in int8 on CPU).
_QUANT_PART = re.compile(r"^(?P<prefix>.+)\._weight_(?P<part>qdata|scale|zero_point)$")
_UNPACKED = ("Int8Tensor", "IntxUnpackedToInt8Tensor")


class VersionRecord(BaseModel):
    """One line of a ledger. Only what every reader relies on is checked; the measured blocks are free-form."""

    model_config = ConfigDict(extra="allow")

    version: str
    source: str
    time: float
    model: str | None = None
    name: str | None = None
    run: str | None = None
    weights: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    density: dict[str, Any] | None = None
    trust: list[str] = []
    weights_id: str | None = None  # which weight files (see _weights_id)
    fingerprint: str | None = None  # weights and scores: a record written once


# ---------------------------------------------------------------------------------------------------
# Counting the weights
# ---------------------------------------------------------------------------------------------------
def _torchao_elements(prefix: str, parts: dict[str, tuple[list[int], str]], meta: dict) -> int:
    """The weights one torchao-quantized tensor stands for. Unpacked layouts: qdata's shape. Others: one scale
    per block, so blocks × block size (torchao records the block size; the scale has one entry per block)."""
    info = json.loads(meta.get(f"{prefix}.weight", "{}"))
    qdata = parts.get("qdata")
    if qdata is not None and info.get("_type") in _UNPACKED:
        return _numel(qdata[0])
    block, scale = (info.get("_data") or {}).get("block_size"), parts.get("scale")
    if block and scale is not None and len(block) == len(scale[0]):
        return _numel([b * s for b, s in zip(block, scale[0], strict=True)])
    raise DomainlmError(f"{prefix}.weight: quantized as {info.get('_type') or 'an unknown layout'}, whose element "
                        "count the checkpoint does not record")


def _numel(shape: list[int]) -> int:
    n = 1
    for size in shape:
        n *= int(size)
    return n


def _quant_bits(meta: dict) -> int | None:
    """The nominal bits of torchao's quantized weights (``int4`` → 4, Int8Tensor → 8), from the checkpoint."""
    bits = set()
    for value in meta.values():
        if not value.startswith("{"):
            continue
        info = json.loads(value)
        target = ((info.get("_data") or {}).get("target_dtype") or {}).get("_data") or ""
        found = re.search(r"int(\d+)", target) or re.search(r"Int(\d+)", info.get("_type") or "")
        if found:
            bits.add(int(found.group(1)))
    return max(bits) if bits else None


def _count_safetensors(folder: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    files = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("adapter_"))
    if not files:
        if (folder / "adapter_model.safetensors").is_file():
            raise DomainlmError(f"{folder}: a LoRA adapter, not a model: count the merged model it was trained into")
        raise DomainlmError(f"{folder}: no *.safetensors weights to count")
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    tensors: dict[str, int] = {}  # logical tensor name → weights it holds
    shapes: dict[str, list[int]] = {}
    quantized: dict[str, dict[str, tuple[list[int], str]]] = {}
    meta: dict[str, str] = {}
    for path in files:
        try:
            with safe_open(path, "np") as handle:
                meta.update(handle.metadata() or {})
                for key in handle.keys():
                    piece = handle.get_slice(key)
                    shape, dtype = piece.get_shape(), piece.get_dtype()
                    part = _QUANT_PART.match(key)
                    if part:
                        quantized.setdefault(part["prefix"], {})[part["part"]] = (shape, dtype)
                    else:
                        tensors[key], shapes[key] = _numel(shape), shape
        except (OSError, ValueError, SafetensorError) as exc:
            raise DomainlmError(f"{path}: not a readable safetensors file ({exc})") from None
    for prefix, parts in quantized.items():
        tensors[f"{prefix}.weight"] = _torchao_elements(prefix, parts, meta)
    embedding = next((k for k in tensors if _EMBEDDING.search(k)), None)
    head = next((k for k in tensors if _HEAD.search(k)), None)
    text = config.get("text_config") or config
    # save_pretrained drops a tied head; torchao's writer keeps a copy of it, which is the same weights
    tied = head is None or bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    if tied and head is not None and embedding is not None and tensors[head] == tensors[embedding]:
        tensors.pop(head)
    quant = config.get("quantization_config") or {}
    return {"format": "safetensors", "files": [p.name for p in files], "params": sum(tensors.values()),
            **_embedding_shape(shapes.get(embedding) if embedding else None), "tie_embeddings": tied,
            "bytes": sum(p.stat().st_size for p in files),
            "quantization": _quant_name(quant), "quant_bits": _quant_bits(meta) if quantized else None}


def _quant_name(quant: dict) -> str | None:
    if not quant:
        return None
    kind = quant.get("quant_type")
    if isinstance(kind, dict):  # torchao: {"default": {"_type": "Int8WeightOnlyConfig", ...}}
        kind = next((v.get("_type") for v in kind.values() if isinstance(v, dict)), None)
    return f"{quant.get('quant_method', 'quantized')}:{kind}" if kind else str(quant.get("quant_method", "quantized"))


def _embedding_shape(shape: list[int] | None) -> dict:
    if not shape or len(shape) != 2:
        return {"vocab_size": None, "hidden_size": None}
    # HF stores [vocab, hidden]; GGUF lists dimensions fastest-first, [hidden, vocab]: the vocabulary is the larger
    return {"vocab_size": max(shape), "hidden_size": min(shape)}


def _count_gguf(path: Path) -> dict:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise DomainlmError(f"{path}: not a readable GGUF file ({exc})") from None
    tensors = {t.name: t for t in reader.tensors}
    params = sum(int(t.n_elements) for t in tensors.values())
    # bits per weight of the tensors as stored (block size and bytes per block of each GGML type)
    stored = sum(int(t.n_elements) * 8 * gguf.GGML_QUANT_SIZES[t.tensor_type][1] / gguf.GGML_QUANT_SIZES[t.tensor_type][0]
                 for t in tensors.values())
    embedding = tensors.get("token_embd.weight")
    types = sorted({t.tensor_type.name for t in tensors.values()})
    return {"format": "gguf", "files": [path.name], "params": params,
            **_embedding_shape([int(x) for x in embedding.shape] if embedding is not None else None),
            "tie_embeddings": "output.weight" not in tensors, "bytes": path.stat().st_size,
            "quantization": "gguf:" + "+".join(types), "quant_bits": round(stored / params, 3) if params else None}


def count_weights(model: str | Path) -> dict:
    """Parameters and storage of a model folder (safetensors) or a ``.gguf`` file, read from the tensor headers
    (no weights are loaded). ``params`` counts each tensor once (a tied LM head is the embedding)."""
    path = Path(model)
    if path.is_dir():
        out = _count_safetensors(path)
    elif path.is_file() and path.suffix == ".gguf":
        out = _count_gguf(path)
    else:
        raise DomainlmError(f"{model}: no local weights to count (a model folder with safetensors, or a .gguf file)")
    out["bits_per_param"] = round(8 * out["bytes"] / out["params"], 3) if out["params"] else None
    return out


def inference_compute(weights: dict) -> dict:
    """FLOPs of one forward token from the counted weights: 2 per weight used, the untied input embedding left
    out (a lookup), a tied one counted once (it is the LM head)."""
    info = {"params": weights.get("params"), "vocab_size": weights.get("vocab_size"),
            "hidden_size": weights.get("hidden_size"), "tie_embeddings": weights.get("tie_embeddings")}
    flops = dense_flops_per_token(info)
    return {"flops_per_token": flops, "gflops_per_token": flops / 1e9 if flops else None,
            "method": "2 x (params - untied input embedding) per token; attention over the context not included"}


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------
def scores_of(results: dict | None, reference: dict | None = None, *, with_kb: dict | None = None) -> dict | None:
    """The scores a record keeps from one eval's ``results.json`` body: overall (interval, items, silent
    outputs), per category, the general-ability panel and its retention against ``reference`` (the results of
    the model it should not have forgotten against, scored on the same suites)."""
    if not results or not results.get("overall"):
        return None
    overall = results["overall"]
    general = (results.get("general") or {}).get("score")
    ref_general = ((reference or {}).get("general") or {}).get("score")
    out = {"overall": overall.get("score"), "ci95": overall.get("ci95"), "n": overall.get("n"),
           "empty": overall.get("empty", 0), "degenerate": overall.get("degenerate", 0),
           "categories": {c: v.get("score") for c, v in (results.get("categories") or {}).items()},
           "general": general, "domain": (results.get("domain") or {}).get("score"),
           "general_retention": general / ref_general if general is not None and ref_general else None,
           "suites": [s.get("name") for s in results.get("suites") or []]}
    if with_kb and with_kb.get("overall"):
        out["with_kb"] = with_kb["overall"].get("score")
    return out


def version_record(version: str, *, source: str, model: str | Path | None, results: dict | None = None,
                   reference: dict | None = None, name: str | None = None, run: str | None = None,
                   with_kb: dict | None = None, **extra) -> dict:
    """One ledger record for ``model``: its weights counted, its compute, its scores in ``results`` (an eval's
    ``results.json`` body, or None when it has not been scored) and its knowledge density."""
    if source not in SOURCES:
        raise DomainlmError(f"version {version}: source '{source}' is not one of {', '.join(SOURCES)}")
    local = model is not None and (Path(model).is_dir() or Path(model).is_file())
    trust = trust_notes((results or {}).get("overall"))
    weights = None
    if local:
        try:
            weights = count_weights(model)
        except DomainlmError as exc:  # a version whose weights cannot be read is still a version: say why
            trust.append(f"weights not counted: {exc}")
    elif model is not None:
        trust.append("no local weights: parameters and compute unknown")
    compute = inference_compute(weights) if weights else None
    scores = scores_of(results, reference, with_kb=with_kb)
    overall = scores["overall"] if scores else None
    density = version_density(overall, (weights or {}).get("params"), (compute or {}).get("flops_per_token"),
                              (results or {}).get("density"))
    record = {"version": version, "source": source, "time": time.time(), "name": name, "run": run,
              "model": str(Path(model).resolve()) if local else (str(model) if model is not None else None),
              "weights": weights, "compute": compute, "scores": scores, "density": density, "trust": trust, **extra}
    record["weights_id"] = _weights_id(record["model"])
    # same weights and same scores: the same record (a rerun of the report adds nothing)
    record["fingerprint"] = sha256_text(dumps({"name": name, "weights_id": record["weights_id"], "scores": scores}))
    return record


def _weights_id(model: str | None) -> str | None:
    """Which weights a record describes: the weight files' paths, sizes and modification times (hashing the
    bytes of a large model on every report would cost minutes). Retraining into the same folder changes it."""
    path = Path(model) if model else None
    if path is None or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    return sha256_text(dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]))


# ---------------------------------------------------------------------------------------------------
# The ledger file
# ---------------------------------------------------------------------------------------------------
def read_ledger(path: str | Path) -> list[dict]:
    """Every record of a ledger in file order ([] when there is none); a bad line is one error naming the
    file, the line and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line_no, raw in numbered_jsonl(path):
        try:
            records.append(VersionRecord.model_validate(raw).model_dump())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise DomainlmError(f"{path}:{line_no}: not a version record: '{where}' {first['msg'].lower()}") from None
    return records


def append_versions(path: str | Path, records: list[dict]) -> list[dict]:
    """Append the records whose fingerprint the ledger does not hold yet; returns those appended. Each line is
    flushed and fsynced (an append-only log, like the flywheel's): a crash loses at most the line being written."""
    path = Path(path)
    known = {r.get("fingerprint") for r in read_ledger(path)}
    new = [r for r in records if r.get("fingerprint") not in known]
    for record in new:
        VersionRecord.model_validate(record)  # never write a line the reader would refuse
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            for record in new:
                handle.write(dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    return new


def latest(records: list[dict]) -> list[dict]:
    """One record per version, the last one written, in the order versions first appeared."""
    last: dict[str, dict] = {}
    for record in records:
        last[record["version"]] = record  # a dict keeps a key where it was first put
    return list(last.values())


def next_version(records: list[dict]) -> str:
    """``v0001``, ``v0002`` …: the line's own numbering (a registry numbers its versions itself)."""
    numbers = [int(m.group(1)) for r in records if (m := re.fullmatch(r"v(\d+)", r["version"]))]
    return f"v{max(numbers, default=0) + 1:04d}"


# ---------------------------------------------------------------------------------------------------
# The line's versions
# ---------------------------------------------------------------------------------------------------
def line_ledger(layout) -> Path:
    """A workspace's ledger, ``ARTIFACTS/versions.jsonl``: beside the stage folders, not in one, so a rebase
    (which moves the models and their eval aside) keeps the line's whole history in one file."""
    return layout.artifacts / LEDGER


def record_line_versions(ledger: str | Path, eval_results: dict, *, source: str = "line", base: str | None = None,
                         reference: str = "base") -> list[dict]:
    """Record every model the line's eval stage scored (``eval_results``: its ``results.json`` with
    ``variants``): one version per model, a variant that adds the knowledge base to a model (same model, a
    ``kb``) kept as that version's ``with_kb`` score. ``reference``: the variant general-ability retention is
    measured against. Returns the records appended (none when every model and score is already recorded)."""
    variants = eval_results.get("variants") or {}
    known = read_ledger(ledger)
    ref = variants.get(reference)
    plain = {name: r for name, r in variants.items() if not r.get("kb")}
    kb_of = {r.get("model"): r for r in variants.values() if r.get("kb")}
    records, numbered = [], list(known)
    for name, results in plain.items():
        record = version_record("pending", source=source, model=results.get("model"), results=results,
                                reference=ref if name != reference else None, name=name,
                                with_kb=kb_of.get(results.get("model")), base=base)
        if any(r.get("fingerprint") == record["fingerprint"] for r in known):
            continue
        # the same weights scored again (other suites, another limit) stay the same version: the new line
        # supersedes the old one; new weights are a new version
        same = [r for r in numbered if record["weights_id"] and r.get("weights_id") == record["weights_id"]
                and r.get("name") == name]
        record["version"] = same[-1]["version"] if same else next_version(numbered)
        numbered.append(record)
        records.append(record)
    return append_versions(ledger, records)


def workspace_versions(ws) -> list[dict]:
    """A workspace's versions, one record each, after recording the models its eval stage scored last if the
    ledger lacks them (a line built before the ledger existed; the report step records them otherwise)."""
    from domainlm.pipeline.rebase import active_snapshot  # rebase → evals; here only for the source's name

    ledger = line_ledger(ws.layout)
    results_file = ws.layout.eval / "results.json"
    results = read_json(results_file) if results_file.is_file() else {}
    if isinstance(results, dict) and results.get("variants"):
        record_line_versions(ledger, results, source="rebase" if active_snapshot(ws) else "line",
                             base=ws.config.train.base)
    return latest(read_ledger(ledger))


# ---------------------------------------------------------------------------------------------------
# A flywheel registry's versions
# ---------------------------------------------------------------------------------------------------
def registry_versions(registry: str | Path) -> list[dict]:
    """The registry's versions, one record each: the ledger's latest, and for a version ``registry.json``
    names that the ledger lacks (a registry from before the ledger), a record from its history entry."""
    registry = Path(registry)
    state_file = registry / "registry.json"
    if not state_file.is_file():
        raise DomainlmError(f"{registry}: not a model registry (no registry.json)")
    state = read_json(state_file)
    if not isinstance(state, dict) or not isinstance(state.get("history"), list):
        raise DomainlmError(f"{state_file}: no 'history' list")
    recorded = latest(read_ledger(registry / LEDGER))
    have = {r["version"] for r in recorded}
    out = list(recorded)
    for index, entry in enumerate(state["history"] + state.get("rolled_back", [])):
        version = entry.get("version") if isinstance(entry, dict) else None
        if not isinstance(version, str):
            raise DomainlmError(f"{state_file}: history entry {index + 1} has no 'version'")
        if version in have:
            continue
        have.add(version)
        folder = registry / "versions" / version
        score = entry.get("score")
        results = {"overall": {"score": score, "n": None}} if isinstance(score, (int, float)) else None
        record = version_record(version, source="registry", model=folder if folder.exists() else None,
                                results=results, run=entry.get("run"), name="flywheel")
        record["time"] = entry.get("time") or record["time"]
        record["trust"] = ["from registry.json: gate score only, item counts unknown"] if results else ["not scored"]
        out.append(record)
    # which version serves now: shown, not stored (a rollback or a promotion changes it)
    return [{**r, "serving": r["version"] == state.get("current")} for r in sorted(out, key=lambda r: r["version"])]


# ---------------------------------------------------------------------------------------------------
# Table and plot
# ---------------------------------------------------------------------------------------------------
def table_rows(records: list[dict]) -> list[dict]:
    """One row per version: what ``domainlm versions`` prints and the report shows (``*``: the version a
    registry serves now)."""
    rows = []
    for r in records:
        w, c, s, d = r.get("weights") or {}, r.get("compute") or {}, r.get("scores") or {}, r.get("density") or {}
        rows.append({"version": r["version"] + (" *" if r.get("serving") else ""), "name": r.get("name") or "", "source": r["source"],
                     "run": r.get("run") or "", "params": w.get("params"), "GFLOPs/token": c.get("gflops_per_token"),
                     "bits/param": w.get("bits_per_param"), "score": s.get("overall"), "items": s.get("n"),
                     "general retention": s.get("general_retention"), "score/B params": d.get("score_per_bparam"),
                     "score/GFLOP·token": d.get("score_per_gflop_token"), "trust": "; ".join(r.get("trust") or [])})
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows as aligned plain text (numbers to 4 significant digits), for a terminal or a log."""
    if not rows:
        return "(no versions recorded)"

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    columns = list(rows[0])
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def plot_versions(records: list[dict], out: str | Path) -> Path | None:
    """``out`` (PNG): knowledge density (score per billion parameters) across versions, and score against
    compute per token. None when no version has both a score and counted weights."""
    points = [r for r in records if (r.get("density") or {}).get("score_per_bparam") is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    labels = [f"{r['version']}\n{r.get('name') or ''}".strip() for r in points]
    flagged = [bool(r.get("trust")) for r in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(range(len(points)), [r["density"]["score_per_bparam"] for r in points], color="#2b6cb0", zorder=1)
    for i, r in enumerate(points):
        left.scatter([i], [r["density"]["score_per_bparam"]], color="#c53030" if flagged[i] else "#2b6cb0", zorder=2)
        right.scatter([r["compute"]["gflops_per_token"]], [r["scores"]["overall"]],
                      color="#c53030" if flagged[i] else "#2b6cb0")
        right.annotate(r["version"], (r["compute"]["gflops_per_token"], r["scores"]["overall"]),
                       textcoords="offset points", xytext=(4, 4), fontsize="small")
    spread = [r["compute"]["gflops_per_token"] for r in points]
    if min(spread) > 0 and max(spread) / min(spread) > 100:  # a 1.5B base beside a distilled 0.1B student
        right.set_xscale("log")
    left.set_xticks(range(len(points)), labels, fontsize="small")
    left.set_ylabel("score per billion parameters")
    left.set_title("Knowledge density across versions")
    right.set_xlabel("GFLOPs per token (2 x non-embedding params)")
    right.set_ylabel("score")
    right.set_title("Score vs inference compute")
    fig.text(0.01, 0.01, "red: a score resting on too few items or mostly empty / degenerate outputs",
             fontsize="small", color="#555")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, out)  # atomic, as every artifact
    return out
