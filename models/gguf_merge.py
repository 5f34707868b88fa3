"""Merge a peft LoRA adapter into a GGUF base, for llama.cpp.

llama.cpp applies a runtime LoRA with extra matrix products on every token; a merged copy of
the base decodes at the base's speed. Only the tensors the adapter touches change: each is
dequantized, gets ``scale · B·A`` added and is quantized again (Q8_0 by default: a LoRA delta
is smaller than a Q4 step and would round away), every other tensor is copied byte for byte.

The merge reads the GGUF with the ``gguf`` package (llama.cpp's own Python reader/writer) and
needs no llama.cpp build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kgnlp.errors import ValidationError

__all__ = ["GGUF_NAMES", "adapter_fingerprint", "lora_deltas", "merge_lora_into_gguf"]

# peft target module → llama.cpp tensor name (llama architecture)
GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF → GGUF row order of a q/k projection (convert_hf_to_gguf's ``LlamaModel.permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    return field.contents() if field is not None else None


def lora_deltas(adapter_dir: Path) -> dict[tuple[int, str], np.ndarray]:
    """``(layer, module) → scale · B @ A`` (float32, HF layout) of a peft LoRA folder."""
    from safetensors.numpy import load_file

    from models.adapters import read_adapter_config

    cfg = read_adapter_config(adapter_dir)
    if cfg.get("fan_in_fan_out"):
        raise ValidationError(f"{adapter_dir}: fan_in_fan_out adapters are not supported for GGUF merging")
    r, alpha = int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"]))
    scale = alpha / np.sqrt(r) if cfg.get("use_rslora") else alpha / r
    weights_file = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise ValidationError(f"{adapter_dir}: no adapter_model.safetensors")
    tensors = {k: v.astype(np.float32) for k, v in _load_any_dtype(weights_file, load_file).items()}
    deltas: dict[tuple[int, str], np.ndarray] = {}
    for key, a in tensors.items():
        if ".lora_A." not in key:
            continue
        b = tensors.get(key.replace(".lora_A.", ".lora_B."))
        parts = key.split(".")
        try:
            layer = int(parts[parts.index("layers") + 1])
        except (ValueError, IndexError):
            raise ValidationError(f"{adapter_dir}: unexpected adapter tensor {key}") from None
        module = parts[parts.index("lora_A") - 1]
        if b is None or module not in GGUF_NAMES:
            raise ValidationError(f"{adapter_dir}: cannot merge {key} (module {module!r}) into a llama GGUF")
        deltas[(layer, module)] = scale * (b @ a)
    if not deltas:
        raise ValidationError(f"{adapter_dir}: the adapter has no LoRA weights")
    return deltas


def _load_any_dtype(path: Path, load_file: Any) -> dict[str, np.ndarray]:
    """safetensors → numpy, bf16 included (numpy has no bfloat16: go through torch)."""
    try:
        return dict(load_file(str(path)))
    except (TypeError, ValueError):
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}


def merge_lora_into_gguf(base: Path, adapter_dir: Path, out: Path, qtype: str = "Q8_0") -> dict[str, Any]:
    """Write ``out``: the GGUF ``base`` with the LoRA of ``adapter_dir`` merged in.

    Args:
        base: a llama-architecture GGUF file.
        adapter_dir: a peft LoRA folder trained on that base (HF layout).
        out: the merged GGUF to write (written to a temporary name, then renamed).
        qtype: GGML type of the merged tensors (``Q8_0``, ``F16``, ``F32``, ``Q4_1``, …).

    Returns:
        ``{"tensors_merged", "qtype", "bytes"}``.

    Raises:
        ValidationError: the adapter does not fit the base.
    """
    import gguf

    try:
        target_type = gguf.GGMLQuantizationType[qtype]
    except KeyError:
        raise ValidationError(f"unknown GGML type {qtype!r}") from None
    deltas = lora_deltas(adapter_dir)
    reader = gguf.GGUFReader(str(base), "r")
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    if arch != "llama":
        raise ValidationError(f"{base}: architecture {arch!r}; merging supports llama-architecture GGUFs")
    n_head = int(_field(reader, f"{arch}.attention.head_count"))
    n_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    by_name = {f"blk.{layer}.{GGUF_NAMES[module]}.weight": (module, d) for (layer, module), d in deltas.items()}
    missing = sorted(set(by_name) - {t.name for t in reader.tensors})
    if missing:
        raise ValidationError(f"{adapter_dir} does not fit {base}: no tensor {missing[0]} in the base")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch, endianess=reader.endianess)
    alignment = _field(reader, gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)

    merged: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        if t.name not in by_name:
            continue
        module, delta = by_name[t.name]
        weight = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if module in ("q_proj", "k_proj"):
            delta = _permute(delta, n_head if module == "q_proj" else n_kv)
        if weight.shape != delta.shape:
            raise ValidationError(f"{adapter_dir} does not fit {base}: {t.name} is {weight.shape}, delta {delta.shape}")
        merged[t.name] = gguf.quants.quantize(weight + delta, target_type)
    for t in reader.tensors:
        data = merged.get(t.name, t.data)
        kind = target_type if t.name in merged else t.tensor_type
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(merged.get(t.name, t.data), tensor_endianess=reader.endianess)
    writer.close()
    tmp.replace(out)
    return {"tensors_merged": len(merged), "qtype": qtype, "bytes": out.stat().st_size}


def adapter_fingerprint(adapter_dir: Path) -> str:
    """A short digest of an adapter folder's config and weights (names a merged GGUF)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        p = Path(adapter_dir) / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]
