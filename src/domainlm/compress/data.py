"""Training sequences for distillation and the pruning recovery: the train stage's readers and packing.

Each file is read as task/chat records (loss on the assistant turns) or, when it holds documents, as
plain domain text (loss on every token), so a user passes ``tasks/train`` and ``clean.jsonl`` alike.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.errors import DomainlmError


def training_examples(paths: list[str | Path], tokenizer, seq_len: int) -> tuple[list, list[dict]]:
    """(packed examples, rejected records) from task/chat files and document files."""
    from domainlm.io import expand_inputs
    from domainlm.train import load_records, pack_documents, pack_examples, tokenize_record

    # expand_inputs skips hidden names *inside* a folder only, so data under ~/.cache is still found
    files = [p for p in expand_inputs(paths) if p.suffix == ".jsonl"]
    if not files:
        raise DomainlmError(f"{', '.join(map(str, paths))}: no .jsonl files found")
    examples, rejected = [], []
    for path in files:
        loaded = load_records([path], "sft")
        if all("text" in r for r in loaded.records):  # documents: domain text, packed as cpt packs it
            examples += pack_documents((r["text"] for r in loaded.records), tokenizer, seq_len)
            rejected += loaded.rejected
            continue
        pairs = []
        for record in loaded.records:
            try:
                pairs.append(tokenize_record(tokenizer, record))
            except ValueError as exc:
                rejected.append({"where": f"{path} record {record.get('id')}", "reason": str(exc)})
        examples += pack_examples(pairs, seq_len)[0]
        rejected += loaded.rejected
    if not examples:
        raise DomainlmError(f"{', '.join(map(str, paths))}: no training sequence could be built")
    return examples, rejected


def batches(examples: list, batch_size: int, steps: int, seed: int):
    """``steps`` batches drawn by a seeded shuffle, epoch after epoch (same order for the same seed)."""
    import random

    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        yield [examples[i] for i in order[:batch_size]]
        del order[:batch_size]


def heldout_loss(model, examples: list, pad_id: int, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy on labelled tokens: how well a model predicts held-out domain text."""
    import torch

    from domainlm.train import collate

    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size], pad_id)
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits.float()
            targets = batch["labels"][:, 1:]
            mask = targets != -100
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), targets.clamp(min=0).reshape(-1), reduction="none"
            ).view_as(targets)
            total += float(losses[mask].sum())
            count += int(mask.sum())
    return total / max(count, 1)
