"""``prune``: structured pruning by measured importance, then a short recovery fine-tune.

Two cuts, both measured on calibration sequences from the domain data:

* layers — Block Influence (ShortGPT, Men et al. 2024): ``1 - cos(h_in, h_out)`` of each decoder layer,
  averaged over tokens; the layers that change their input least are dropped.
* MLP width — per neuron, mean ``|act|`` of the down-projection's input times the norm of the neuron's
  down-projection column (Wanda-style, structured); the least important neurons are removed from
  gate/up (rows) and down (columns).

Written by hand because transformers/peft have no structured pruning for decoder models; the surgery
only edits module lists and weight slices of a standard Llama/Qwen2 layout (``model.model.layers[i].mlp``).
"""

from __future__ import annotations

from domainlm.errors import DomainlmError


def _layers(model):
    try:
        return model.model.layers
    except AttributeError:
        raise DomainlmError(f"{type(model).__name__}: pruning needs a Llama/Qwen2-style model (model.model.layers)") from None


def _calibration_batches(examples: list, pad_id: int, batch_size: int = 8, most: int = 32):
    from domainlm.train import collate

    examples = examples[:most]
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start : start + batch_size], pad_id)


def measure_importance(model, examples: list, pad_id: int) -> dict:
    """{"layers": [BI per layer], "mlp": [[importance per neuron] per layer]} on calibration examples."""
    import torch

    layers = _layers(model)
    n = len(layers)
    cos_sum, tokens = torch.zeros(n), 0
    act_sum = [torch.zeros(layer.mlp.down_proj.in_features) for layer in layers]
    state: dict = {}

    def layer_hook(index):
        def hook(module, args, kwargs, output):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            mask = state["mask"]
            cos = torch.nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
            cos_sum[index] += float(cos[mask].sum())
        return hook

    def mlp_hook(index):
        def hook(module, args):
            act = args[0].float().abs()
            act_sum[index] += act[state["mask"]].sum(dim=0)
        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(layer_hook(i), with_kwargs=True))
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(mlp_hook(i)))
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _calibration_batches(examples, pad_id):
                # real tokens only (padding is where labels and ids are both padding beyond each example)
                mask = batch["input_ids"] != pad_id
                mask[:, 0] = True
                state["mask"] = mask
                tokens += int(mask.sum())
                model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    finally:
        for h in handles:
            h.remove()
    block_influence = [1.0 - float(c) / max(tokens, 1) for c in cos_sum]
    mlp = []
    for i, layer in enumerate(layers):
        column_norm = layer.mlp.down_proj.weight.detach().float().norm(dim=0)
        mlp.append(((act_sum[i] / max(tokens, 1)) * column_norm).tolist())
    return {"layers": block_influence, "mlp": mlp}


def keep_layers(model, keep: list[int]) -> None:
    """Keep only decoder layers ``keep`` (in order); renumber them and update the config."""
    import torch

    layers = _layers(model)
    if not keep or any(not 0 <= i < len(layers) for i in keep):
        raise DomainlmError(f"cannot keep layers {keep} of a {len(layers)}-layer model")
    kept = [layers[i] for i in keep]
    for new_index, layer in enumerate(kept):
        # the KV cache is indexed by layer_idx: it must follow the new order
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = new_index
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_index
    model.model.layers = torch.nn.ModuleList(kept)
    config = model.config
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)


def shrink_mlp(model, keep_fraction: float, importance: list[list[float]]) -> int:
    """Keep the most important ``keep_fraction`` of MLP neurons in every layer; returns the new width."""
    import torch

    layers = _layers(model)
    width = layers[0].mlp.down_proj.in_features
    # A multiple of 8 keeps kernels (and GGUF block sizes) happy.
    new_width = max(8, int(round(width * keep_fraction / 8)) * 8) if keep_fraction < 1 else width
    if new_width >= width:
        return width
    for layer, scores in zip(layers, importance, strict=True):
        idx = torch.topk(torch.tensor(scores), new_width).indices.sort().values
        mlp = layer.mlp
        for name in ("gate_proj", "up_proj"):
            old = getattr(mlp, name)
            new = torch.nn.Linear(old.in_features, new_width, bias=old.bias is not None, dtype=old.weight.dtype)
            new.weight.data = old.weight.data[idx].clone()
            if old.bias is not None:
                new.bias.data = old.bias.data[idx].clone()
            setattr(mlp, name, new)
        old = mlp.down_proj
        new = torch.nn.Linear(new_width, old.out_features, bias=old.bias is not None, dtype=old.weight.dtype)
        new.weight.data = old.weight.data[:, idx].clone()
        if old.bias is not None:
            new.bias.data = old.bias.data.clone()
        mlp.down_proj = new
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = new_width
    model.config.intermediate_size = new_width
    return new_width


def least_important(scores: list[float], n_drop: int) -> list[int]:
    """Indices to keep after dropping the ``n_drop`` lowest-scoring layers (never the first or last:
    the first reads the embeddings and the last writes to the head, ShortGPT keeps them too)."""
    n = len(scores)
    if n_drop >= n - 1:
        raise DomainlmError(f"cannot drop {n_drop} of {n} layers; at least 2 must stay")
    candidates = sorted(range(1, n - 1), key=lambda i: scores[i]) if n > 2 else []
    if n_drop > len(candidates):
        raise DomainlmError(f"cannot drop {n_drop} of {n} layers (first and last are kept)")
    drop = set(candidates[:n_drop])
    return [i for i in range(n) if i not in drop]


def prune_model(model, examples: list, pad_id: int, *, drop_layers: int, mlp_keep: float) -> dict:
    """Prune ``model`` in place by measured importance; returns what was measured and cut."""
    importance = measure_importance(model, examples, pad_id)
    keep = least_important(importance["layers"], drop_layers)
    width = shrink_mlp(model, mlp_keep, importance["mlp"])
    keep_layers(model, keep)
    return {"block_influence": [round(x, 5) for x in importance["layers"]], "kept_layers": keep,
            "intermediate_size": width}


def prune_and_recover(source_dir, out, examples: list, cfg) -> dict:
    """Prune the model at ``source_dir`` by importance, recover it for ``cfg.steps`` steps, save to ``out``.

    The recovery fine-tune is distillation from the unpruned model (``kd_weight`` of KD, the rest plain
    cross-entropy; Minitron, Sreenivas et al. 2024): the source is the best teacher for what the cut lost,
    and the cross-entropy part lets the pruned model learn from the data where the source was weak.
    ``steps=0`` saves the pruned model without recovery."""
    import copy

    from domainlm.compress.distill import train_student
    from domainlm.compress.merge import save_hf
    from domainlm.models import load_hf

    source, tokenizer = load_hf(source_dir, device="cpu", dtype="float32")
    pruned = copy.deepcopy(source)
    info = prune_model(pruned, examples, tokenizer.pad_token_id, drop_layers=cfg.prune_layers, mlp_keep=cfg.prune_mlp)
    info["history"] = train_student(pruned, source, examples, cfg, tokenizer.pad_token_id, label="recover") if cfg.steps else []
    info.update(source_params=sum(p.numel() for p in source.parameters()),
                pruned_params=sum(p.numel() for p in pruned.parameters()))
    save_hf(pruned, tokenizer, out)
    return info
