"""The local generator on the real SmolLM2 weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgnlp.errors import KgnlpError
from models.generation import ChatMessage, GenerationParams, LocalGenerator

QUESTION = [ChatMessage("user", "What is the capital of France?")]


def test_greedy_answer_is_correct(local_generator: LocalGenerator) -> None:
    result = local_generator.generate(QUESTION, GenerationParams(max_tokens=16))
    assert "Paris" in result.text
    assert result.prompt_tokens > 5 and 0 < result.completion_tokens <= 16


def test_stream_concatenation_equals_generate(local_generator: LocalGenerator) -> None:
    params = GenerationParams(max_tokens=24)
    deltas = list(local_generator.stream(QUESTION, params))
    assert len(deltas) > 1
    assert "".join(deltas) == local_generator.generate(QUESTION, params).text


def test_stop_sequence_cuts_output_in_both_modes(local_generator: LocalGenerator) -> None:
    full = local_generator.generate(QUESTION, GenerationParams(max_tokens=16)).text
    assert " is " in full
    params = GenerationParams(max_tokens=16, stop=(" is ",))
    cut = local_generator.generate(QUESTION, params)
    assert cut.text == full[: full.index(" is ")] and cut.finish_reason == "stop"
    assert "".join(local_generator.stream(QUESTION, params)) == cut.text


def test_closing_a_stream_early_releases_the_model(local_generator: LocalGenerator) -> None:
    stream = local_generator.stream(QUESTION, GenerationParams(max_tokens=200))
    next(stream)
    stream.close()
    assert "Paris" in local_generator.generate(QUESTION, GenerationParams(max_tokens=16)).text


def test_a_second_call_during_an_open_stream_in_the_same_thread_fails_instead_of_hanging(
    local_generator: LocalGenerator,
) -> None:
    stream = local_generator.stream(QUESTION, GenerationParams(max_tokens=50))
    next(stream)
    with pytest.raises(KgnlpError, match="unfinished stream"):
        local_generator.generate(QUESTION, GenerationParams(max_tokens=4))
    stream.close()
    assert local_generator.generate(QUESTION, GenerationParams(max_tokens=4)).completion_tokens > 0


def test_seeded_sampling_is_reproducible(local_generator: LocalGenerator) -> None:
    params = GenerationParams(max_tokens=12, temperature=0.9, seed=7)
    assert local_generator.generate(QUESTION, params).text == local_generator.generate(QUESTION, params).text


def test_decode_loop_matches_transformers_generate(local_generator: LocalGenerator) -> None:
    # generate()/stream() run our own decode loop; generate_batch() is transformers' generate
    for params in (GenerationParams(max_tokens=24), GenerationParams(max_tokens=16, stop=(" is ",))):
        ours = local_generator.generate(QUESTION, params)
        reference = local_generator.generate_batch([QUESTION], params)[0]
        assert ours == reference


def test_seeded_sampling_is_the_same_streamed_and_differs_by_seed(local_generator: LocalGenerator) -> None:
    params = GenerationParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=3)
    sampled = local_generator.generate(QUESTION, params).text
    assert "".join(local_generator.stream(QUESTION, params)) == sampled
    others = {
        local_generator.generate(QUESTION, GenerationParams(max_tokens=16, temperature=1.0, seed=s)).text
        for s in range(4)
    }
    assert len(others) > 1  # sampling really samples


def test_int8_dynamic_model_loads_and_generates(generator_path: Path) -> None:
    gen = LocalGenerator.from_path(generator_path, name="q", quantization="int8-dynamic")
    assert gen.generate(QUESTION, GenerationParams(max_tokens=8)).completion_tokens > 0
