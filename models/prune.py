"""Pruning: unstructured magnitude (zeros in place) and structured (FFN channels, attention heads).

Structured pruning really removes rows/columns, so parameter count, file size and latency
shrink; unstructured pruning only zeroes weights (dense storage and speed are unchanged,
``nonzero_parameters`` shows the effect). FFN-pruned models save and reload through their
config (``intermediate_size`` is updated); head pruning is per-layer and in-memory only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgnlp.errors import ConfigurationError, NotFoundError
from kgnlp.files import atomic_dir, atomic_write_json

__all__ = [
    "magnitude_prune",
    "nonzero_parameters",
    "prune_attention_heads",
    "prune_ffn",
    "prune_run",
    "truncate_layers",
]


def nonzero_parameters(model: Any) -> int:
    """Count parameters that are not exactly zero."""
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


def magnitude_prune(model: Any, amount: float, skip: tuple[str, ...] = ("classifier", "score", "lm_head")) -> float:
    """Zero the smallest-magnitude ``amount`` of all ``nn.Linear`` weights (global L1, made permanent).

    Args:
        model: any torch model.
        amount: fraction in (0, 1) of linear weights to zero.
        skip: module-name fragments left untouched (output heads).

    Returns:
        The achieved sparsity over the pruned weights.
    """
    import torch
    from torch.nn.utils import prune

    if not 0 < amount < 1:
        raise ConfigurationError(f"amount must be in (0, 1), got {amount}")
    params = [
        (m, "weight")
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(s in n for s in skip)
    ]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for m, name in params:
        prune.remove(m, name)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
    return zeros / sum(m.weight.numel() for m, _ in params)


def _shrink(linear: Any, keep: Any, dim: int) -> Any:
    """A new ``nn.Linear`` keeping indices ``keep`` of its outputs (dim 0) or inputs (dim 1)."""
    import torch

    w = linear.weight.data.index_select(dim, keep).clone()
    out_f, in_f = w.shape
    new = torch.nn.Linear(in_f, out_f, bias=linear.bias is not None, dtype=w.dtype, device=w.device)
    new.weight.data = w
    if linear.bias is not None:
        new.bias.data = linear.bias.data.index_select(0, keep).clone() if dim == 0 else linear.bias.data.clone()
    return new


def _ffn_triples(model: Any) -> list[tuple[Any, list[str], str]]:
    """``(parent module, [input-side linears], output-side linear)`` per transformer FFN."""
    found = []
    for _, m in model.named_modules():
        if hasattr(m, "intermediate") and hasattr(m, "output") and hasattr(m.intermediate, "dense"):
            found.append((m, ["intermediate.dense"], "output.dense"))  # BERT-style layer
        elif all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj")):
            found.append((m, ["gate_proj", "up_proj"], "down_proj"))  # Llama-style MLP
    return found


def _get(m: Any, path: str) -> Any:
    for part in path.split("."):
        m = getattr(m, part)
    return m


def _set(m: Any, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        m = getattr(m, part)
    setattr(m, leaf, value)


def prune_ffn(model: Any, keep: float) -> int:
    """Remove the least important FFN channels, the same number in every layer.

    Importance of channel ``j`` = ‖row j of the input projection(s)‖ · ‖column j of the output projection‖.

    Args:
        model: a BERT-like or Llama-like transformers model (optionally with a head).
        keep: fraction of intermediate channels to keep, in (0, 1].

    Returns:
        The new intermediate size (also written to ``model.config.intermediate_size``).
    """
    import torch

    if not 0 < keep <= 1:
        raise ConfigurationError(f"ffn keep must be in (0, 1], got {keep}")
    triples = _ffn_triples(model)
    if not triples:
        raise ConfigurationError("prune_ffn: no BERT- or Llama-style FFN blocks found in this model")
    size = 0
    for parent, ins, out in triples:
        w_out = _get(parent, out).weight.data
        score = torch.linalg.vector_norm(w_out, dim=0)
        for name in ins:
            score = score * torch.linalg.vector_norm(_get(parent, name).weight.data, dim=1)
        size = max(1, round(w_out.shape[1] * keep))
        idx = torch.topk(score, size).indices.sort().values
        for name in ins:
            _set(parent, name, _shrink(_get(parent, name), idx, 0))
        _set(parent, out, _shrink(_get(parent, out), idx, 1))
    for cfg in {
        id(c): c
        for c in (getattr(model, "config", None), getattr(getattr(model, "base_model", None), "config", None))
        if c
    }.values():
        cfg.intermediate_size = size
    return size


def prune_attention_heads(model: Any, keep: float) -> int:
    """Remove the attention heads with the smallest output-projection norm (BERT-style, in memory).

    Args:
        model: a BERT-like model (``attention.self.{query,key,value}`` + ``attention.output.dense``).
        keep: fraction of heads to keep per layer, in (0, 1].

    Returns:
        Heads kept per layer.
    """
    import torch

    kept = 0
    for _, m in model.named_modules():
        if not (hasattr(m, "self") and hasattr(m, "output") and hasattr(m.self, "query")):
            continue
        att, dense = m.self, m.output.dense
        h, d = att.num_attention_heads, att.attention_head_size
        kept = max(1, round(h * keep))
        score = torch.linalg.vector_norm(dense.weight.data.view(dense.out_features, h, d), dim=(0, 2))
        heads = torch.topk(score, kept).indices.sort().values
        idx = (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1)
        for name in ("query", "key", "value"):
            setattr(att, name, _shrink(getattr(att, name), idx, 0))
        m.output.dense = _shrink(dense, idx, 1)
        att.num_attention_heads, att.all_head_size = kept, kept * d
    if kept == 0:
        raise ConfigurationError("prune_attention_heads: no BERT-style attention blocks found")
    return kept


def truncate_layers(out_dir: Path, keep: int, source: Path | None = None) -> Path:
    """Save a shallower copy of an encoder (its first ``keep`` layers): a distillation student.

    Args:
        out_dir: where the student model + tokenizer go.
        keep: encoder layers to keep.
        source: model folder (default: the cached all-MiniLM-L6-v2).

    Returns:
        ``out_dir``.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    from kgnlp.files import default_home

    source = source or default_home() / "models" / "all-minilm-l6-v2"
    model = AutoModel.from_pretrained(str(source))
    model.encoder.layer = torch.nn.ModuleList(list(model.encoder.layer)[:keep])
    model.config.num_hidden_layers = keep
    with atomic_dir(Path(out_dir)) as tmp:
        model.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(tmp))
    return Path(out_dir)


