"""Weight-only int8 / int4 linear layers on torch's packed CPU kernels (the gpt-fast recipe).

Decoding one token at a time reads every weight once per token, so a small LM on a CPU is
bound by memory traffic: 4-bit weights move an eighth of the fp32 bytes. Activations stay in
bfloat16 (this CPU has AVX512-BF16), which keeps quality: on SmolLM2-135M perplexity moves by
< 1 % (benchmarks/generation.py). torchao 0.18 was the earlier ``int8-weight``: its CPU path
dequantizes per call and ran slower than fp32 (8.8 vs 14–16 tok/s in benchmarks/generation.py,
session 1), and it offers no CPU int4 layout, so these layers call
``aten._weight_int8pack_mm`` / ``aten._weight_int4pack_mm_for_cpu`` directly.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from kgnlp.errors import ConfigurationError

__all__ = ["Int4WeightOnlyLinear", "Int8WeightOnlyLinear", "quantize_weight_only"]

# int4 rounding error is worst on the output projection (tied to the embeddings: every logit
# goes through it), so it keeps int8 by default; it is a fifth of SmolLM2's weights.
KEEP_INT8 = ("lm_head",)
# A prompt (many rows at once) is compute-bound: there a bf16 GEMM beats the packed kernels
# (about 2× in a one-off probe on a 300-token SmolLM2 prompt), so layers keep a bf16
# copy for calls with at least this many rows. Weights then take 2.5 (int4) or 3 (int8) bytes per
# parameter: still less than fp32's 4, and decoding reads only the packed ones.
DENSE_FROM_ROWS = 16
# Per group, the scale is picked among these shrunken ranges to minimise the rounding error
# (clipping a few outliers lowers the error of all other weights; cheap, done once at load).
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8)


class _WeightOnlyLinear(nn.Module):
    """Shared by both widths: bf16 bias and prompt copy, and the choice of path per call."""

    def __init__(self, linear: nn.Linear, dense_prompts: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dense = linear.weight.detach().to(torch.bfloat16) if dense_prompts else None
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), False)

    def packed_mm(self, flat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        if self.dense is not None and flat.shape[0] >= DENSE_FROM_ROWS:
            y = nn.functional.linear(flat, self.dense)
        else:
            y = self.packed_mm(flat)
        y = y.reshape(*shape[:-1], self.out_features)
        return (y if self.bias is None else y + self.bias).to(x.dtype)


class Int8WeightOnlyLinear(_WeightOnlyLinear):
    """``y = x @ (q * scale).T + b`` with per-output-channel symmetric int8 ``q``."""

    def __init__(self, linear: nn.Linear, dense_prompts: bool = True) -> None:
        super().__init__(linear, dense_prompts)
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def packed_mm(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scale)


class Int4WeightOnlyLinear(_WeightOnlyLinear):
    """Group-wise asymmetric 4-bit weights (``group_size`` inputs share a scale and a zero point)."""

    def __init__(self, linear: nn.Linear, group_size: int = 32, dense_prompts: bool = True) -> None:
        k = linear.in_features
        if k % group_size:
            raise ConfigurationError(f"int4: in_features {k} is not a multiple of group_size {group_size}")
        super().__init__(linear, dense_prompts)
        self.group_size = group_size
        q, scale, zero = _int4_groups(linear.weight.detach().float(), group_size)
        self.register_buffer("weight_int4", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        # the kernel takes [groups, n, 2] (scale, zero) with w = (q - 8) * scale + zero
        scales_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("scales_zeros", scales_zeros.to(torch.bfloat16))

    def packed_mm(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight_int4, self.group_size, self.scales_zeros)


def _int4_groups(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize ``w`` [n, k] to 0..15 per group; returns (q [n, k] int32, scale [n, g], zero [n, g])."""
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    lo_full, hi_full = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    mid = (lo_full + hi_full) / 2
    best_err = torch.full(mid.shape, float("inf"))
    best_lo, best_scale = lo_full, (hi_full - lo_full).clamp(min=1e-8) / 15
    for ratio in CLIP_RATIOS:
        lo, hi = mid + (lo_full - mid) * ratio, mid + (hi_full - mid) * ratio
        scale = (hi - lo).clamp(min=1e-8) / 15
        q = torch.clamp(torch.round((groups - lo) / scale), 0, 15)
        err = ((q * scale + lo - groups) ** 2).sum(-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo, best_scale = torch.where(better, lo, best_lo), torch.where(better, scale, best_scale)
    q = torch.clamp(torch.round((groups - best_lo) / best_scale), 0, 15).to(torch.int32).reshape(n, k)
    zero = best_lo + 8 * best_scale  # the kernel centres q on 8
    return q, best_scale.squeeze(-1), zero.squeeze(-1)


def quantize_weight_only(
    model: Any,
    bits: Literal[4, 8],
    group_size: int = 32,
    keep_int8: tuple[str, ...] = KEEP_INT8,
    dense_prompts: bool = True,
) -> Any:
    """Cast ``model`` to bfloat16 and swap its base ``nn.Linear`` layers for weight-only ones.

    LoRA layers (``lora_``) stay in bfloat16 so adapters keep their exact weights. With
    ``bits=4``, layers whose name ends with one of ``keep_int8`` (and any whose width is not a
    multiple of ``group_size``) get int8 instead. ``dense_prompts`` keeps a bf16 copy of each
    weight for prompts (see ``DENSE_FROM_ROWS``); without it, layers hold only the packed weights.
    """
    model.to(torch.bfloat16)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and "lora_" not in name
    ]
    for name, linear in targets:
        four = bits == 4 and not name.endswith(keep_int8) and linear.in_features % group_size == 0
        new = (
            Int4WeightOnlyLinear(linear, group_size, dense_prompts)
            if four
            else Int8WeightOnlyLinear(linear, dense_prompts)
        )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model
