"""The compression configuration: one pydantic model shared by ``domainlm compress``, the Python API and the
``compress:`` section of domainlm.yaml (which names several targets)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from domainlm.config import validate
from domainlm.evals import GateSettings

TARGETS = ("merge", "int8", "int4", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "distill", "prune")


class CompressConfig(GateSettings):
    target: str = Field(pattern="^(" + "|".join(TARGETS) + ")$", description=" | ".join(TARGETS))
    seed: int = 0
    # quality gate
    gate: bool = Field(True, description="Score source and result on the gate suites; refuse below min_retention.")
    suites: list[str] = Field(default_factory=list, description="Gate suites (needed when gate is on; `domainlm compress` "
                              "defaults to the sample domain's tasks/eval).")
    min_retention: float = Field(0.9, ge=0, le=1, description="Result score / source score needed to promote, overall "
                                 "(point estimate) and on every gate_by group (the upper end of its interval).")
    gate_limit: int = Field(0, ge=0, description="Gate on at most this many items per task (seeded sample); 0 = all.")
    parity: bool = Field(True, description="Template parity check (token ids and greedy outputs).")
    batch_size: int = Field(8, ge=1)
    # int4
    group_size: int = Field(32, ge=8, description="int4: weights sharing one scale (per output row).")
    # distill and prune: the data they train on (task JSONL for sft-style chats, Document JSONL for text)
    data: list[str] = Field(default_factory=list, description="Training files/folders (needed by distill and prune; "
                            "`domainlm compress` defaults to the sample domain's tasks/train + docs).")
    teacher: str | None = Field(None, description="distill: teacher model spec (default: the source model).")
    student_layers: int = Field(0, ge=0, description="distill: student depth; 0 = half the teacher's layers.")
    student_mlp: float = Field(1.0, gt=0, le=1, description="distill: share of the teacher's MLP width kept.")
    kd_loss: str = Field("forward_kl", pattern="^(forward_kl|gkd)$", description="forward_kl | gkd (generalised JSD)")
    kd_weight: float = Field(0.5, ge=0, le=1, description="distill: weight of the teacher term; the rest is plain CE.")
    kd_temperature: float = Field(1.0, gt=0)
    gkd_beta: float = Field(0.5, gt=0, lt=1, description="gkd: interpolation of the JSD mixture.")
    steps: int = Field(200, ge=0, description="distill/prune: optimizer steps of (re)training.")
    lr: float = Field(1e-3, gt=0)
    train_batch_size: int = Field(8, ge=1)
    seq_len: int = Field(512, ge=16)
    prune_layers: int = Field(1, ge=0, description="prune: decoder layers dropped (least important first).")
    prune_mlp: float = Field(1.0, gt=0, le=1, description="prune: share of MLP neurons kept (most important).")

    def gate_rule(self) -> dict:
        """The per-group comparison's settings, as :func:`domainlm.evals.compare_per_category` takes them."""
        return self.group_rule(self.min_retention)


class CompressSection(CompressConfig):
    """The ``compress:`` section: every CompressConfig setting, for each of several targets."""

    set_by_line: ClassVar[dict[str, str]] = {
        "target": "compress.targets", "seed": "the top-level seed", "suites": "tasks.eval and synth's eval items",
        "data": "the sft data", "batch_size": "eval.batch_size"}

    target: str | None = None  # one per entry of ``targets``, set by the line
    targets: list[str] = Field(default_factory=lambda: ["int8"], description="Compression targets ([] for none).")
    gate_limit: int | None = Field(None, ge=0, description="Items per task for the quality gate (default: eval.limit).")

    def stage_config(self, target: str, *, seed: int, suites: list[str], data: list[str], batch_size: int,
                     eval_limit: int) -> CompressConfig:
        settings = self.model_dump(include=set(CompressConfig.model_fields))
        gate_limit = self.gate_limit if self.gate_limit is not None else eval_limit
        return validate(CompressConfig, {**settings, "target": target, "seed": seed, "suites": suites,
                                              "data": data, "batch_size": batch_size, "gate_limit": gate_limit}, "compress")
