"""The local generator on the real SmolLM2 weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


LONG = [ChatMessage("user", "Count from 1 to 500, one number per line.")]  # greedy: 122 tokens, then EOS


def test_a_prompt_over_the_context_is_refused_as_on_llama_cpp(local_generator: LocalGenerator) -> None:
    """#19 item 3: the torch engine refuses prompt + max_tokens over its context with the same
    ValidationError (422) as the llama.cpp engine, in every entry point, before decoding."""
    from kgnlp.errors import ValidationError

    gen = LocalGenerator(local_generator.model, local_generator.tokenizer, "small", context_tokens=512)
    assert gen.n_ctx == 512 and local_generator.n_ctx == 8192  # SmolLM2's positions cap the default
    long, params = [ChatMessage("user", "word " * 600)], GenerationParams(max_tokens=16)
    for call in (gen.check_fits, gen.generate, lambda m, p: list(gen.stream(m, p)),
                 lambda m, p: gen.generate_batch([QUESTION, m], p)):  # fmt: skip
        with pytest.raises(ValidationError, match=r"prompt of 6.. tokens \+ max_tokens 16 exceeds the context of 512"):
            call(long, params)
    with pytest.raises(ValidationError, match="max_tokens 500 exceeds the context of 512"):
        gen.generate(QUESTION, GenerationParams(max_tokens=500))
    assert gen.generate(QUESTION, GenerationParams(max_tokens=4)).completion_tokens == 4


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_or_deadline_stops_the_decode_at_the_next_token(local_generator: LocalGenerator, how: str) -> None:
    """#19 items 3 and 7: a set cancel event or ``max_seconds`` ends the decode loop (single and
    batched) within a token or two; the answer so far is returned as "length"."""
    import threading
    import time

    def run(call: Any) -> tuple[Any, float]:
        cancel = threading.Event()
        timer = threading.Timer(0.5, cancel.set)
        timer.start()
        t0 = time.monotonic()
        try:
            return call(cancel), time.monotonic() - t0
        finally:
            timer.cancel()

    params = GenerationParams(max_tokens=300, max_seconds=0.5 if how == "deadline" else None)
    pick = (lambda c: c) if how == "cancel" else (lambda c: None)
    single, took = run(lambda c: local_generator.generate(LONG, params, cancel=pick(c)))
    assert single.finish_reason == "length" and single.completion_tokens < 40 and took < 5, (single, took)
    streamed, took = run(lambda c: "".join(local_generator.stream(LONG, params, cancel=pick(c))))
    assert local_generator.count_tokens(streamed) < 40 and took < 5, (streamed, took)
    batch, took = run(lambda c: local_generator.generate_batch([LONG, LONG], params, cancels=[pick(c), pick(c)]))
    assert [r.finish_reason for r in batch] == ["length", "length"] and took < 5, (batch, took)
    assert all(r.completion_tokens < 40 for r in batch)
