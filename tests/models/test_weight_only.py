"""Weight-only int8 / int4 layers on torch's packed CPU kernels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.generation import ChatMessage, GenerationParams, LocalGenerator
from models.weight_only import Int4WeightOnlyLinear, Int8WeightOnlyLinear, _int4_groups, quantize_weight_only
from tests.models.test_adapters import _make_adapter

TEXT = (
    "The shop opens at nine in the morning and closes at six in the evening. Customers who ordered "
    "online can collect their parcels at the service desk near the entrance."
)


def _relative_error(layer: torch.nn.Module, linear: torch.nn.Linear) -> float:
    x = torch.randn(2, 7, linear.in_features)
    with torch.no_grad():
        ref = linear(x)
        out = layer(x)
    assert out.shape == ref.shape and out.dtype == x.dtype
    return float((out - ref).norm() / ref.norm())


def test_int8_layer_matches_the_float_layer_closely() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    assert _relative_error(Int8WeightOnlyLinear(linear), linear) < 0.01


def test_int4_layer_is_close_and_clipping_beats_plain_min_max() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 64, bias=False)
    err = _relative_error(Int4WeightOnlyLinear(linear, group_size=32), linear)
    assert err < 0.08
    # the searched range never does worse than the plain min..max range (ratio 1.0 is a candidate)
    w = torch.randn(16, 64) * torch.linspace(0.1, 3, 64)
    q, scale, zero = _int4_groups(w, 32)
    dq = ((q.reshape(16, 2, 32) - 8) * scale[..., None] + zero[..., None]).reshape(16, 64)
    groups = w.reshape(16, 2, 32)
    lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    s = (hi - lo) / 15
    plain = (torch.round((groups - lo) / s) * s + lo).reshape(16, 64)
    assert ((dq - w) ** 2).sum() <= ((plain - w) ** 2).sum() + 1e-6
    assert int(q.min()) >= 0 and int(q.max()) <= 15


@pytest.mark.parametrize("layer_type", [Int8WeightOnlyLinear, Int4WeightOnlyLinear])
def test_prompts_use_the_bf16_copy_and_decoding_the_packed_weights(layer_type: type) -> None:
    from models.weight_only import DENSE_FROM_ROWS

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    layer, packed_only = layer_type(linear), layer_type(linear, dense_prompts=False)
    prompt = torch.randn(DENSE_FROM_ROWS, 64)
    bf16 = (torch.nn.functional.linear(prompt.bfloat16(), linear.weight.bfloat16()) + linear.bias.bfloat16()).float()
    with torch.no_grad():
        assert torch.equal(layer(prompt), bf16)
        assert not torch.equal(packed_only(prompt), bf16) and packed_only.dense is None
        # one decoding row goes through the packed kernel in both
        assert torch.equal(layer(prompt[:1]), packed_only(prompt[:1]))
        assert torch.allclose(layer(prompt[:1]), packed_only(prompt)[:1], atol=1e-2)


def test_int4_rejects_a_width_that_is_not_a_multiple_of_the_group() -> None:
    from kgnlp.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="multiple of group_size"):
        Int4WeightOnlyLinear(torch.nn.Linear(40, 8), group_size=32)


def test_quantize_swaps_base_layers_but_keeps_lm_head_int8_and_lora_float() -> None:
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(64, 64))
    model.add_module("lora_A", torch.nn.Linear(64, 4))
    model.add_module("odd", torch.nn.Linear(40, 8))
    model.add_module("lm_head", torch.nn.Linear(64, 100))
    quantize_weight_only(model, bits=4)
    assert isinstance(model.proj, Int4WeightOnlyLinear)
    assert isinstance(model.odd, Int8WeightOnlyLinear)  # 40 is not a multiple of 32
    assert isinstance(model.lm_head, Int8WeightOnlyLinear)
    assert type(model.lora_A) is torch.nn.Linear and model.lora_A.weight.dtype == torch.bfloat16


def _perplexity(gen: LocalGenerator) -> float:
    ids = gen.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return math.exp(float(gen.model(input_ids=ids, labels=ids).loss))


@pytest.mark.parametrize("quantization", ["int8-weight", "int4-weight"])
def test_weight_only_smollm_keeps_perplexity_and_the_answer(
    generator_path: Path, local_generator: LocalGenerator, quantization: str
) -> None:
    gen = LocalGenerator.from_path(generator_path, name="q", quantization=quantization)  # type: ignore[arg-type]
    question = [ChatMessage("user", "What is the capital of France?")]
    assert "Paris" in gen.generate(question, GenerationParams(max_tokens=12)).text
    fp32 = _perplexity(local_generator)
    assert _perplexity(gen) < fp32 * 1.05
    n_int4 = sum(isinstance(m, Int4WeightOnlyLinear) for m in gen.model.modules())
    assert (n_int4 > 100) == (quantization == "int4-weight")


def test_bitsandbytes_schemes_say_they_need_cuda(generator_path: Path) -> None:
    from kgnlp.errors import ConfigurationError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: test_bitsandbytes_4bit_generates_with_adapters covers it")
    with pytest.raises(ConfigurationError, match="bnb-4bit needs a CUDA GPU; on a CPU use int4-weight"):
        LocalGenerator.from_path(generator_path, name="q", quantization="bnb-4bit")


@pytest.mark.gpu
@pytest.mark.parametrize("quantization", ["bnb-4bit", "bnb-8bit"])
def test_bitsandbytes_generates_with_adapters(generator_path: Path, tmp_path: Path, quantization: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _make_adapter(generator_path, tmp_path / "alpha", seed=1)
    gen = LocalGenerator.from_path(generator_path, name="q", quantization=quantization, adapter_dir=tmp_path)  # type: ignore[arg-type]
    assert gen.model.device.type == "cuda"
    question = [ChatMessage("user", "What is the capital of France?")]
    params = GenerationParams(max_tokens=12)
    base = gen.generate(question, params).text
    assert "Paris" in base
    assert gen.generate(question, params, adapter="alpha").text != base
    assert "".join(gen.stream(question, params)) == base
