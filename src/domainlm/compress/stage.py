"""The compression stage: ``compress(source, out, config)``, the function behind ``domainlm compress``.

Layout of ``out``::

    model/ | model-<quant>.gguf   the promoted artifact (only when parity and the gate passed)
    rejected/...                  the artifact kept aside when the gate refused it (never promoted)
    parity.json  gate.json  compress.json  manifest.json

The artifact is built in ``out/.staging`` and moved into place only after the checks; the source is only
ever read. A result that fails a check is no failure of the stage's machinery but a verdict, so it is its
own exception, :class:`GateRefused`, which callers catch by type.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from domainlm.compress.config import CompressConfig
from domainlm.compress.data import training_examples
from domainlm.compress.distill import distill
from domainlm.compress.gate import run_gate
from domainlm.compress.gguf_export import export_gguf, runtime_missing
from domainlm.compress.merge import hf_folder, merge_adapter
from domainlm.compress.parity import check_parity
from domainlm.compress.prune import prune_and_recover
from domainlm.compress.quantize import quantize
from domainlm.errors import DomainlmError
from domainlm.io import write_json
from domainlm.manifest import StageResult, stage_run

# Targets whose result should compute what the source computes; greedy differences fail their parity check.
LOSSLESS = ("merge", "gguf-f16")
DISTILL_TARGETS = ("distill", "prune")


class GateRefused(DomainlmError):
    """The compressed artifact failed template parity or the quality gate: it was kept aside, not promoted.

    ``check`` is "parity" or "gate" (which one refused); ``gate`` is the path of ``gate.json`` (absent when
    parity refused first) and ``parity`` that of ``parity.json``; ``retention`` the gate's result/source
    score ratio (None when parity refused, or the source scored 0); ``rejected`` where the artifact was
    kept. The CLI exits with 3, so scripts can tell a refusal from an error."""

    EXIT_CODE = 3

    def __init__(self, message: str, *, check: str, out: Path, rejected: Path, retention: float | None = None):
        super().__init__(message, exit_code=self.EXIT_CODE)
        self.check, self.rejected, self.retention = check, rejected, retention
        self.gate, self.parity = out / "gate.json", out / "parity.json"


def artifact_name(target: str) -> str:
    return f"model-{target.removeprefix('gguf-')}.gguf" if target.startswith("gguf-") else "model"


def build(target: str, source_dir: Path, staging: Path, cfg: CompressConfig) -> tuple[Path, dict]:
    """Make the artifact for ``target`` inside ``staging``; returns its path and what was measured on the way."""
    artifact = staging / artifact_name(target)
    if target == "merge":
        return merge_adapter(source_dir, artifact), {}
    if target in ("int8", "int4"):
        return quantize(source_dir, artifact, bits=int(target[3:]), group_size=cfg.group_size), {}
    if target.startswith("gguf-"):
        return export_gguf(source_dir, artifact, target), {}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    examples, rejected = training_examples(cfg.data, tokenizer, cfg.seq_len)
    info: dict = {"sequences": len(examples), "rejected_records": len(rejected)}
    if target == "distill":
        teacher = hf_folder(cfg.teacher, staging / "teacher") if cfg.teacher else None
        info.update(distill(source_dir, teacher, artifact, examples, cfg))
        return artifact, info
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


def compress(source: str, out: str | Path, cfg: CompressConfig, *, force: bool = False, console=None,
             speed_prompts: list[list[dict]] | None = None) -> StageResult:
    """Compress ``source`` (a model spec) to ``cfg.target`` in ``out``.

    Returns the stage's result: ``outputs["artifact"]`` (the promoted model folder or .gguf file),
    ``outputs["gate"]`` (gate.json, when the gate ran), ``outputs["parity"]`` (parity.json, when parity ran);
    ``metrics`` as recorded in the manifest (``artifact``, and with the gate ``retention``,
    ``retention_ci95``, ``source_score``, ``result_score``, ``size_bytes``, ``tokens_per_s`` …).
    ``speed_prompts`` are the conversations the gate times decoding on (none: tokens/s is not measured).
    A GGUF target without llama-cpp-python installed is exported by the converter alone: parity and the gate
    are then not run, and ``parity.json``, ``gate.json`` and ``metrics`` say so (``ran`` false, ``reason``).

    Raises :class:`GateRefused` when parity or the gate refuses the result; the artifact then sits in
    ``out/rejected/`` and ``gate.json`` (or ``parity.json``) says why."""
    out = Path(out)
    if cfg.gate and not cfg.suites:
        raise DomainlmError("the quality gate needs suites to score on: pass --gate SUITE (or --no-gate)")
    if cfg.target in DISTILL_TARGETS and not cfg.data:
        raise DomainlmError(f"{cfg.target} trains the result: pass --data (task or document JSONL files or folders)")
    inputs = [p for p in [source, cfg.teacher, *cfg.suites, *cfg.data] if p and Path(p).exists()]
    record = {"source": source, **cfg.model_dump()}
    with stage_run(f"compress-{cfg.target}", out, inputs=inputs, config=record, seed=cfg.seed, force=force) as run:
        if run.skipped:
            return run.result()
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
                _say(console, "template parity check")
                parity = check_parity(source_dir, artifact, lossless=cfg.target in LOSSLESS)
                write_json(run.output("parity.json", key="parity"), parity)
                if not parity["ran"]:  # a GGUF made by the converter alone: unchecked, and said so
                    _say(console, f"template parity: not run ({parity['reason']})")
                    report["parity"] = {"ran": False, "reason": parity["reason"]}
                elif not parity["passed"]:
                    kept = _promote(artifact, out / "rejected" / artifact.name)
                    raise GateRefused(f"template parity failed: {parity['failure']} (artifact kept aside in {kept})",
                                      check="parity", out=out, rejected=kept)
                else:
                    report["parity"] = {k: parity[k] for k in ("ran", "tokens_identical", "greedy_agree", "prompts")}
            # The gate scores the result by running it: a GGUF file cannot be run without llama.cpp's runtime.
            # Then the gate is not run either, recorded in gate.json (so the line's report shows it) and said.
            gate_missing = runtime_missing("the quality gate on a GGUF file") if artifact.suffix == ".gguf" else None
            if cfg.gate and gate_missing:
                _say(console, f"quality gate: not run ({gate_missing})")
                write_json(run.output("gate.json", key="gate"),
                           {"ran": False, "passed": None, "reason": gate_missing, "target": cfg.target,
                            "warnings": [f"quality gate not run: {gate_missing}"]})
                report["gate"] = {"ran": False, "reason": gate_missing}
            elif cfg.gate:
                _say(console, "quality gate: scoring source and result")
                rule = cfg.gate_rule()
                gate = run_gate(source_dir, artifact, cfg.suites, batch_size=cfg.batch_size, seed=cfg.seed,
                                limit=cfg.gate_limit, speed_prompts=speed_prompts, **rule)
                gate["source"]["spec"], gate["target"] = source, cfg.target
                gate_path = run.output("gate.json", key="gate")
                for warning in gate["warnings"]:  # categories too small to trust, or where retention is undefined
                    _say(console, f"quality gate: {warning}")
                if not gate["passed"]:
                    kept = _promote(artifact, out / "rejected" / artifact.name)
                    gate["rejected_artifact"] = str(kept)
                    write_json(gate_path, gate)
                    raise GateRefused(
                        f"quality gate refused {cfg.target}: {gate['reason']} "
                        f"(source {gate['source']['score']:.4f}, result {gate['result']['score']:.4f}); "
                        f"artifact kept aside in {kept}, see {gate_path}",
                        check="gate", out=out, rejected=kept, retention=gate["retention"])
                write_json(gate_path, gate)
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
            run.name_output("artifact", final)
            report["artifact"] = str(final)
            run.metrics.update(report)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return run.result()


def _say(console, text: str) -> None:
    if console is not None:  # plain text: "[gguf]" in an install hint is not rich markup
        console.print(text, markup=False, highlight=False)
