"""The compression configuration: one pydantic model shared by ``domainlm compress`` and the Python API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

TARGETS = ("merge", "int8", "int4", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "distill", "prune")


class CompressConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(pattern="^(" + "|".join(TARGETS) + ")$", description=" | ".join(TARGETS))
    seed: int = 0
    # quality gate
    gate: bool = Field(True, description="Score source and result on the gate suites; refuse below min_retention.")
    suites: list[str] = Field(default_factory=list, description="Gate suites; empty: the sample domain's tasks/eval.")
    min_retention: float = Field(0.9, ge=0, le=1, description="Result score / source score needed to promote.")
    gate_limit: int = Field(0, ge=0, description="Gate on at most this many items per task (seeded sample); 0 = all.")
    parity: bool = Field(True, description="Template parity check (token ids and greedy outputs).")
    batch_size: int = Field(8, ge=1)
    # int4
    group_size: int = Field(32, ge=8, description="int4: weights sharing one scale (per output row).")
    # distill and prune: the data they train on (task JSONL for sft-style chats, Document JSONL for text)
    data: list[str] = Field(default_factory=list, description="Training files/folders; empty: the sample domain's tasks/train + docs.")
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
