"""Per-request LoRA adapters on one base: switching, mixed batches, LRU, hot-load, merge, int8."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgnlp.errors import NotFoundError, ValidationError
from models.adapters import merge_and_export
from models.generation import ChatMessage, GenerationParams, LocalGenerator

Q = [ChatMessage("user", "What is the capital of France?")]
P = GenerationParams(max_tokens=8)


def _make_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapter_dir(generator_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    _make_adapter(generator_path, root / "alpha", seed=1)
    _make_adapter(generator_path, root / "beta", seed=2)
    return root


@pytest.fixture(scope="module")
def gen(generator_path: Path, adapter_dir: Path) -> LocalGenerator:
    return LocalGenerator.from_path(generator_path, name="smollm2", adapter_dir=adapter_dir, max_adapters=2)


def test_adapters_are_registered_not_loaded(gen: LocalGenerator) -> None:
    assert gen.adapter_names() == ["alpha", "beta"]


def test_switching_changes_output_and_switching_back_restores(gen: LocalGenerator) -> None:
    base = gen.generate(Q, P).text
    alpha = gen.generate(Q, P, adapter="alpha").text
    beta = gen.generate(Q, P, adapter="beta").text
    assert alpha != base and beta != base and alpha != beta
    assert gen.generate(Q, P).text == base
    assert gen.generate(Q, P, adapter="alpha").text == alpha


def test_mixed_adapter_batch_equals_per_request(gen: LocalGenerator) -> None:
    convs = [Q, [ChatMessage("user", "Name a colour.")], Q]
    adapters: list[str | None] = [None, "alpha", "beta"]
    single = [gen.generate(c, P, adapter=a).text for c, a in zip(convs, adapters, strict=True)]
    batched = [r.text for r in gen.generate_batch(convs, P, adapters)]
    assert batched == single


def test_stream_with_adapter_equals_generate(gen: LocalGenerator) -> None:
    streamed = "".join(gen.stream(Q, P, adapter="beta"))
    assert streamed == gen.generate(Q, P, adapter="beta").text
    assert streamed == gen.generate_batch([Q], P, ["beta"])[0].text  # transformers' own generate


def test_lru_cap_unloads_least_recently_used(gen: LocalGenerator, generator_path: Path, tmp_path: Path) -> None:
    gen.generate(Q, P, adapter="alpha")
    gen.generate(Q, P, adapter="beta")
    assert gen.adapters.loaded() == ["alpha", "beta"]
    gen.adapters.load("gamma", _make_adapter(generator_path, tmp_path / "gamma", seed=3))  # hot-load
    assert gen.adapters.loaded() == ["beta", "gamma"]
    assert "gamma" in gen.adapter_names()
    before = gen.generate(Q, P, adapter="alpha").text  # reloads alpha, evicting beta
    assert gen.adapters.loaded() == ["gamma", "alpha"]
    gen.adapters.unload("alpha")
    assert gen.generate(Q, P, adapter="alpha").text == before


def test_unknown_or_bad_adapter_names(gen: LocalGenerator, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown adapter 'nope'"):
        gen.generate(Q, P, adapter="nope")
    with pytest.raises(ValidationError):
        gen.adapters.register("../evil", tmp_path)
    with pytest.raises(NotFoundError, match="not a peft adapter"):
        gen.adapters.register("empty", tmp_path)


def test_merge_and_export_equals_unmerged(
    gen: LocalGenerator, generator_path: Path, adapter_dir: Path, tmp_path: Path
) -> None:
    merged_dir = merge_and_export(generator_path, adapter_dir / "alpha", tmp_path / "merged")
    merged = LocalGenerator.from_path(merged_dir, name="merged")
    long = GenerationParams(max_tokens=16)
    assert merged.generate(Q, long).text == gen.generate(Q, long, adapter="alpha").text
    assert not (merged_dir / "adapter_config.json").exists()


@pytest.mark.parametrize("quantization", ["int4-weight", "int8-weight", "int8-dynamic"])
def test_quantized_base_takes_adapters(generator_path: Path, adapter_dir: Path, quantization: str) -> None:
    q = LocalGenerator.from_path(generator_path, name="q", quantization=quantization, adapter_dir=adapter_dir)  # type: ignore[arg-type]
    base = q.generate(Q, P).text
    alpha = q.generate(Q, P, adapter="alpha").text
    assert alpha != base
    assert q.generate(Q, P).text == base
    # dynamic int8 scales activations per batch, so batched rows are close to, not equal to, single rows
    assert len(q.generate_batch([Q, Q], P, [None, "alpha"])) == 2


def test_unloading_the_last_adapter_leaves_a_working_base(generator_path: Path, adapter_dir: Path) -> None:
    fresh = LocalGenerator.from_path(generator_path, name="fresh", adapter_dir=adapter_dir)
    base = fresh.generate(Q, P).text
    alpha = fresh.generate(Q, P, adapter="alpha").text
    fresh.adapters.unload("alpha")
    assert not fresh.adapters.wrapped and fresh.adapters.loaded() == []
    assert fresh.generate(Q, P).text == base  # no LoRA layer left behind
    assert fresh.generate_batch([Q], P)[0].text == base
    assert fresh.generate(Q, P, adapter="alpha").text == alpha  # and it loads again


def _broken_copy(good: Path, out: Path, how: str) -> Path:
    import shutil

    shutil.copytree(good, out)
    weights = out / "adapter_model.safetensors"
    if how == "missing weights":
        weights.unlink()
    elif how == "corrupt weights":
        weights.write_bytes(b"\x00" * 64 + weights.read_bytes()[64:])  # a damaged header
    else:  # weights of another rank than the config says: peft injects layers, then fails to fill them
        import json

        cfg = json.loads((out / "adapter_config.json").read_text())
        (out / "adapter_config.json").write_text(json.dumps({**cfg, "r": 8}))
    return out


@pytest.mark.parametrize("how", ["missing weights", "corrupt weights", "wrong shapes"])
def test_a_failed_hot_reload_keeps_the_working_adapter(
    generator_path: Path, adapter_dir: Path, tmp_path: Path, how: str
) -> None:
    """#19 item 8: reloading an adapter from a broken folder fails with a clear error and the
    adapter of that name goes on serving, unchanged (before, it was unloaded first and lost)."""
    fresh = LocalGenerator.from_path(generator_path, name="fresh", adapter_dir=adapter_dir)
    long = GenerationParams(max_tokens=16)
    before = fresh.generate(Q, long, adapter="alpha").text
    with pytest.raises(ValidationError, match=r"adapter_model|could not be loaded"):
        fresh.adapters.load("alpha", _broken_copy(adapter_dir / "alpha", tmp_path / "broken", how))
    assert fresh.generate(Q, long, adapter="alpha").text == before
    assert fresh.generate_batch([Q], long, ["alpha"])[0].text == before
    assert fresh.adapters.loaded() == ["alpha"] and fresh.adapters.available() == ["alpha", "beta"]
    # a good reload swaps the weights in: alpha now answers as beta's weights do
    fresh.adapters.load("alpha", adapter_dir / "beta")
    assert fresh.generate(Q, long, adapter="alpha").text == fresh.generate(Q, long, adapter="beta").text
    fresh.adapters.unload("alpha")
    fresh.adapters.unload("beta")
    assert not fresh.adapters.wrapped  # nothing left behind by the staged loads
