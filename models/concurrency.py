"""Admission control for generation: a bounded queue in front of a limited number of decoders.

Requests beyond ``max_concurrent`` wait; beyond ``max_waiting`` they are refused at
once with :class:`~kgnlp.errors.OverloadedError` (the API turns it into 503 +
``Retry-After``). Streams run the blocking generator in a worker thread and stop
decoding when the consumer goes away.

Static batching: with ``max_batch > 1``, a non-streamed greedy request that gets a slot takes
the other waiting requests with the same decoding parameters along (up to ``max_batch``) and
decodes them as one batch (``generate_batch``, adapters may differ). On SmolLM2-135M four
requests batched finish in 0.4–0.55× the time of four in a row (benchmarks/generation.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kgnlp.errors import ConfigurationError, OverloadedError
from models.generation import ChatMessage, GenerationParams, GenerationResult

__all__ = ["GenerationQueue"]


@dataclass(eq=False)
class _Job:
    messages: Sequence[ChatMessage]
    params: GenerationParams
    adapter: str | None
    result: Future[GenerationResult] = field(default_factory=Future)


class GenerationQueue:
    """Async front of a (blocking) generator.

    Args:
        generator: a ``Generator`` (local or remote).
        max_concurrent: decodes running at once (1 for one local model on a small CPU).
        max_waiting: requests allowed to wait for a slot; more are refused.
        timeout_s: a request waiting or running longer than this fails with ``OverloadedError``.
        max_batch: non-streamed greedy requests decoded together at most (1: no batching; needs
            a generator with ``generate_batch``).
    """

    def __init__(
        self,
        generator: Any,
        max_concurrent: int = 1,
        max_waiting: int = 16,
        timeout_s: float = 120.0,
        max_batch: int = 1,
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0 or max_batch < 1:
            raise ConfigurationError(
                "max_concurrent and max_batch must be >= 1 and max_waiting >= 0, "
                f"got {max_concurrent}, {max_batch}, {max_waiting}"
            )
        self.max_batch = max_batch if hasattr(generator, "generate_batch") else 1
        self._pending: list[_Job] = []  # batchable jobs not yet taken by a decode
        self.batches = 0  # decodes that served more than one request
        self.generator = generator
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._state = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.completed_tokens = 0
        self.busy_seconds = 0.0

    @property
    def depth(self) -> int:
        """Requests waiting or running."""
        return self.waiting + self.running

    def _admit(self) -> None:
        with self._state:
            if self.running >= self.max_concurrent and self.waiting >= self.max_waiting:
                raise OverloadedError(
                    f"generation queue is full ({self.running} running, {self.waiting} waiting); retry later",
                    retry_after=2.0,
                )
            self.waiting += 1

    def _acquire(self, deadline: float) -> None:
        ok = self._slots.acquire(timeout=max(0.0, deadline - time.monotonic()))
        with self._state:
            self.waiting -= 1
            if ok:
                self.running += 1
        if not ok:
            raise OverloadedError("timed out waiting for a free generation slot", retry_after=5.0)

    def _release(self, tokens: int, started: float) -> None:
        with self._state:
            self.running -= 1
            self.completed_tokens += tokens
            self.busy_seconds += time.monotonic() - started
        self._slots.release()

    async def generate(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> GenerationResult:
        """Queue one request and return its result (or raise ``OverloadedError``)."""
        self._admit()
        deadline = time.monotonic() + self.timeout_s
        if self.max_batch > 1 and params.temperature == 0 and not params.citation_bias:
            return await asyncio.to_thread(self._batched, _Job(messages, params, adapter), deadline)

        def work() -> GenerationResult:
            self._acquire(deadline)
            started = time.monotonic()
            result: GenerationResult | None = None
            try:
                result = self.generator.generate(messages, params, adapter=adapter)
                return result
            finally:
                self._release(result.completion_tokens if result else 0, started)

        return await asyncio.to_thread(work)

    def _batched(self, job: _Job, deadline: float) -> GenerationResult:
        with self._state:
            self._pending.append(job)
        try:
            self._acquire(deadline)
        except OverloadedError:
            with self._state:
                if job in self._pending:  # nobody took it: give up
                    self._pending.remove(job)
                    raise
            return job.result.result()  # a decode took it along: its result is coming
        started = time.monotonic()
        with self._state:
            taken = job in self._pending
            if taken:  # lead a batch: this job, then the oldest waiting ones with the same params
                batch = [job, *[j for j in self._pending if j is not job and j.params == job.params]]
                batch = batch[: self.max_batch]
                for j in batch:
                    self._pending.remove(j)
        if not taken:  # an earlier decode took it along: free the slot, wait for the result
            self._release(0, started)
            return job.result.result()
        tokens = 0
        try:
            results = self.generator.generate_batch([j.messages for j in batch], job.params, [j.adapter for j in batch])
        except BaseException as e:
            for j in batch:
                j.result.set_exception(e)
        else:
            for j, r in zip(batch, results, strict=True):
                j.result.set_result(r)
                tokens += r.completion_tokens
            with self._state:
                self.batches += len(batch) > 1
        finally:
            self._release(tokens, started)
        return job.result.result()

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[str]:
        """Admit now (raising ``OverloadedError`` before any response is sent), then yield deltas.

        Cancelling or closing the returned iterator stops the decode and frees the slot.
        """
        self._admit()
        return self._stream(messages, params, adapter)

    async def _stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None
    ) -> AsyncIterator[str]:
        deadline = time.monotonic() + self.timeout_s
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                self._acquire(deadline)
            except BaseException as e:
                loop.call_soon_threadsafe(out.put_nowait, ("error", e))
                return
            started, count = time.monotonic(), 0
            it = self.generator.stream(messages, params, adapter=adapter)
            try:
                for delta in it:
                    count += 1
                    loop.call_soon_threadsafe(out.put_nowait, ("delta", delta))
                    if stop.is_set():
                        break
                loop.call_soon_threadsafe(out.put_nowait, ("done", None))
            except BaseException as e:
                loop.call_soon_threadsafe(out.put_nowait, ("error", e))
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                self._release(count, started)

        worker = asyncio.get_running_loop().run_in_executor(None, work)
        try:
            while True:
                kind, value = await out.get()
                if kind == "delta":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            stop.set()
            await asyncio.shield(worker)
