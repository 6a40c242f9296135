"""The training stage: ``train(base, data, out, config) -> StageResult``, the function behind ``domainlm train``.

It reads and checks the data, resolves the base model (for ``tiny``: builds one whose tokenizer learned this
data), trains (cpt/sft with :mod:`domainlm.train.loop`, dpo/kto with TRL in :mod:`domainlm.train.prefs`) and
records the run in ``manifest.json``. Its named outputs are ``model`` (the trained model folder, ``out``) and
``base`` (the model folder training started from, which for ``tiny`` only this stage knows).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import write_jsonl
from domainlm.kb import passage_retriever
from domainlm.manifest import StageResult, stage_run
from domainlm.models import builtin_corpus, parse_spec, resolve_hf_dir, tiny_model_dir
from domainlm.sandbox import heldout_tokens_bytes, predicted_vs_actual, resolve_lr
from domainlm.train.config import TrainConfig
from domainlm.train.data import (
    Loaded,
    load_records,
    pack_documents,
    pack_examples,
    record_texts,
    split_holdout,
    tokenize_record,
    with_passages,
)
from domainlm.train.loop import result_metrics, total_steps, train_loop, write_report
from domainlm.train.model_setup import load_for_training, save_trained
from domainlm.train.prefs import train_preferences
from domainlm.train.progress import check_trackers


def is_main_process() -> bool:
    """Rank 0 of a multi-process run (or the only process): the one that writes files."""
    return int(os.environ.get("RANK", "0")) == 0


def corpus_texts(loaded: Loaded, stage: str) -> list[str]:
    """Texts a fresh ``tiny`` tokenizer learns from when training starts from ``tiny``."""
    return [text for record in loaded.records for text in record_texts(record)]


def resolve_base(base: str, loaded: Loaded, stage: str) -> Path:
    if parse_spec(base).kind == "tiny":
        # `tiny` learns its tokenizer from the data it is about to be trained on (plus a general text).
        return tiny_model_dir(corpus_texts(loaded, stage) + builtin_corpus())
    return resolve_hf_dir(base)


def build_sequences(loaded: Loaded, tokenizer, cfg: TrainConfig):
    """Packed training sequences and the count of conversations cut to ``seq_len``."""
    if cfg.stage == "cpt":
        examples = pack_documents((r["text"] for r in loaded.records), tokenizer, cfg.seq_len)
        return examples, 0
    pairs = []
    for record in loaded.records:
        try:
            pairs.append(tokenize_record(tokenizer, record))
        except ValueError as exc:
            loaded.rejected.append({"where": f"record {record.get('id')}", "reason": str(exc)})
    return pack_examples(pairs, cfg.seq_len)


def retrieval_copies(loaded: Loaded, cfg: TrainConfig) -> list[dict]:
    """The retrieval-augmented sft records (see :func:`domainlm.train.data.with_passages`)."""
    return with_passages(loaded.records, passage_retriever(cfg.kb, cfg.kb_k))


def replay_sequences(cfg: TrainConfig, tokenizer, n_domain: int) -> list:
    """General-text sequences mixed into cpt so the model keeps its general ability."""
    if not cfg.replay or cfg.replay_ratio <= 0:
        return []
    general = load_records(cfg.replay, "cpt")
    blocks = pack_documents((r["text"] for r in general.records), tokenizer, cfg.seq_len)
    want = int(round(cfg.replay_ratio * n_domain))
    rng = random.Random(cfg.seed + 7)
    return [blocks[rng.randrange(len(blocks))] for _ in range(want)] if blocks else []


def train(base: str, data: list[str | Path], out: str | Path, cfg: TrainConfig, *, force: bool = False,
          resume: bool = True, stop_after: int | None = None, console=None) -> StageResult:
    """Train ``base`` on ``data`` with ``cfg``; the result (a Hugging Face model folder with the base's
    chat template, ``report.md``, ``loss.png``, ``train_log.jsonl``, ``manifest.json``) goes to ``out``.

    Returns the stage's result: ``outputs["model"]`` (``out``), ``outputs["base"]`` (the model folder
    training started from) and the metrics. Unchanged inputs and config skip (``force`` re-runs from
    scratch). A run stopped by ``stop_after`` before its last step has ``metrics["interrupted"]``, no
    outputs and no manifest; calling again resumes it from its checkpoint."""
    out = Path(out)
    # `lr: auto` becomes the sandbox's number first, so the manifest (and the skip check) holds that number
    cfg, recommendation = resolve_lr(cfg, cfg.sandbox)
    check_trackers(cfg.report_to)  # before the data is read or a tokenizer trained
    loaded = load_records(data, cfg.stage)
    inputs = [str(p) for p in loaded.files] + list(cfg.replay)
    if cfg.kb and cfg.stage == "sft":
        inputs.append(cfg.kb)
    # matched on what is trained: adding or changing a tracker neither re-trains nor re-runs a finished stage
    record = {"base": base, **cfg.identity()}
    # Every process of a multi-process run does the work; the files (and the manifest) are rank 0's to write.
    with stage_run(f"train-{cfg.stage}", out, inputs=inputs, config=record, seed=cfg.seed, force=force,
                   write=is_main_process()) as run:
        if run.skipped:
            return run.result()
        if force and is_main_process():
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        if cfg.kb and cfg.stage == "sft":
            loaded.records += retrieval_copies(loaded, cfg)
        base_dir = resolve_base(base, loaded, cfg.stage)
        if cfg.stage in ("dpo", "kto"):
            metrics = train_preferences(base_dir, loaded, out, cfg, console=console, base_spec=base)
        else:
            metrics = _train_lm(base_dir, loaded, out, cfg, resume=resume, stop_after=stop_after, console=console,
                                base_spec=base, recommendation=recommendation)
        metrics.update(records=len(loaded.records), rejected=len(loaded.rejected), base_dir=str(base_dir))
        written = metrics.pop("outputs", [])
        if is_main_process():
            if loaded.rejected:
                write_jsonl(run.output("rejected.jsonl"), loaded.rejected)
            for name in written:
                run.output(name)
        if stop_after is not None and metrics.get("steps", 0) < metrics.get("total_steps", 0):
            # Stopped before its last step: not a finished stage, so no manifest; the next call resumes.
            metrics["interrupted"] = True
            run.discard()
        else:
            run.name_output("model", ".")  # the stage folder is the model folder
            run.name_output("base", base_dir.resolve())  # absolute: a relative path would read as inside `out`
        run.metrics.update(metrics)
    return run.result()


def _train_lm(base_dir: Path, loaded: Loaded, out: Path, cfg: TrainConfig, *, resume: bool, stop_after, console,
              base_spec: str | None = None, recommendation=None) -> dict:
    model, tokenizer = load_for_training(base_dir, cfg)
    sequences, truncated = build_sequences(loaded, tokenizer, cfg)
    if not sequences:
        why = f" ({truncated} conversations cut at --seq-len {cfg.seq_len} lost their answers)" if truncated else ""
        raise DomainlmError(f"{loaded.files[0]}: no training sequence could be built from the data{why}")
    train_seqs, held_out = split_holdout(sequences, cfg.eval_fraction, cfg.eval_max, cfg.seed)
    train_seqs = train_seqs + replay_sequences(cfg, tokenizer, len(train_seqs))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    result = train_loop(model, tokenizer, train_seqs, held_out, cfg, out, resume=resume,
                        stop_after=stop_after, console=console)
    metrics = result_metrics(result)
    metrics.update(sequences=len(train_seqs), held_out=len(held_out), truncated=truncated,
                   total_steps=total_steps(cfg, len(train_seqs), world), world_size=world)
    # Passes over the data actually made (min_steps may have raised it above the configured epochs).
    metrics["epochs_run"] = round(metrics["total_steps"] * cfg.batch_size * world / max(len(train_seqs), 1), 2)
    sandbox = {}
    if recommendation is not None:
        # the sandbox predicts a held-out loss in nats per byte: put this run's held-out loss in the same unit
        tokens, n_bytes = heldout_tokens_bytes(held_out, tokenizer)
        sandbox = predicted_vs_actual(recommendation, cfg.stage, result.eval_loss_end, tokens, n_bytes)
        metrics.update(sandbox)
    if result.steps < metrics["total_steps"]:
        return metrics
    outputs = []
    if is_main_process():
        outputs += save_trained(_unwrap(model), tokenizer, out, cfg, base_dir, base_spec)
        outputs += write_report(out, result, cfg, {"base": base_dir, "sequences": len(train_seqs), **sandbox})
    metrics["outputs"] = outputs
    return metrics


def _unwrap(model):
    return getattr(model, "_orig_mod", model)
