"""Load prepared models from local directories (catalog cache, user path or hub snapshot)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kgnlp.errors import ConfigurationError, ModelUnavailableError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Quantization", "load_causal_lm", "load_sentence_embedder", "quantize_int8_dynamic"]

Quantization = Literal["none", "int4-weight", "int8-weight", "int8-dynamic", "bnb-4bit", "bnb-8bit"]
# bitsandbytes quantizes while loading, on CUDA; peft puts LoRA layers on its layers directly.
LOAD_TIME = ("bnb-4bit", "bnb-8bit")


def load_causal_lm(path: Path, quantization: Quantization = "none", dtype: str = "float32") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer (CPU, or CUDA for the bitsandbytes schemes).

    Args:
        path: a directory with ``config.json`` and safetensors weights.
        quantization: a CPU scheme applied after loading (see ``quantize``), or ``bnb-4bit``
            (NF4, bf16 compute) / ``bnb-8bit`` (LLM.int8) loaded onto the first CUDA device.
        dtype: torch dtype name for the weights.

    Returns:
        ``(model, tokenizer)`` with the model in eval mode.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = _bitsandbytes_kwargs(quantization) if quantization in LOAD_TIME else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype), **extra)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load a causal LM from {path}: {e}") from e
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return (model if quantization in LOAD_TIME else quantize(model, quantization)), tokenizer


def _bitsandbytes_kwargs(quantization: str) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        raise ConfigurationError(f"{quantization} needs a CUDA GPU; on a CPU use int4-weight or int8-weight")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as e:
        raise ConfigurationError(f"{quantization} needs bitsandbytes: pip install 'kgnlp[gpu]'") from e
    if quantization == "bnb-4bit":
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )  # fmt: skip
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config, "device_map": {"": 0}}


def quantize(model: Any, quantization: Quantization) -> Any:
    """Apply a CPU quantization scheme (LoRA layers always stay in float).

    ``int4-weight``: 4-bit weights in groups of 32 (int8 for ``lm_head``), bfloat16 activations;
    ``int8-weight``: int8 weights, bfloat16 activations. Both keep perplexity within ~1 % on
    SmolLM2-135M (see ``models.weight_only``). ``int8-dynamic``: int8 weights and activations
    (lossy on this small model: perplexity ×2 — see benchmarks/generation.py).
    """
    if quantization in ("int4-weight", "int8-weight"):
        from models.weight_only import quantize_weight_only

        return quantize_weight_only(model, bits=4 if quantization == "int4-weight" else 8)
    if quantization == "int8-dynamic":
        return quantize_int8_dynamic(model)[0]
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
        warnings.simplefilter("ignore")  # quantize_dynamic is deprecated in favour of torchao
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
