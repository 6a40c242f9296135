"""``distill``: a smaller student trained on the teacher's token distributions (logit distillation).

The student is the teacher with fewer layers (evenly spaced, first and last kept) and optionally a
narrower MLP (neurons kept by measured importance), so it starts from the teacher's weights. It is then
trained on domain sequences with

    loss = kd_weight * KD(teacher ‖ student) + (1 - kd_weight) * cross-entropy(labels)

over the tokens that carry labels (assistant turns of task chats, every token of domain text). KD is the
forward KL ``KL(p_T ‖ p_S)`` at temperature T (Hinton et al.; scaled by T²), or the generalised JSD of
GKD (Agarwal et al. 2024) with mixture weight beta. ``kd_weight=0`` is the same student trained without a
teacher — the baseline distillation has to beat. The loop is our own: the KD term needs the teacher's
logits next to the student's, which the train stage's causal-LM loss does not take.
"""

from __future__ import annotations

import copy

from rich.progress import TextColumn

from domainlm.compress.config import CompressConfig
from domainlm.progress import counting_bar


def kd_loss(student_logits, teacher_logits, kind: str = "forward_kl", temperature: float = 1.0, beta: float = 0.5):
    """Per-position divergence between teacher and student next-token distributions."""
    import math

    import torch

    log_s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "forward_kl":
        return (log_t.exp() * (log_t - log_s)).sum(-1) * temperature**2
    # generalised JSD: beta*KL(T ‖ M) + (1-beta)*KL(S ‖ M), M = beta*T + (1-beta)*S
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1 - beta)]), dim=0)
    kl_t = (log_t.exp() * (log_t - log_m)).sum(-1)
    kl_s = (log_s.exp() * (log_s - log_m)).sum(-1)
    return (beta * kl_t + (1 - beta) * kl_s) * temperature**2


def student_layers(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spaced teacher layers for the student, first and last included."""
    n_student = min(max(n_student, 1), n_teacher)
    if n_student == 1:
        return [n_teacher - 1]
    return sorted({round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)})


def make_student(teacher, examples: list, pad_id: int, *, n_layers: int, mlp_keep: float):
    """A copy of ``teacher`` with ``n_layers`` of its layers and ``mlp_keep`` of its MLP neurons."""
    from domainlm.compress.prune import keep_layers, measure_importance, shrink_mlp

    student = copy.deepcopy(teacher)
    if mlp_keep < 1:
        shrink_mlp(student, mlp_keep, measure_importance(student, examples, pad_id)["mlp"])
    keep_layers(student, student_layers(teacher.config.num_hidden_layers, n_layers))
    return student


def train_student(student, teacher, examples: list, cfg: CompressConfig, pad_id: int, *, label: str = "distill",
                  kd_weight: float | None = None) -> list[dict]:
    """Train ``student`` in place for ``cfg.steps`` steps; returns the loss history (every 10 steps)."""
    import torch

    from domainlm.compress.data import batches
    from domainlm.train import collate

    kd_weight = cfg.kd_weight if kd_weight is None else kd_weight
    torch.manual_seed(cfg.seed)
    student.train()
    if teacher is not None:
        teacher.eval()
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, cfg.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    history: list[dict] = []
    with counting_bar(TextColumn("{task.fields[loss]}")) as progress:
        bar = progress.add_task(label, total=cfg.steps, loss="")
        for step, chunk in enumerate(batches(examples, cfg.train_batch_size, cfg.steps, cfg.seed), start=1):
            batch = collate(chunk, pad_id)
            logits = student(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[:, :-1]
            targets = batch["labels"][:, 1:]
            mask = targets != -100
            ce = torch.nn.functional.cross_entropy(logits[mask].float(), targets[mask])
            loss = (1 - kd_weight) * ce
            kd = torch.zeros(())
            if kd_weight > 0 and teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[:, :-1]
                kd = kd_loss(logits[mask], t_logits[mask], cfg.kd_loss, cfg.kd_temperature, cfg.gkd_beta).mean()
                loss = loss + kd_weight * kd
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            if step % 10 == 0 or step == cfg.steps:
                history.append({"step": step, "loss": round(value, 5), "ce": round(float(ce.detach()), 5),
                                "kd": round(float(kd.detach()), 5)})
            progress.update(bar, advance=1, loss=f"loss {value:.3f}")
    student.eval()
    return history


def distill(source_dir, teacher_dir, out, examples: list, cfg: CompressConfig) -> dict:
    """Build a student from ``source_dir``, distil ``teacher_dir`` into it on ``examples``, save it to ``out``.

    The teacher is the source itself unless ``--teacher`` names another model with the same tokenizer."""
    from domainlm.compress.merge import save_hf
    from domainlm.models import load_hf

    source, tokenizer = load_hf(source_dir, device="cpu", dtype="float32")
    teacher = source
    if teacher_dir is not None and str(teacher_dir) != str(source_dir):
        teacher, teacher_tok = load_hf(teacher_dir, device="cpu", dtype="float32")
        if teacher_tok.get_vocab() != tokenizer.get_vocab():
            from domainlm.errors import DomainlmError

            raise DomainlmError(f"--teacher {teacher_dir}: its tokenizer differs from the source's; logit "
                                "distillation needs the same vocabulary")
    pad_id = tokenizer.pad_token_id
    n_layers = cfg.student_layers or max(1, source.config.num_hidden_layers // 2)
    student = make_student(source, examples, pad_id, n_layers=n_layers, mlp_keep=cfg.student_mlp)
    history = train_student(student, teacher, examples, cfg, pad_id)
    save_hf(student, tokenizer, out)
    return {"teacher_params": sum(p.numel() for p in teacher.parameters()),
            "student_params": sum(p.numel() for p in student.parameters()),
            "student_layers": student.config.num_hidden_layers,
            "student_intermediate_size": student.config.intermediate_size, "history": history}
