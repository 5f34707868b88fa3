"""Load prepared models from local directories (catalog cache, user path or hub snapshot)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kgnlp.errors import ModelUnavailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Quantization", "load_causal_lm", "load_sentence_embedder", "quantize_int8_dynamic"]

Quantization = Literal["none", "int8-weight", "int8-dynamic"]


def load_causal_lm(path: Path, quantization: Quantization = "none", dtype: str = "float32") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer for CPU inference.

    Args:
        path: a directory with ``config.json`` and safetensors weights.
        quantization: ``"int8-dynamic"`` quantizes every ``nn.Linear`` to int8 (CPU).
        dtype: torch dtype name for the weights.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load a causal LM from {path}: {e}") from e
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return quantize(model, quantization), tokenizer


def quantize(model: Any, quantization: Quantization) -> Any:
    """Apply a CPU quantization scheme (LoRA layers always stay in float).

    ``int8-weight``: int8 weights, float activations (torchao); perplexity within ~1 % of fp32
    on SmolLM2-135M. ``int8-dynamic``: int8 weights and activations (faster, but on this small
    model it doubles perplexity — see benchmarks/generation.py).
    """
    if quantization == "int8-weight":
        return quantize_int8_weight_only(model)
    if quantization == "int8-dynamic":
        return quantize_int8_dynamic(model)[0]
    return model


def quantize_int8_weight_only(model: Any) -> Any:
    """Per-channel int8 weight-only quantization of ``nn.Linear`` layers with torchao."""
    import logging

    import torch

    logging.getLogger("torchao").setLevel(logging.ERROR)  # it warns about CUDA-only kernels on CPU
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as e:
        raise ModelUnavailableError("int8-weight quantization needs torchao: pip install torchao") from e

    def is_base_linear(module: Any, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and "lora_" not in fqn

    quantize_(model, Int8WeightOnlyConfig(), filter_fn=is_base_linear)
    return model


def quantize_int8_dynamic(model: Any, keep_float: tuple[str, ...] = ()) -> tuple[Any, frozenset[str]]:
    """Per-channel int8 dynamic quantization of ``nn.Linear`` layers (the fastest CPU option measured here).

    LoRA layers (``lora_``) always stay in float. On SmolLM2-135M, quantizing every
    base layer kept answers closer to fp32 than leaving attention or lm_head in float.

    Args:
        model: a float model.
        keep_float: layer-name suffixes to leave in float.

    Returns:
        ``(model, names of the quantized layers)``.
    """
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig as default_dynamic_qconfig

    names = frozenset(
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and "lora_" not in n and not (keep_float and n.endswith(keep_float))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic is deprecated in favour of torchao, still fastest here
        spec = dict.fromkeys(names, default_dynamic_qconfig)
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8), names


def load_sentence_embedder(path: Path, device: str = "cpu") -> SentenceTransformer:
    """Load a sentence-transformers model folder."""
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load a sentence-transformers model from {path}: {e}") from e
    # the folder name identifies the model in embedding caches and index manifests, so a
    # loaded model and the same model passed by path agree (and indexes are not rebuilt)
    model.model_path = str(path)  # type: ignore[assignment]
    return model