def prune_run(
    run_dir: Path, out_dir: Path, ffn_keep: float = 0.5, heads_keep: float = 1.0, finetune_minutes: float = 0.0
) -> dict[str, Any]:
    """Structurally prune a full-FT classifier run, optionally fine-tune again, and evaluate.

    Args:
        run_dir: a classifier run with ``model/``.
        out_dir: the new run directory (``model/``, ``labels.json``, ``config.yaml``, ``metrics.json``).
        ffn_keep: FFN channel fraction to keep.
        heads_keep: must be 1.0 for a saved run (head pruning is not expressible in a config).
        finetune_minutes: > 0: recover accuracy with a short fine-tune of the pruned model.

    Returns:
        The metrics written.
    """
    import shutil

    import yaml

    from models.classify import load_classifier
    from models.config import build_config

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "model").is_dir():
        raise NotFoundError(f"{run_dir} has no model/ (prune a full fine-tuning run)")
    if heads_keep != 1.0:
        raise ConfigurationError(f"heads_keep: {heads_keep} cannot be saved; use prune_attention_heads in memory")
    clf = load_classifier(run_dir)
    before = sum(p.numel() for p in clf.model.parameters())
    prune_ffn(clf.model, ffn_keep)
    staging = out_dir / "pruned_model"
    with atomic_dir(staging) as tmp:
        clf.model.save_pretrained(str(tmp))
        clf.tokenizer.save_pretrained(str(tmp))
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg.pop("resolved_model", None)
    cfg["model"], cfg["output_dir"] = str(staging), str(out_dir)
    cfg["train"] = {**cfg["train"], "epochs": 1, "max_minutes": finetune_minutes or None}
    cfg["train"]["lr"] = cfg["train"]["lr"] / 2
    if finetune_minutes > 0:
        from models.finetune import finetune

        metrics = finetune(build_config(cfg), resume=False)
    else:
        from models.data import run_splits  # the same split as the source run

        shutil.copytree(staging, out_dir / "model", dirs_exist_ok=True)
        shutil.copy(run_dir / "labels.json", out_dir / "labels.json")
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        from models.classify import classification_metrics

        _, _, test = run_splits(build_config(cfg))
        lab = {x: i for i, x in enumerate(clf.labels)}
        metrics = {"test": classification_metrics([lab[x] for x in test.labels], clf.predict_proba(test.texts))}
    metrics.update({"pruned_from": str(run_dir), "ffn_keep": ffn_keep, "params_before": before})
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
