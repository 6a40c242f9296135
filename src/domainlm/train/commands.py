"""``domainlm train`` and ``domainlm plan``: thin shells over :mod:`domainlm.train`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from domainlm.config import split_overrides, with_options
from domainlm.errors import DomainlmError
from domainlm.train.config import TrainConfig
from domainlm.train.launcher import inside_launcher, relaunch, strip_launcher_args
from domainlm.train.plan import plan as make_plan
from domainlm.train.plan import plan_table, shape_for
from domainlm.train.progress import check_trackers
from domainlm.train.stage import is_main_process
from domainlm.train.stage import train as run_train
from domainlm.workspace import workspace_config_or_defaults

console = Console(stderr=True)

# What the workspace's ``train:`` section gives ``domainlm train`` when an option is not given (besides the
# base model); every other setting is the option's own default.
SECTION_DEFAULTS = {"method", "epochs", "lr", "sandbox", "batch_size", "seq_len", "report_to", "progress_every"}


def train_config(section: TrainConfig, **options) -> TrainConfig:
    """The command's config: its options (None = not given) over the section's :data:`SECTION_DEFAULTS`."""
    return with_options(TrainConfig(**section.model_dump(include=SECTION_DEFAULTS)), "train", **options)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        args: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml, e.g. train.lr=1e-4"),
        base: str = typer.Option(None, "--base", help="Base model spec: tiny, a model folder, ... (default: train.base)"),
        data: list[Path] = typer.Option(..., "--data", help="Data file or folder (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Output model folder."),
        stage: str = typer.Option("sft", "--stage", help="cpt | sft | dpo | kto"),
        method: str = typer.Option(None, "--method", help="full | lora | qlora (default: train.method)"),
        epochs: float = typer.Option(None, "--epochs"),
        max_steps: int = typer.Option(0, "--max-steps", help="Optimizer steps (0: from --epochs)."),
        lr: str = typer.Option(None, "--lr", help="Peak learning rate, or auto: the sandbox's recommendation."),
        sandbox: Path = typer.Option(None, "--sandbox", help="lr auto: `sandbox fit --out` folder or its recommendation.json."),
        batch_size: int = typer.Option(None, "--batch-size", help="Sequences per step on each process."),
        grad_accum: int = typer.Option(1, "--grad-accum"),
        seq_len: int = typer.Option(None, "--seq-len"),
        replay: list[Path] = typer.Option(None, "--replay", help="cpt: general-text Document JSONL to mix in."),
        replay_ratio: float = typer.Option(0.0, "--replay-ratio"),
        kb: Path = typer.Option(None, "--kb", help="sft: also train items with the passages this KB retrieves for them."),
        kb_k: int = typer.Option(3, "--kb-k", help="sft: passages per retrieval-augmented item."),
        save_every: int = typer.Option(0, "--save-every", help="Checkpoint every N steps."),
        grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing"),
        compile_model: bool = typer.Option(False, "--compile", help="torch.compile (GPU)."),
        seed: int = typer.Option(0, "--seed"),
        report_to: str = typer.Option(
            None, "--report-to", help="Also log metrics and config to: tensorboard, wandb, mlflow (comma-separated; "
            "none for none). Default: train.report_to."),
        force: bool = typer.Option(False, "--force", help="Re-run from scratch even if up to date."),
        no_resume: bool = typer.Option(False, "--no-resume", help="Ignore existing checkpoints."),
        launcher: str = typer.Option(None, "--launcher", help="torchrun | accelerate: run in several processes."),
        nproc: int = typer.Option(1, "--nproc", help="Processes per node under --launcher."),
        strategy: str = typer.Option("ddp", "--strategy", help="ddp | fsdp | deepspeed (ZeRO-2) under --launcher."),
        nnodes: int = typer.Option(1, "--nnodes"),
        node_rank: int = typer.Option(0, "--node-rank"),
        master_addr: str = typer.Option("127.0.0.1", "--master-addr"),
        master_port: int = typer.Option(None, "--master-port"),
    ) -> None:
        """Train a model: cpt on documents, sft on chats/task items, dpo/kto on preferences or feedback."""
        # The config first: a bad option or a tracker that is not installed stops here, once, before any
        # process is launched or model loaded.
        _, overrides = split_overrides(args or [])
        section = workspace_config_or_defaults(None, overrides).train
        cfg = train_config(section, stage=stage, method=method, epochs=epochs, max_steps=max_steps, lr=lr,
                           sandbox=str(sandbox) if sandbox else None,
                           batch_size=batch_size, grad_accum=grad_accum, seq_len=seq_len,
                           replay=[str(p) for p in replay or []], replay_ratio=replay_ratio,
                           kb=str(kb) if kb else None, kb_k=kb_k, save_every=save_every,
                           grad_checkpointing=grad_checkpointing, compile=compile_model, seed=seed,
                           report_to=report_to)
        check_trackers(cfg.report_to)
        if launcher and not inside_launcher():
            argv = strip_launcher_args(sys.argv[1:])
            code = relaunch(launcher, nproc, strategy, argv, nnodes=nnodes, node_rank=node_rank,
                            master_addr=master_addr, master_port=master_port)
            if code:
                raise DomainlmError(f"training under {launcher} failed (exit code {code})", exit_code=code)
            return
        result = run_train(base or section.base, list(data), out, cfg, force=force, resume=not no_resume,
                           console=console)
        if is_main_process():
            shown = {k: result.metrics[k] for k in ("steps", "train_loss", "eval_loss_start", "eval_loss_end",
                                                    "tokens_per_s", "wall_s", "records", "rejected")
                     if k in result.metrics}
            console.print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))

    @app.command()
    def plan(
        base: str = typer.Option(..., "--base", help="Model spec or a known shape: qwen2-0.5b, qwen2-1.5b, qwen2-7b."),
        method: str = typer.Option("lora", "--method", help="full | lora | qlora"),
        seq: int = typer.Option(2048, "--seq", help="Tokens per sequence."),
        batch: int = typer.Option(1, "--batch", help="Sequences per micro-step."),
        grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing"),
        lora_r: int = typer.Option(16, "--lora-r"),
        gpu: str = typer.Option("h100", "--gpu", help="h100 | h200 | a100 | l40s | 4090 | cpu"),
        mfu: float = typer.Option(None, "--mfu", help="Expected model-FLOPs utilisation (default 0.35)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Predict peak GPU memory and tokens/s of a training run before launching it."""
        if method not in ("full", "lora", "qlora"):
            raise DomainlmError(f"--method {method}: expected full, lora or qlora")
        result = make_plan(shape_for(base), method=method, seq=seq, batch=batch, grad_checkpointing=grad_checkpointing,
                           lora_r=lora_r, gpu=gpu, mfu=mfu)
        if as_json:
            typer.echo(json.dumps(asdict(result), indent=2))
            return
        table = Table(title=f"plan: {base} {method} seq={seq} batch={batch}" + (" +ckpt" if grad_checkpointing else ""))
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for key, value in plan_table(result):
            table.add_row(key, value)
        Console().print(table)
