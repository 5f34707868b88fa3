"""Text generation: the ``Generator`` protocol and its local transformers + peft backend."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Generator as Generator_
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from kgnlp.errors import KgnlpError, ValidationError
from models.adapters import AdapterSet
from models.loading import LOAD_TIME, Quantization

__all__ = [
    "ChatMessage",
    "GenerationParams",
    "GenerationResult",
    "Generator",
    "LocalGenerator",
    "chat_prompt_ids",
    "check_context",
    "citation_bracket",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Decoding parameters. ``temperature == 0`` means greedy.

    ``citation_bias`` is added to the logit of the citation bracket (`` [``) until the answer has
    opened one: a grounded answer then cites a source where the model itself rates a citation
    as likely; which source, and where, stays the model's choice (0: off).

    ``max_seconds`` bounds the decode's wall-clock time (prefill included): past it the answer
    ends as it is, with ``finish_reason`` ``"length"`` — what OpenAI clients already handle as a
    cut answer, where an error would lose the text (and, in a stream, arrive after the 200).
    None: no limit.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    citation_bias: float = 0.0
    max_seconds: float | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class Generator(Protocol):
    """Anything that turns chat messages into text: the local model or a remote server."""

    name: str

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = ...,
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """``cancel``: once set (the caller gave up), decoding stops at the next token."""
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = ...,
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]: ...

    def adapter_names(self) -> list[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int: ...


class LocalGenerator:
    """A transformers causal LM in this process, with per-request LoRA adapters.

    Args:
        model: a loaded ``PreTrainedModel`` in eval mode.
        tokenizer: its tokenizer (with a chat template).
        name: the name the API reports.
        quantization: how the weights were quantized (reported by ``/health/ready``).
        adapters: the adapter set on this base (one is made when omitted).
        context_tokens: prompt + ``max_tokens`` allowed (capped by the model's positions); a
            longer request is refused with ``ValidationError`` as on the llama.cpp engine.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        quantization: Quantization = "none",
        adapters: AdapterSet | None = None,
        context_tokens: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.quantization = quantization
        self.adapters = adapters or AdapterSet(model)
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        limits = [int(n) for n in (context_tokens, positions) if n]
        self.n_ctx: int | None = min(limits) if limits else None
        self._lock = threading.Lock()  # one decode at a time: the model is shared and not re-entrant
        self._owner: int | None = None  # the thread holding _lock (a stream may be suspended in it)

    @classmethod
    def from_path(
        cls,
        path: Path,
        name: str,
        quantization: Quantization = "none",
        adapter_dir: Path | None = None,
        max_adapters: int = 4,
        context_tokens: int | None = None,
    ) -> LocalGenerator:
        """Load a base model (optionally int8) and register the adapters found in ``adapter_dir``."""
        from models.loading import load_causal_lm, quantize

        if quantization in LOAD_TIME:  # bitsandbytes: quantized on load, adapters attach directly
            model, tokenizer = load_causal_lm(path, quantization)
            adapters = AdapterSet(model, max_loaded=max_adapters)
            if adapter_dir is not None:
                adapters.register_directory(adapter_dir)
            return cls(model, tokenizer, name, quantization, adapters, context_tokens)
        model, tokenizer = load_causal_lm(path)
        if quantization != "none":
            model = quantize(model, quantization)
            adapters = AdapterSet(
                model,
                max_loaded=max_adapters,
                rebuild=lambda: load_causal_lm(path)[0],
                quantize=lambda m: quantize(m, quantization),
            )
        else:
            adapters = AdapterSet(model, max_loaded=max_adapters)
        if adapter_dir is not None:
            adapters.register_directory(adapter_dir)
        return cls(model, tokenizer, name, quantization, adapters, context_tokens)

    @property
    def model(self) -> Any:
        return self.adapters.model

    def adapter_names(self) -> list[str]:
        return self.adapters.available()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt_ids(messages))

    def check_fits(self, messages: Sequence[ChatMessage], params: GenerationParams) -> None:
        """Raise ``ValidationError`` (422) naming the limit when prompt + ``max_tokens`` exceed the
        context; a stream calls it before its first byte."""
        check_context(len(self._prompt_ids(messages)), params, self.n_ctx)

    # --- internals ------------------------------------------------------------------------------

    def _prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        return chat_prompt_ids(self.tokenizer, messages)

    def _batch(self, conversations: Sequence[Sequence[ChatMessage]]) -> dict[str, Any]:
        import torch

        rows = [self._prompt_ids(c) for c in conversations]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        # left padding so every row's next token is at the same position
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        device = self.model.device  # CUDA for the bitsandbytes schemes
        return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}

    def _kwargs(self, params: GenerationParams, adapters: Sequence[str | None]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        for a in adapters:
            if a is not None:
                self.adapters.ensure(a)
        if self.adapters.wrapped:
            kwargs["adapter_names"] = [self.adapters.peft_name(a) for a in adapters]
        return kwargs

    def _finish(self, new_tokens: Any, params: GenerationParams, prompt_len: int) -> GenerationResult:
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        tokens = [int(t) for t in new_tokens]
        # drop padding after EOS (batched rows finish at different steps)
        if eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
        elif pad != eos:
            tokens = [t for t in tokens if t != pad]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, params.stop)
        hit_eos = bool(tokens) and tokens[-1] == eos
        finish: Literal["stop", "length"] = (
            "stop" if stopped or hit_eos or len(tokens) < params.max_tokens else "length"
        )
        return GenerationResult(text, finish, prompt_len, len(tokens))

    # --- public API -----------------------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = GenerationParams(),
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generate one reply.

        Args:
            messages: the conversation, oldest first.
            params: decoding parameters.
            adapter: name of a registered LoRA adapter, or None for the base model.
            cancel: once set (the caller gave up), decoding stops at the next token.

        Returns:
            the reply text (cut before any stop sequence) with token counts.

        Raises:
            ValidationError: the prompt + ``max_tokens`` exceed the context.
        """
        run = self._run(messages, params, adapter, cancel)
        while True:
            try:
                next(run)
            except StopIteration as done:
                result: GenerationResult = done.value
                return result

    def generate_batch(
        self,
        conversations: Sequence[Sequence[ChatMessage]],
        params: GenerationParams = GenerationParams(),
        adapters: Sequence[str | None] | None = None,
        cancels: Sequence[threading.Event | None] | None = None,
    ) -> list[GenerationResult]:
        """Generate replies for several conversations in one batched decode.

        Args:
            conversations: one message list per request.
            params: shared decoding parameters.
            adapters: one adapter name (or None) per conversation; rows with different adapters
                share the batch through peft's mixed-adapter forward.
            cancels: one event (or None) per conversation; a set one ends that row at the next
                token, the others go on.

        Returns:
            one result per conversation, in order.
        """
        import torch

        adapters = list(adapters) if adapters is not None else [None] * len(conversations)
        cancels = list(cancels) if cancels is not None else [None] * len(conversations)
        if len(adapters) != len(conversations) or len(cancels) != len(conversations):
            raise ValidationError("adapters and cancels must have one entry per conversation")
        inputs = self._batch(conversations)
        width = int(inputs["input_ids"].shape[1])
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        for n in lengths:
            check_context(int(n), params, self.n_ctx)
        with self._exclusive():
            kwargs = self._kwargs(params, adapters)  # may load adapters: keep it outside inference mode
            halt = _halt_rows(cancels, _deadline(params), width, self._eos_ids())
            with torch.inference_mode():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                out = self.model.generate(**inputs, **kwargs, stopping_criteria=[halt])
        results = [self._finish(out[i][width:], params, int(lengths[i])) for i in range(len(conversations))]
        return [dataclasses.replace(r, finish_reason="length") if i in halt.cut else r for i, r in enumerate(results)]

    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = GenerationParams(),
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield text deltas as they are decoded; their concatenation equals ``generate().text``.

        Closing the iterator early (a client that went away) or setting ``cancel`` stops the decoding.
        """
        yield from self._run(messages, params, adapter, cancel)

    # --- the single-request decode loop -----------------------------------------------------------

    def _run(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None,
        cancel: threading.Event | None = None,
    ) -> Generator_[str, None, GenerationResult]:  # fmt: skip
        """Decode one request in the caller's thread, yielding text deltas; returns the result.

        A plain loop over the model's forward (prefill, then one token at a time on a KV cache)
        instead of ``model.generate`` in a worker thread: handing tokens across threads through a
        streamer cost ~40 % of the decode speed on a 2-core CPU. The model lock is held until the
        loop ends, the iterator is closed, ``cancel`` is set or ``params.max_seconds`` pass.
        """
        prompt = self._prompt_ids(messages)
        check_context(len(prompt), params, self.n_ctx)
        eos = self._eos_ids()
        tokens: list[int] = []
        text, emitted, stopped = "", 0, False
        with self._exclusive(), self._decoder(prompt, params, adapter) as step:  # may load an adapter
            deadline = _deadline(params)
            while len(tokens) < params.max_tokens:
                if (cancel is not None and cancel.is_set()) or (deadline is not None and time.monotonic() > deadline):
                    break  # ends as "length": neither EOS nor a stop sequence
                token = step(tokens[-1] if tokens else None)
                tokens.append(token)
                if token in eos:
                    break
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                cut, stopped = _cut_at_stop(text, params.stop)
                # hold back an incomplete UTF-8 character and a tail that could still become a stop sequence
                end = len(cut) if stopped else len(text.rstrip("\ufffd")) - _longest_stop_prefix(text, params.stop)
                if end > emitted:
                    yield text[emitted:end]
                    emitted = end
                if stopped:
                    break
        if not stopped and len(text) > emitted:
            yield text[emitted:]
        final = text[:emitted] if stopped else text
        hit_eos = bool(tokens) and tokens[-1] in eos
        finish: Literal["stop", "length"] = "stop" if stopped or hit_eos else "length"
        return GenerationResult(final, finish, len(prompt), len(tokens))

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the model; in the thread that holds it already (an open stream), fail instead of deadlocking."""
        if self._owner == threading.get_ident():
            raise KgnlpError("this thread has an unfinished stream from this generator: consume or close() it first")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    def _eos_ids(self) -> set[int]:
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = set(configured if isinstance(configured, list) else [configured])
        ids.add(self.tokenizer.eos_token_id)
        return {int(i) for i in ids if i is not None}

    @contextlib.contextmanager
    def _decoder(
        self, prompt: list[int], params: GenerationParams, adapter: str | None
    ) -> Iterator[Callable[[int | None], int]]:
        """A function that feeds the previous token (None: the prompt) and returns the next one."""
        import torch
        from transformers import DynamicCache, TemperatureLogitsWarper, TopPLogitsWarper

        model = self.model
        if adapter is not None:
            self.adapters.ensure(adapter)
            model = self.model  # ensure() may have wrapped the base in a peft model
        extra: dict[str, Any] = {}
        routing: Any = contextlib.nullcontext()
        if self.adapters.wrapped:
            names = [self.adapters.peft_name(adapter)]
            if hasattr(model, "_enable_peft_forward_hooks"):
                # route to the adapter once for the whole decode, as peft's own generate() does;
                # passing adapter_names to every forward re-registers hooks on each LoRA layer per token
                routing = model._enable_peft_forward_hooks(adapter_names=names)
            else:
                extra["adapter_names"] = names
        device = model.device
        cache = DynamicCache(config=model.config)
        # transformers 5.x renamed forward's `past_key_values` to `cache` (the old name warns, then goes)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        cache_arg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        history = torch.tensor([prompt], device=device)  # the warpers' view of the sequence so far
        warpers: list[Any] = []
        rng: Any = None
        if params.temperature > 0:
            warpers.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                warpers.append(TopPLogitsWarper(params.top_p))
            if params.seed is not None:  # a generator of its own: reproducible whatever else runs
                rng = torch.Generator(device=device).manual_seed(params.seed)

        bracket = citation_bracket(self.tokenizer) if params.citation_bias else None
        cited = False

        def step(previous: int | None) -> int:
            nonlocal history, cited
            cited = cited or (previous is not None and previous == bracket)
            with torch.inference_mode():
                if previous is None:
                    feed = history
                else:
                    feed = torch.tensor([[previous]], device=device)
                    if warpers:
                        history = torch.cat([history, feed], dim=1)
                out = model(input_ids=feed, use_cache=True, logits_to_keep=1, **{cache_arg: cache}, **extra)
                logits = out.logits[:, -1, :].float()
                if bracket is not None and not cited:
                    logits[:, bracket] += params.citation_bias
                if not warpers:
                    return int(logits.argmax(dim=-1))
                for warp in warpers:
                    logits = warp(history, logits)
                probs = torch.softmax(logits, dim=-1)
                return int(torch.multinomial(probs, num_samples=1, generator=rng))

        with routing:
            yield step


def check_context(prompt_tokens: int, params: GenerationParams, n_ctx: int | None) -> None:
    """Refuse a request whose prompt + ``max_tokens`` exceed the context (None: no limit known).

    Raises:
        ValidationError: naming both counts and the limit (the API answers 422).
    """
    if n_ctx is not None and prompt_tokens + params.max_tokens > n_ctx:
        raise ValidationError(
            f"prompt of {prompt_tokens} tokens + max_tokens {params.max_tokens} exceeds the context of {n_ctx}"
        )


def _deadline(params: GenerationParams) -> float | None:
    """The monotonic time past which the decode that starts now stops."""
    return None if params.max_seconds is None else time.monotonic() + params.max_seconds


def _halt_rows(cancels: Sequence[threading.Event | None], deadline: float | None, width: int, eos: set[int]) -> Any:
    """A transformers stopping criterion ending each unfinished row whose ``cancel`` is set, or
    every unfinished row past ``deadline``; the rows it ended are in its ``cut``."""
    import torch
    from transformers import StoppingCriteria

    class Halt(StoppingCriteria):
        def __init__(self) -> None:
            self.cut: set[int] = set()

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            late = deadline is not None and time.monotonic() > deadline
            done = [late or (c is not None and c.is_set()) for c in cancels]
            if any(done):
                new = input_ids[:, width:]
                for i, stop in enumerate(done):  # a row that reached EOS ended by itself
                    if stop and not any(int(t) in eos for t in new[i].tolist()):
                        self.cut.add(i)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return Halt()


def chat_prompt_ids(tokenizer: Any, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> list[int]:
    """The token ids of ``messages`` in the model's chat template (what every engine decodes from).

    Raises:
        ValidationError: no messages.
    """
    if not messages:
        raise ValidationError("messages must not be empty")
    ids = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], add_generation_prompt=add_generation_prompt,
        tokenize=True, return_dict=False,
    )  # fmt: skip
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def citation_bracket(tokenizer: Any) -> int | None:
    """The token id of `` [`` (how a citation opens after a word), when it is one token."""
    ids = tokenizer.encode(" [", add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 else None


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
