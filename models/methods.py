"""Parameter-efficient fine-tuning methods (peft) behind one switch: ``MethodConfig.kind``."""

from __future__ import annotations

from typing import Any

from kgnlp.errors import ConfigurationError
from models.config import MethodConfig

__all__ = ["adalora_orth_reg", "apply_method", "count_parameters", "qlora_load_kwargs"]


def count_parameters(model: Any) -> tuple[int, int]:
    """Return ``(trainable, total)`` parameter counts (real tensors, masks not considered)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def qlora_load_kwargs() -> dict[str, Any]:
    """``from_pretrained`` kwargs for a 4-bit NF4 base (QLoRA).

    Raises:
        ConfigurationError: without CUDA or bitsandbytes (QLoRA's kernels are GPU-only).
    """
    import torch

    if not torch.cuda.is_available():
        raise ConfigurationError("method.kind: 'qlora' needs CUDA (4-bit kernels); use 'lora' on CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ConfigurationError(
            "method.kind: 'qlora' needs the bitsandbytes package (pip install bitsandbytes)"
        ) from e
    from transformers import BitsAndBytesConfig

    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
    return {"quantization_config": bnb, "device_map": {"": 0}}


def apply_method(model: Any, method: MethodConfig, task: str, total_steps: int) -> Any:
    """Wrap ``model`` for training with the configured method.

    Args:
        model: a transformers model (sequence classifier or causal LM).
        method: the method config; ``full`` returns the model unchanged.
        task: ``"classify"`` or ``"sft"`` (peft task type; classify keeps the new head trainable).
        total_steps: optimiser steps of the run (AdaLoRA's rank schedule needs it).

    Returns:
        The model to train (a ``PeftModel`` for every kind but ``full``).
    """
    if method.kind == "full":
        return model
    import peft

    task_type = peft.TaskType.SEQ_CLS if task == "classify" else peft.TaskType.CAUSAL_LM
    targets = method.target_modules
    if method.kind in ("lora", "qlora"):
        cfg: Any = peft.LoraConfig(
            task_type=task_type,
            r=method.r,
            lora_alpha=method.alpha,
            lora_dropout=method.dropout,
            target_modules=targets,
        )
        if method.kind == "qlora":
            model = peft.prepare_model_for_kbit_training(model)
    elif method.kind == "adalora":
        cfg = peft.AdaLoraConfig(
            task_type=task_type,
            init_r=method.r * 3 // 2,
            target_r=method.r,
            lora_alpha=method.alpha,
            lora_dropout=method.dropout,
            target_modules=targets,
            total_step=max(total_steps, 10),
            tinit=max(total_steps // 10, 1),
            tfinal=max(total_steps // 5, 1),
        )
    elif method.kind == "ia3":
        cfg = peft.IA3Config(task_type=task_type, target_modules=targets)
    elif method.kind == "prompt":
        cfg = peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=method.num_virtual_tokens)
    else:  # pragma: no cover - Literal guards this
        raise ConfigurationError(f"method.kind: unknown {method.kind!r}")
    try:
        return peft.get_peft_model(model, cfg)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(f"method: {method.kind!r} cannot be applied to this model: {e}") from e


def adalora_orth_reg(peft_model: Any) -> Any:
    """AdaLoRA's orthogonality regulariser, ``orth_reg_weight`` × mean ‖PᵀP − I‖_F over its factors.

    peft adds it inside ``AdaLoraModel.forward`` only when the model computes the loss itself
    (``labels`` passed); ``finetune`` computes its own loss from the logits (class weights,
    distillation), so it adds this term. Same formula as peft's: the P (``lora_A``) and Q
    (``lora_B``) factors stay near-orthogonal, which keeps the SVD-style importance scores that
    drive rank allocation meaningful.
    """
    import torch

    tuner = peft_model.base_model
    name = tuner.trainable_adapter_name
    weight = float(tuner.peft_config[name].orth_reg_weight)
    terms = []
    for n, p in tuner.model.named_parameters():
        if ("lora_A" in n or "lora_B" in n) and name in n and p.numel():
            cov = p @ p.T if "lora_A" in n else p.T @ p
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype)))
    return weight * torch.stack(terms).mean() if terms else torch.zeros(())
