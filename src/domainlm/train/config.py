"""The training configuration: one pydantic model, shared by ``domainlm train``, the Python API and plans."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field("sft", pattern="^(cpt|sft|dpo|kto)$", description="cpt | sft | dpo | kto")
    method: str = Field("full", pattern="^(full|lora|qlora)$", description="full | lora | qlora")
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(0, ge=0, description="Optimizer steps; 0 means from epochs.")
    min_steps: int = Field(0, ge=0, description="At least this many optimizer steps when epochs give fewer (a small "
                           "corpus is passed over more often, up to 20 epochs); ignored when max_steps > 0.")
    lr: float = Field(5e-4, gt=0)
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
    log_every: int = Field(1, ge=1)
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps; 0 = only at the end.")
    keep_checkpoints: int = Field(2, ge=1)
