"""The compression stage: ``compress(source, out, config)``, the function behind ``domainlm compress``.

Layout of ``out``::

    model/ | model-<quant>.gguf   the promoted artifact (only when parity and the gate passed)
    rejected/...                  the artifact kept aside when the gate refused it (never promoted)
    parity.json  gate.json  compress.json  manifest.json

The artifact is built in ``out/.staging`` and moved into place only after the checks; the source is only
ever read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from domainlm.compress.config import CompressConfig
from domainlm.errors import DomainlmError
from domainlm.io import write_json

GATE_REFUSED_EXIT = 3
# Targets whose result should compute what the source computes; greedy differences fail their parity check.
LOSSLESS = ("merge", "gguf-f16")


def artifact_name(target: str) -> str:
    return f"model-{target.removeprefix('gguf-')}.gguf" if target.startswith("gguf-") else "model"


def default_data() -> list[str]:
    """The sample domain's training tasks and documents (what distill/prune train on by default)."""
    from domainlm.compress.gate import default_suite

    root = default_suite().parent.parent
    return [str(root / "tasks" / "train"), str(root / "truth" / "documents.jsonl")]


def build(target: str, source_dir: Path, staging: Path, cfg: CompressConfig) -> tuple[Path, dict]:
    """Make the artifact for ``target`` inside ``staging``; returns its path and what was measured on the way."""
    artifact = staging / artifact_name(target)
    if target == "merge":
        from domainlm.compress.merge import merge_adapter

        return merge_adapter(source_dir, artifact), {}
    if target in ("int8", "int4"):
        from domainlm.compress.quantize import quantize

        return quantize(source_dir, artifact, bits=int(target[3:]), group_size=cfg.group_size), {}
    if target.startswith("gguf-"):
        from domainlm.compress.gguf_export import export_gguf

        return export_gguf(source_dir, artifact, target), {}
    from transformers import AutoTokenizer

    from domainlm.compress.data import training_examples

    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    examples, rejected = training_examples(cfg.data or default_data(), tokenizer, cfg.seq_len)
    info: dict = {"sequences": len(examples), "rejected_records": len(rejected)}
    if target == "distill":
        from domainlm.compress.distill import distill
        from domainlm.compress.merge import hf_folder

        teacher = hf_folder(cfg.teacher, staging / "teacher") if cfg.teacher else None
        info.update(distill(source_dir, teacher, artifact, examples, cfg))
        return artifact, info
    from domainlm.compress.prune import prune_and_recover

    info.update(prune_and_recover(source_dir, artifact, examples, cfg))
    return artifact, info


def _promote(built: Path, destination: Path) -> Path:
    if destination.is_dir():
        shutil.rmtree(destination)
    elif destination.exists():
        destination.unlink()
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(destination))
    return destination


def compress(source: str, out: str | Path, cfg: CompressConfig, *, force: bool = False, console=None) -> dict:
    """Compress ``source`` (a model spec) to ``cfg.target`` in ``out``; returns the stage's metrics.

    Raises DomainlmError (exit code 3) when the gate refuses the result; the artifact then sits in
    ``out/rejected/`` and ``gate.json`` says why."""
    from domainlm.compress.merge import hf_folder
    from domainlm.workspace import stage_run

    out = Path(out)
    inputs = [p for p in [source, cfg.teacher, *cfg.suites, *cfg.data] if p and Path(p).exists()]
    record = {"source": source, **cfg.model_dump()}
    with stage_run(f"compress-{cfg.target}", out, inputs=inputs, config=record, seed=cfg.seed, force=force) as run:
        if run.skipped:
            return dict(run.previous.metrics)
        staging = out / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            source_dir = hf_folder(source, staging)
            _say(console, f"building {cfg.target} from {source_dir}")
            artifact, info = build(cfg.target, source_dir, staging, cfg)
            write_json(run.output("compress.json"), {"source": source, "target": cfg.target, **info})
            report = {"source": source, "target": cfg.target}
            if cfg.parity:
                from domainlm.compress.parity import check_parity

                _say(console, "template parity check")
                parity = check_parity(source_dir, artifact, lossless=cfg.target in LOSSLESS)
                write_json(run.output("parity.json"), parity)
                if not parity["passed"]:
                    kept = _promote(artifact, out / "rejected" / artifact.name)
                    raise DomainlmError(f"template parity failed: {parity['failure']} (artifact kept aside in {kept})",
                                        exit_code=GATE_REFUSED_EXIT)
                report["parity"] = {k: parity[k] for k in ("tokens_identical", "greedy_agree", "prompts")}
            if cfg.gate:
                from domainlm.compress.gate import run_gate

                _say(console, "quality gate: scoring source and result")
                gate = run_gate(source_dir, artifact, cfg.suites, min_retention=cfg.min_retention,
                                batch_size=cfg.batch_size, seed=cfg.seed, limit=cfg.gate_limit)
                gate["source"]["spec"], gate["target"] = source, cfg.target
                if not gate["passed"]:
                    kept = _promote(artifact, out / "rejected" / artifact.name)
                    gate["rejected_artifact"] = str(kept)
                    write_json(run.output("gate.json"), gate)
                    raise DomainlmError(
                        f"quality gate refused {cfg.target}: {gate['reason']} "
                        f"(source {gate['source']['score']:.4f}, result {gate['result']['score']:.4f}); "
                        f"artifact kept aside in {kept}, see {out / 'gate.json'}", exit_code=GATE_REFUSED_EXIT)
                write_json(run.output("gate.json"), gate)
                # The sentence says "within noise" when the interval holds 1, so a ratio above 1 never reads as a gain.
                _say(console, f"quality gate: {gate['message']}")
                report.update(retention=gate["retention"], retention_ci95=gate["retention_ci95"],
                              retention_note=gate["retention_note"], source_score=gate["source"]["score"],
                              result_score=gate["result"]["score"], size_bytes=gate["result"]["size_bytes"],
                              tokens_per_s=gate["result"]["tokens_per_s"])
            final = _promote(artifact, out / artifact.name)
            shutil.rmtree(out / "rejected", ignore_errors=True)  # an older refused artifact is no longer current
            if final.is_dir():
                for path in sorted(final.rglob("*")):
                    if path.is_file():
                        run.output(str(path.relative_to(out)))
            else:
                run.output(final.name)
            report["artifact"] = str(final)
            run.metrics.update(report)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dict(run.metrics)


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text)
