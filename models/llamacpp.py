"""The llama.cpp generator: a GGUF base decoded by llama.cpp (llama-cpp-python) in this process.

On a 2-core CPU llama.cpp decodes SmolLM2-135M's Q4_1 GGUF faster than the torch path with no
AVX-512 needed (71 vs 37.5 tok/s for torch int4 on an AVX-512 EPYC in benchmarks/generation.py;
the torch path falls further behind on AVX2-only CPUs). Adapters
are merged into their own GGUF copy (``models.gguf_merge``), so decoding with an adapter runs at
the base's speed; each loaded adapter is one more llama.cpp model in memory (~150 MB for
SmolLM2), least recently used first out. Prompts are tokenized with the HF tokenizer's chat
template, exactly as the torch path and the adapter's training do.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from kgnlp.errors import KgnlpError, ModelUnavailableError, NotFoundError, ValidationError
from models.generation import (
    ChatMessage,
    GenerationParams,
    GenerationResult,
    chat_prompt_ids,
    check_context,
    citation_bracket,
)

__all__ = ["GgufAdapters", "LlamaCppGenerator", "llama_cpp_available"]


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python is installed (it is a dependency; a failed build leaves it out)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _open_llama(path: Path, n_ctx: int, n_threads: int | None) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelUnavailableError(f"llama-cpp-python is not installed ({e}); use KGNLP_MODELS__ENGINE=torch") from e
    import os

    threads = n_threads or len(os.sched_getaffinity(0))
    return Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=512,
        flash_attn=True, verbose=False, seed=0,  # flash attention: ~15 % faster prefill and decode (a probe, 2 cores)
    )  # fmt: skip


class _CitationNudge:
    """A llama.cpp logits processor: ``bias`` on the citation bracket until the answer opened one."""

    def __init__(self, bracket: int, bias: float, prompt_len: int) -> None:
        self.bracket, self.bias, self.prompt_len = bracket, bias, prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not (input_ids[self.prompt_len :] == self.bracket).any():
            scores[self.bracket] += self.bias
        return scores


class _Halt:
    """A llama.cpp stopping criterion: ``cancel`` set (the caller gave up) or past ``deadline``.

    Checked after each sampled token; llama.cpp reports such a stop as ``"stop"``, so ``fired``
    tells the caller to report ``"length"`` (the answer was cut, not finished).
    """

    def __init__(self, cancel: threading.Event | None, max_seconds: float | None) -> None:
        self.cancel = cancel
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds
        self.fired = False

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        late = self.deadline is not None and time.monotonic() > self.deadline
        self.fired = self.fired or late or (self.cancel is not None and self.cancel.is_set())
        return self.fired


class GgufAdapters:
    """LoRA adapters of one GGUF base, each merged into a GGUF of its own and opened on demand.

    Args:
        base: the base GGUF file.
        cache_dir: where merged GGUFs are kept (named by the adapter's content digest).
        open_model: ``path -> llama.cpp model``.
        max_loaded: adapter models kept open at once (least recently used closed first).
    """

    def __init__(self, base: Path, cache_dir: Path, open_model: Any, max_loaded: int = 4) -> None:
        self.base = Path(base)
        self.cache_dir = Path(cache_dir)
        self.open_model = open_model
        self.max_loaded = max_loaded
        self._paths: dict[str, Path] = {}
        self._models: OrderedDict[str, Any] = OrderedDict()

    def register(self, name: str, path: Path) -> None:
        from models.adapters import read_adapter_config

        read_adapter_config(path)
        self._paths[name] = Path(path)

    def register_directory(self, root: Path) -> list[str]:
        """Register every adapter folder below ``root`` (one level), by folder name."""
        from models.adapters import adapter_folders

        found = adapter_folders(root)
        for d in found:
            self.register(d.name, d)
        return [d.name for d in found]

    def available(self) -> list[str]:
        return sorted(self._paths)

    def loaded(self) -> list[str]:
        return list(self._models)

    def merged_path(self, name: str) -> Path:
        """The merged GGUF of adapter ``name`` (built when missing or stale)."""
        from filelock import FileLock

        from models.gguf_merge import adapter_fingerprint, merge_lora_into_gguf

        path = self._paths[name]
        base_id = hashlib.sha256(f"{self.base.resolve()}:{self.base.stat().st_size}".encode()).hexdigest()[:8]
        out = self.cache_dir / f"{name}-{base_id}-{adapter_fingerprint(path)}.gguf"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(out) + ".lock"):  # workers and replicas on one KGNLP_HOME merge once
                if not out.is_file():
                    merge_lora_into_gguf(self.base, path, out)
        return out

    def model(self, name: str) -> Any:
        """The open llama.cpp model of adapter ``name``."""
        if name not in self._paths:
            raise NotFoundError(
                f"adapter {name!r} is not registered; available: {', '.join(self.available()) or 'none'}"
            )
        if name in self._models:
            self._models.move_to_end(name)
            return self._models[name]
        model = self.open_model(self.merged_path(name))
        self._models[name] = model
        while len(self._models) > self.max_loaded:
            _, old = self._models.popitem(last=False)
            with contextlib.suppress(Exception):
                old.close()
        return model

    def load(self, name: str, path: Path) -> None:
        """Register ``path`` as ``name`` and open it; the old adapter of that name stays in use
        if the new one fails to merge or load.

        Raises:
            NotFoundError: ``path`` is not an adapter folder.
            ValidationError: it could not be merged or opened (the old adapter stays).
        """
        previous = self._paths.get(name)
        old_model = self._models.pop(name, None)
        try:
            self.register(name, path)
            self.model(name)
        except Exception as e:
            if previous is None:
                self._paths.pop(name, None)
            else:
                self._paths[name] = previous
                if old_model is not None:
                    self._models[name] = old_model
            if isinstance(e, KgnlpError):
                raise
            raise ValidationError(
                f"adapter {name!r} from {path} could not be loaded ({type(e).__name__}: {e}); "
                f"{'the previous one stays in use' if previous is not None else 'nothing was registered'}"
            ) from e
        if old_model is not None:
            with contextlib.suppress(Exception):
                old_model.close()

    def forget(self, name: str) -> None:
        self._paths.pop(name, None)
        model = self._models.pop(name, None)
        if model is not None:
            with contextlib.suppress(Exception):
                model.close()

    def close(self) -> None:
        for name in list(self._models):
            self.forget(name)


class LlamaCppGenerator:
    """A GGUF model decoded by llama.cpp, with per-request (merged) LoRA adapters.

    Args:
        model: the base llama.cpp model (``llama_cpp.Llama``).
        tokenizer: the HF tokenizer of the same model (chat template, token counts).
        name: the name the API reports.
        adapters: the adapter set (``GgufAdapters``); None: no adapters.
        quantization: reported by ``/health/ready`` (the GGUF's type, e.g. ``gguf-q4_1``).
    """

    engine = "llama.cpp"

    def __init__(
        self, model: Any, tokenizer: Any, name: str, adapters: GgufAdapters | None = None, quantization: str = "gguf"
    ) -> None:
        self.base = model
        self.tokenizer = tokenizer
        self.name = name
        self.adapters = adapters
        self.quantization = quantization
        self.n_ctx = int(model.n_ctx())
        self._lock = threading.Lock()  # a llama.cpp context is not re-entrant
        self._evaluated: dict[int, tuple[int, ...]] = {}  # model → system-prompt tokens in its KV cache

    @classmethod
    def from_files(
        cls,
        gguf_file: Path,
        tokenizer_dir: Path,
        name: str,
        adapter_dir: Path | None = None,
        cache_dir: Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        max_adapters: int = 4,
    ) -> LlamaCppGenerator:
        """Open ``gguf_file`` and register the adapters found in ``adapter_dir``."""
        from transformers import AutoTokenizer

        def open_model(path: Path) -> Any:
            return _open_llama(path, n_ctx, n_threads)

        adapters = GgufAdapters(gguf_file, cache_dir or Path(gguf_file).parent / "merged", open_model, max_adapters)
        if adapter_dir is not None:
            adapters.register_directory(adapter_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        kind = Path(gguf_file).stem.rsplit(".", 1)[-1].lower()
        return cls(open_model(Path(gguf_file)), tokenizer, name, adapters, quantization=f"gguf-{kind}")

    def adapter_names(self) -> list[str]:
        return self.adapters.available() if self.adapters else []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt_ids(messages))

    def close(self) -> None:
        if self.adapters is not None:
            self.adapters.close()
        with contextlib.suppress(Exception):
            self.base.close()

    def _prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        return chat_prompt_ids(self.tokenizer, messages)

    def _fixed_prefix(self, messages: Sequence[ChatMessage], ids: list[int]) -> int:
        """How many leading tokens are the system message (the same in every request of an app)."""
        if len(messages) < 2 or messages[0].role != "system":
            return 0
        head = chat_prompt_ids(self.tokenizer, messages[:1], add_generation_prompt=False)
        return len(head) if ids[: len(head)] == head and len(head) < len(ids) - 1 else 0

    def _reuse_prefix(self, model: Any, ids: list[int], prefix: int) -> None:
        """Start a request from the KV cache of its system message, evaluated on its own.

        The system message's keys and values are computed once, alone, and kept; each request
        then decodes only what follows. Every request takes the same path (prefix alone, then the
        rest in one batch), so the same request gives the same text whatever ran before it; a
        prefix computed inside a longer prompt is never reused (other kernels, other rounding).
        """
        head = tuple(ids[:prefix])
        if prefix and self._evaluated.get(id(model)) == head and model.n_tokens >= prefix:
            model.n_tokens = prefix  # create_completion continues after the prefix
            return
        model.reset()
        self._evaluated.pop(id(model), None)
        if prefix:
            model.eval(list(head))
            self._evaluated[id(model)] = head

    def _model(self, adapter: str | None) -> Any:
        if adapter is None:
            return self.base
        if self.adapters is None:
            raise NotFoundError(f"adapter {adapter!r} is not registered; this generator has none")
        return self.adapters.model(adapter)

    def check_fits(self, messages: Sequence[ChatMessage], params: GenerationParams) -> None:
        """Raise ``ValidationError`` (422) naming the limit when prompt + ``max_tokens`` exceed the
        context; a stream calls it before its first byte."""
        self._check_fits(len(self._prompt_ids(messages)), params)

    def _check_fits(self, prompt_tokens: int, params: GenerationParams) -> None:
        check_context(prompt_tokens, params, self.n_ctx)

    def _completion(
        self, model: Any, ids: list[int], prefix: int, params: GenerationParams, stream: bool, halt: _Halt
    ) -> Any:
        self._check_fits(len(ids), params)
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        greedy = params.temperature <= 0
        processors = None
        if params.citation_bias and (bracket := citation_bracket(self.tokenizer)) is not None:
            processors = LogitsProcessorList([_CitationNudge(bracket, params.citation_bias, len(ids))])
        self._reuse_prefix(model, ids, prefix)
        try:
            return model.create_completion(
                prompt=ids, max_tokens=params.max_tokens, temperature=0.0 if greedy else params.temperature,
                top_p=1.0 if greedy else params.top_p, top_k=1 if greedy else 0, min_p=0.0, repeat_penalty=1.0,
                stop=list(params.stop) or None, stream=stream, seed=params.seed if params.seed is not None else 0,
                logits_processor=processors, stopping_criteria=StoppingCriteriaList([halt]),
            )  # fmt: skip
        except (RuntimeError, ValueError) as e:
            raise KgnlpError(f"llama.cpp failed: {e}") from e

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = GenerationParams(),
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Decode one answer (greedy when ``temperature == 0``); ``cancel`` set or
        ``params.max_seconds`` passed end it at the next token, as ``"length"``."""
        ids = self._prompt_ids(messages)
        prefix = self._fixed_prefix(messages, ids)
        with self._lock:
            halt = _Halt(cancel, params.max_seconds)
            out = self._completion(self._model(adapter), ids, prefix, params, stream=False, halt=halt)
        choice = out["choices"][0]
        cut = halt.fired or choice.get("finish_reason") == "length"
        finish: Literal["stop", "length"] = "length" if cut else "stop"
        usage = out.get("usage") or {}
        return GenerationResult(choice["text"], finish, len(ids), int(usage.get("completion_tokens", 0)))

    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = GenerationParams(),
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it is decoded; closing the iterator, setting ``cancel`` or
        ``params.max_seconds`` passing stops decoding."""
        ids = self._prompt_ids(messages)
        prefix = self._fixed_prefix(messages, ids)
        with self._lock:
            halt = _Halt(cancel, params.max_seconds)
            chunks = self._completion(self._model(adapter), ids, prefix, params, stream=True, halt=halt)
            try:
                for chunk in chunks:
                    text = chunk["choices"][0]["text"]
                    if text:
                        yield text
            finally:
                chunks.close()
