"""The training configuration: one pydantic model, shared by ``domainlm train``, the Python API, plans and the
``train:`` section of domainlm.yaml (which adds the base model, the stages and per-stage overrides)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from domainlm.config import Section, validate


def learning_rate(value):
    """A positive number or 'auto' (one error line, not pydantic's one per branch of the union)."""
    if value == "auto":
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive number or 'auto', got {value!r}") from None
    if not number > 0:
        raise ValueError(f"expected a positive number or 'auto', got {value!r}")
    return number


# TrainConfig settings that change only where a run reports, not the model it trains.
REPORTING = ("progress_every", "report_to")


class TrainConfig(Section):
    stage: str = Field("sft", pattern="^(cpt|sft|dpo|kto)$", description="cpt | sft | dpo | kto")
    method: str = Field("full", pattern="^(full|lora|qlora)$", description="full | lora | qlora")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(0, ge=0, description="Optimizer steps; 0 means from epochs.")
    min_steps: int = Field(0, ge=0, description="At least this many optimizer steps when epochs give fewer (a small "
                           "corpus is passed over more often, up to 20 epochs); ignored when max_steps > 0.")
    lr: float | Literal["auto"] = Field(
        5e-4, description="Peak learning rate, or 'auto': the one `domainlm sandbox fit` recommends (see sandbox).")
    sandbox: str | None = Field(
        None, description="lr auto: the sandbox fit folder or its recommendation.json (the line's default: "
        "ARTIFACTS/sandbox/fit).")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine schedule ends at lr * min_lr_ratio.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping; 0 turns it off.")
    batch_size: int = Field(8, ge=1, description="Sequences per optimizer step on each process.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step (batch_size is split).")
    seq_len: int = Field(512, ge=16, description="Tokens per packed training sequence.")
    seed: int = 0
    # data
    replay: list[str] = Field(default_factory=list, description="cpt: general-text Document JSONL files to mix in.")
    replay_ratio: float = Field(0.0, ge=0, le=1, description="cpt: replay sequences per domain sequence.")
    kb: str | None = Field(
        None, description="sft: a knowledge base folder; every item whose prompt has a context slot is also trained "
        "with the passages this KB retrieves for its question, rendered as `domainlm eval --kb` renders them.")
    kb_k: int = Field(3, ge=1, description="sft: passages per retrieval-augmented item (as eval's --kb).")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of sequences held out for eval loss.")
    eval_max: int = Field(64, ge=0, description="At most this many held-out sequences.")
    # methods
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: str = Field("all-linear", description="'all-linear' or comma-separated module names.")
    # speed
    dtype: str = Field("auto", pattern="^(auto|float32|bfloat16|float16)$", description="auto: bf16 on GPU, fp32 on CPU")
    grad_checkpointing: bool = False
    chunked_loss: bool = Field(True, description="Cross-entropy over the vocabulary in chunks (no full logits).")
    compile: bool = Field(False, description="torch.compile the model (GPU).")
    # preference stages
    beta: float = Field(0.1, gt=0, description="dpo/kto: strength of the pull towards the reference model.")
    # bookkeeping
    log_every: int = Field(1, ge=1, description="Record step, loss, lr and tokens/s (train_log.jsonl, the trackers) "
                           "every N steps.")
    progress_every: int = Field(10, ge=1, description="When stderr is not a terminal (CI, nohup, a pipe), a plain "
                                "progress line every N steps, and at the first and last; on a terminal, a bar.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="Trackers that also get the run's metrics and config: tensorboard "
        "(OUT/runs/), wandb, mlflow (OUT/mlruns/ unless MLFLOW_TRACKING_URI is set); a list or a comma string.")
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps; 0 = only at the end.")
    keep_checkpoints: int = Field(2, ge=1)

    @field_validator("lr", mode="before")
    @classmethod
    def _lr(cls, value):
        return learning_rate(value)

    @field_validator("report_to", mode="before")
    @classmethod
    def _split_report_to(cls, value):
        # `--report-to tensorboard,wandb` and `train.report_to=wandb` arrive as one string; "none" is none
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            value = [v for v in dict.fromkeys(value) if v != "none"]
        return value

    def identity(self) -> dict:
        """The settings that decide what is trained: the config a manifest or a checkpoint is matched on.
        Where a run reports to is left out, so adding a tracker neither re-trains nor refuses a checkpoint."""
        return self.model_dump(exclude=set(REPORTING))


class StageOverrides(Section):
    """Settings one training stage of the line uses instead of the ``train:`` section's."""

    epochs: float | None = Field(None, gt=0, description="Overrides train.epochs for this stage.")
    max_steps: int | None = Field(None, ge=0, description="Overrides train.max_steps for this stage.")
    lr: float | Literal["auto"] | None = Field(None, description="Overrides train.lr for this stage.")

    @field_validator("lr", mode="before")
    @classmethod
    def _lr(cls, value):
        return None if value is None else learning_rate(value)


class TrainSection(TrainConfig):
    """The ``train:`` section: every TrainConfig setting, plus the base model, the stages and their overrides."""

    set_by_line: ClassVar[dict[str, str]] = {
        "stage": "train.stages", "seed": "the top-level seed", "kb": "the line's knowledge base",
        "kb_k": "retrieval.k"}

    base: str = Field("tiny", description="Model spec of the base model (see README: model specs).")
    stages: list[str] = Field(default_factory=lambda: ["cpt", "sft"], description="Training stages in order: cpt, sft.")
    min_steps: int = Field(50, ge=0, description="At least this many optimizer steps per stage: a small corpus is "
                           "passed over more often (up to 20 epochs) instead of training 3 steps.")
    cpt: StageOverrides = Field(default_factory=StageOverrides)
    sft: StageOverrides = Field(default_factory=StageOverrides)

    def stage_config(self, stage: str, *, seed: int, kb: str | None, kb_k: int) -> TrainConfig:
        """The TrainConfig of one stage of the line: this section, the stage's overrides, and what the line sets."""
        settings = self.model_dump(include=set(TrainConfig.model_fields))
        overrides = getattr(self, stage).model_dump(exclude_none=True)
        return validate(TrainConfig, {**settings, **overrides, "stage": stage, "seed": seed, "kb": kb, "kb_k": kb_k}, "train")
