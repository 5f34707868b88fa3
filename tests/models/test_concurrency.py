"""Admission control logic (a slow fake generator stands in for the model), and cancellation and
the decode deadline on the real torch model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kgnlp.errors import OverloadedError
from models.concurrency import GenerationQueue
from models.generation import ChatMessage, GenerationParams, GenerationResult

P = GenerationParams(max_tokens=4)
Q = [ChatMessage("user", "hi")]


class SlowGenerator:
    name = "slow"

    def __init__(self, delay: float = 0.2) -> None:
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.stopped_early = threading.Event()
        self._lock = threading.Lock()

    def generate(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:  # fmt: skip
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        return GenerationResult("done", "stop", 1, 2)

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:  # fmt: skip
        try:
            for i in range(100):
                time.sleep(self.delay / 10)
                yield f"t{i} "
        finally:
            self.stopped_early.set()


def test_concurrency_is_bounded_and_excess_is_refused() -> None:
    gen = SlowGenerator()
    queue = GenerationQueue(gen, max_concurrent=2, max_waiting=2)

    async def main() -> list[object]:
        return await asyncio.gather(*(queue.generate(Q, P) for _ in range(6)), return_exceptions=True)

    results = asyncio.run(main())
    refused = [r for r in results if isinstance(r, OverloadedError)]
    done = [r for r in results if isinstance(r, GenerationResult)]
    assert len(done) == 4 and len(refused) == 2
    assert gen.peak == 2 and queue.depth == 0 and queue.completed_tokens == 8
    assert refused[0].retry_after > 0


def test_wait_timeout_raises_overloaded() -> None:
    queue = GenerationQueue(SlowGenerator(delay=0.5), max_concurrent=1, max_waiting=5, timeout_s=0.1)

    async def main() -> list[object]:
        return await asyncio.gather(queue.generate(Q, P), queue.generate(Q, P), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], GenerationResult)
    assert isinstance(results[1], OverloadedError) and "timed out" in str(results[1])


def test_closing_a_stream_stops_the_generator_and_frees_the_slot() -> None:
    gen = SlowGenerator()
    queue = GenerationQueue(gen, max_concurrent=1, max_waiting=0)

    async def main() -> list[str]:
        got = []
        stream = queue.stream(Q, P)
        async for delta in stream:
            got.append(delta)
            if len(got) == 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    assert asyncio.run(main()) == ["t0 ", "t1 ", "t2 "]
    assert gen.stopped_early.wait(2) and queue.depth == 0


def test_invalid_configuration() -> None:
    from kgnlp.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_concurrent"):
        GenerationQueue(SlowGenerator(), max_concurrent=0)


class BatchingGenerator(SlowGenerator):
    """Records the size of each decode; one decode takes ``delay`` whatever its size."""

    def __init__(self, delay: float = 0.3) -> None:
        super().__init__(delay)
        self.decodes: list[list[str | None]] = []

    def generate_batch(
        self, conversations: Sequence[Sequence[ChatMessage]], params: GenerationParams, adapters: Sequence[str | None],
        cancels: object = None,
    ) -> list[GenerationResult]:  # fmt: skip
        self.decodes.append(list(adapters))
        time.sleep(self.delay)
        pairs = zip(conversations, adapters, strict=True)
        return [GenerationResult(f"{c[-1].content}:{a}", "stop", 1, 2) for c, a in pairs]


def test_waiting_greedy_requests_share_one_decode_and_keep_their_own_answers() -> None:
    gen = BatchingGenerator()
    queue = GenerationQueue(gen, max_concurrent=1, max_waiting=16, max_batch=4)
    other = GenerationParams(max_tokens=9)
    sampled = GenerationParams(max_tokens=4, temperature=0.7)

    async def main() -> list[GenerationResult]:
        jobs = [queue.generate([ChatMessage("user", f"q{i}")], P, adapter=f"a{i % 2}") for i in range(6)]
        jobs.append(queue.generate([ChatMessage("user", "odd")], other))
        jobs.append(queue.generate([ChatMessage("user", "hot")], sampled))  # sampling: never batched
        return await asyncio.gather(*jobs)

    results = asyncio.run(main())
    assert [r.text for r in results[:6]] == [f"q{i}:a{i % 2}" for i in range(6)]
    assert results[6].text == "odd:None" and results[7].text == "done"
    sizes = sorted(len(d) for d in gen.decodes)
    assert sizes[-1] == 4 and sum(sizes) == 7  # six same-params requests in ≤ 4-row batches + the odd one
    assert queue.batches >= 1 and queue.depth == 0


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    class Broken(BatchingGenerator):
        def generate_batch(self, *args: object, **kwargs: object) -> list[GenerationResult]:
            time.sleep(0.1)
            raise RuntimeError("decoder crashed")

    queue = GenerationQueue(Broken(), max_concurrent=1, max_waiting=8, max_batch=4)

    async def main() -> list[object]:
        return await asyncio.gather(*(queue.generate(Q, P) for _ in range(3)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "crashed" in str(r) for r in results)
    assert queue.depth == 0


def test_the_real_torch_generator_batches_waiting_requests_with_mixed_adapters(
    generator_path: Path, tmp_path: Path
) -> None:
    """Three requests (two adapters) that wait for the slot are decoded as one batch on the torch
    engine, and each gets the answer it gets alone."""
    from models.generation import LocalGenerator
    from tests.models.test_adapters import _make_adapter

    _make_adapter(generator_path, tmp_path / "alpha", seed=1)
    gen = LocalGenerator.from_path(generator_path, name="q", adapter_dir=tmp_path)
    queue = GenerationQueue(gen, max_concurrent=1, max_waiting=8, max_batch=4)
    asks = [(None, "What is the capital of France?"), ("alpha", "What is the capital of France?"),
            (None, "Name a primary colour.")]  # fmt: skip
    params = GenerationParams(max_tokens=12)

    async def one(adapter: str | None, text: str) -> str:
        return (await queue.generate([ChatMessage("user", text)], params, adapter=adapter)).text

    async def together() -> list[str]:
        queue._slots.acquire()  # hold the only slot so that all three queue up, then release it
        jobs = [asyncio.ensure_future(one(a, t)) for a, t in asks]
        while len(queue._pending) < 3:
            await asyncio.sleep(0.02)
        queue._slots.release()
        return list(await asyncio.gather(*jobs))

    alone = [asyncio.run(one(a, t)) for a, t in asks]
    assert asyncio.run(together()) == alone and queue.batches == 1


LONG = [ChatMessage("user", "Count from 1 to 500, one number per line.")]  # greedy: 122 tokens, then EOS


@pytest.mark.parametrize("max_batch", [1, 4])
def test_a_caller_that_times_out_stops_its_decode_and_leaves_the_queue(local_generator: Any, max_batch: int) -> None:
    """#19 item 7, on the real torch model: two callers (one decoding, one waiting) give up after
    1 s; the decode stops at its next token, the waiting job leaves, and the next request is
    served at once. Before, both decoded their whole answer (~120 tokens each) for nobody."""
    queue = GenerationQueue(local_generator, max_concurrent=1, max_waiting=4, max_batch=max_batch)
    long = GenerationParams(max_tokens=300)

    async def main() -> tuple[float, str]:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.gather(queue.generate(LONG, long), queue.generate(LONG, long)), 1.0)
        gave_up = time.monotonic()
        while queue.depth and time.monotonic() - gave_up < 60:
            await asyncio.sleep(0.01)
        freed = time.monotonic() - gave_up
        answer = await asyncio.wait_for(queue.generate(Q, GenerationParams(max_tokens=2)), 30)
        return freed, answer.text

    freed, text = asyncio.run(main())
    assert freed < 3.0, f"the queue was busy {freed:.1f} s after its callers left"
    assert queue.completed_tokens < 60, f"{queue.completed_tokens} tokens decoded for callers that had left"
    assert text and queue.depth == 0


def test_the_decode_deadline_ends_an_answer_as_length(local_generator: Any) -> None:
    """#19 item 3: ``decode_timeout_s`` bounds a decode (non-streamed and streamed); the answer
    so far comes back with finish_reason "length"."""
    queue = GenerationQueue(local_generator, max_concurrent=1, max_waiting=4, decode_timeout_s=0.5)
    params = GenerationParams(max_tokens=300)

    async def main() -> tuple[Any, float, str | None, float]:
        t0 = time.monotonic()
        result = await queue.generate(LONG, params)
        took = time.monotonic() - t0
        t0 = time.monotonic()
        stream = queue.stream(LONG, params)
        _ = [d async for d in stream]
        return result, took, stream.finish_reason, time.monotonic() - t0

    result, took, streamed_finish, streamed_took = asyncio.run(main())
    assert result.finish_reason == "length" and result.completion_tokens < 60, result
    assert took < 5.0 and streamed_took < 5.0, (took, streamed_took)
    assert streamed_finish == "length"
