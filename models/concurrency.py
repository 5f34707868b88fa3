"""Admission control for generation: a bounded queue in front of a limited number of decoders.

Requests beyond ``max_concurrent`` wait; beyond ``max_waiting`` they are refused at
once with :class:`~kgnlp.errors.OverloadedError` (the API turns it into 503 +
``Retry-After``). Streams run the blocking generator in a worker thread and stop
decoding when the consumer goes away.

Static batching: with ``max_batch > 1``, a non-streamed greedy request that gets a slot takes
the other waiting requests with the same decoding parameters along (up to ``max_batch``) and
decodes them as one batch (``generate_batch``, adapters may differ). On SmolLM2-135M four
requests batched finish in 0.4–0.55× the time of four in a row (benchmarks/generation.py).

A caller that stops waiting (``asyncio.wait_for`` timing out, a client gone) cancels its job: a
job still waiting for a slot leaves the queue within ``_POLL_S``, a decoding one stops at its
next token (the engines check the job's ``cancel`` event per token). ``decode_timeout_s`` bounds
every decode's wall-clock time (``GenerationParams.max_seconds``): past it the answer ends as
``finish_reason="length"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kgnlp.errors import ConfigurationError, OverloadedError
from models.generation import ChatMessage, GenerationParams, GenerationResult

__all__ = ["GenerationQueue", "GenerationStream"]


@dataclass(eq=False)
class _Job:
    messages: Sequence[ChatMessage]
    params: GenerationParams
    adapter: str | None
    cancel: threading.Event = field(default_factory=threading.Event)  # set: the caller gave up
    result: Future[GenerationResult] = field(default_factory=Future)


_POLL_S = 0.05  # how often a job waiting for a slot looks whether its caller gave up


class GenerationStream:
    """The deltas of one queued stream; ``finish_reason`` is ``"length"`` once it ends cut by
    ``decode_timeout_s`` (None while it runs or when it ended by itself)."""

    def __init__(self) -> None:
        self.deltas: Any = None  # the queue's async generator, set right after construction
        self.finish_reason: str | None = None

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> str:
        delta: str = await self.deltas.__anext__()
        return delta

    async def aclose(self) -> None:
        await self.deltas.aclose()


class GenerationQueue:
    """Async front of a (blocking) generator.

    Args:
        generator: a ``Generator`` (local or remote).
        max_concurrent: decodes running at once (1 for one local model on a small CPU).
        max_waiting: requests allowed to wait for a slot; more are refused.
        timeout_s: a request waiting or running longer than this fails with ``OverloadedError``.
        max_batch: non-streamed greedy requests decoded together at most (1: no batching; needs
            a generator with ``generate_batch``).
        decode_timeout_s: wall-clock limit of one decode, from when it gets its slot; past it the
            answer ends as it is with ``finish_reason="length"`` (None: no limit). A request's own
            ``max_seconds`` wins.
    """

    def __init__(
        self,
        generator: Any,
        max_concurrent: int = 1,
        max_waiting: int = 16,
        timeout_s: float = 120.0,
        max_batch: int = 1,
        decode_timeout_s: float | None = None,
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0 or max_batch < 1 or (decode_timeout_s or 1) <= 0:
            raise ConfigurationError(
                "max_concurrent and max_batch must be >= 1, max_waiting >= 0 and decode_timeout_s > 0, "
                f"got {max_concurrent}, {max_batch}, {max_waiting}, {decode_timeout_s}"
            )
        self.decode_timeout_s = decode_timeout_s
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

    def _acquire(self, deadline: float, cancel: threading.Event) -> None:
        """Take a slot; give up at ``deadline`` or, within ``_POLL_S``, once ``cancel`` is set."""
        ok = False
        while not ok and not cancel.is_set() and (left := deadline - time.monotonic()) > 0:
            ok = self._slots.acquire(timeout=min(left, _POLL_S))
        with self._state:
            self.waiting -= 1
            if ok:
                self.running += 1
        if not ok:
            reason = "the caller gave up" if cancel.is_set() else "timed out"
            raise OverloadedError(f"{reason} waiting for a free generation slot", retry_after=5.0)

    def _bounded(self, params: GenerationParams) -> GenerationParams:
        if params.max_seconds is None and self.decode_timeout_s is not None:
            return dataclasses.replace(params, max_seconds=self.decode_timeout_s)
        return params

    def _release(self, tokens: int, started: float) -> None:
        with self._state:
            self.running -= 1
            self.completed_tokens += tokens
            self.busy_seconds += time.monotonic() - started
        self._slots.release()

    async def generate(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> GenerationResult:
        """Queue one request and return its result (or raise ``OverloadedError``).

        Cancelling the awaiting task (``asyncio.wait_for`` timing out) cancels the job: it leaves
        the queue, or its decode stops at the next token.
        """
        self._admit()
        deadline = time.monotonic() + self.timeout_s
        job = _Job(messages, self._bounded(params), adapter)
        try:
            if self.max_batch > 1 and params.temperature == 0 and not params.citation_bias:
                return await asyncio.to_thread(self._batched, job, deadline)
            return await asyncio.to_thread(self._single, job, deadline)
        finally:
            job.cancel.set()  # a no-op once the job is done; stops it when the caller left early

    def _single(self, job: _Job, deadline: float) -> GenerationResult:
        self._acquire(deadline, job.cancel)
        started = time.monotonic()
        result: GenerationResult | None = None
        try:
            result = self.generator.generate(job.messages, job.params, adapter=job.adapter, cancel=job.cancel)
            return result
        finally:
            self._release(result.completion_tokens if result else 0, started)

    def _batched(self, job: _Job, deadline: float) -> GenerationResult:
        with self._state:
            self._pending.append(job)
        try:
            self._acquire(deadline, job.cancel)
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
            results = self.generator.generate_batch(
                [j.messages for j in batch], job.params, [j.adapter for j in batch], cancels=[j.cancel for j in batch]
            )
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
    ) -> GenerationStream:
        """Admit now (raising ``OverloadedError`` before any response is sent), then yield deltas.

        Cancelling or closing the returned iterator stops the decode and frees the slot.
        """
        self._admit()
        handle = GenerationStream()
        handle.deltas = self._stream(messages, self._bounded(params), adapter, handle)
        return handle

    async def _stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None,
        handle: GenerationStream,
    ) -> AsyncIterator[str]:  # fmt: skip
        deadline = time.monotonic() + self.timeout_s
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                self._acquire(deadline, stop)
            except BaseException as e:
                loop.call_soon_threadsafe(out.put_nowait, ("error", e))
                return
            started, count = time.monotonic(), 0
            it = self.generator.stream(messages, params, adapter=adapter, cancel=stop)
            try:
                for delta in it:
                    count += 1
                    loop.call_soon_threadsafe(out.put_nowait, ("delta", delta))
                    if stop.is_set():
                        break
                # the engines end a decode at max_seconds without saying so; the clock tells
                cut = params.max_seconds is not None and time.monotonic() - started >= params.max_seconds
                loop.call_soon_threadsafe(out.put_nowait, ("done", "length" if cut else None))
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
                    handle.finish_reason = value
                    return
        finally:
            stop.set()
            await asyncio.shield(worker)
