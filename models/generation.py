"""Text generation: the ``Generator`` protocol and its local transformers backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from models.loading import Quantization, load_causal_lm

__all__ = ["ChatMessage", "GenerationParams", "GenerationResult", "Generator", "LocalGenerator"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters. ``temperature == 0`` means greedy."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class Generator(Protocol):
    """Anything that turns chat messages into text."""

    name: str

    def generate(self, messages: Sequence[ChatMessage], params: GenerationParams = ...) -> GenerationResult: ...

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams = ...) -> Iterator[str]: ...


@dataclass
class LocalGenerator:
    """A transformers causal LM in this process.

    Args:
        model: a loaded ``PreTrainedModel`` in eval mode.
        tokenizer: its tokenizer (with a chat template).
        name: the name the API reports.
        quantization: how the weights were quantized (reported by ``/health/ready``).
    """

    model: Any
    tokenizer: Any
    name: str
    quantization: Quantization = "none"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_path(cls, path: Path, name: str, quantization: Quantization = "none") -> LocalGenerator:
        model, tokenizer = load_causal_lm(path, quantization=quantization)
        return cls(model=model, tokenizer=tokenizer, name=name, quantization=quantization)

    def _inputs(self, messages: Sequence[ChatMessage]) -> Any:
        return self.tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )

    def _generate_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kwargs

    def generate(
        self, messages: Sequence[ChatMessage], params: GenerationParams = GenerationParams()
    ) -> GenerationResult:
        """Generate one reply.

        Args:
            messages: the conversation, oldest first.
            params: decoding parameters.

        Returns:
            the reply text (cut before any stop sequence) with token counts.
        """
        import torch

        inputs = self._inputs(messages)
        prompt_len = int(inputs["input_ids"].shape[1])
        with self._lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(**inputs, **self._generate_kwargs(params))
        new_tokens = out[0][prompt_len:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, params.stop)
        hit_eos = len(new_tokens) > 0 and int(new_tokens[-1]) == self.tokenizer.eos_token_id
        finish = "stop" if stopped or hit_eos or len(new_tokens) < params.max_tokens else "length"
        return GenerationResult(text, finish, prompt_len, len(new_tokens))

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams = GenerationParams()) -> Iterator[str]:
        """Yield text deltas as they are decoded; their concatenation equals ``generate().text``.

        Closing the iterator early (a client that went away) stops the decoding.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        cancelled = threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    self.model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                        **self._generate_kwargs(params),
                    )
            except BaseException as e:  # re-raised in the consumer below
                errors.append(e)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        text, emitted, stopped, exhausted = "", 0, False, False
        try:
            for delta in streamer:
                text += delta
                cut, stopped = _cut_at_stop(text, params.stop)
                # hold back a tail that could still become a stop sequence
                end = len(cut) if stopped else len(text) - _longest_stop_prefix(text, params.stop)
                if end > emitted:
                    yield text[emitted:end]
                    emitted = end
                if stopped:
                    break
            else:
                exhausted = True
            if not stopped and len(text) > emitted:
                yield text[emitted:]
        finally:
            cancelled.set()
            if not exhausted:  # drain so the worker can finish and release the lock
                for _ in streamer:
                    pass
            worker.join()
        if errors:
            raise errors[0]


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    positions = [i for s in stop if s and (i := text.find(s)) >= 0]
    return (text[: min(positions)], True) if positions else (text, False)


def _longest_stop_prefix(text: str, stop: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop sequence."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
