"""The scale-out generator: any OpenAI-compatible server (vLLM multi-LoRA, TGI, Ollama, kgnlp itself).

Plain httpx with explicit timeouts; retries with exponential backoff on 429/5xx and
connection errors (a stream is retried only before its first byte arrives).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kgnlp.errors import KgnlpError, ModelUnavailableError, NotFoundError, OverloadedError, ValidationError
from models.generation import ChatMessage, GenerationParams, GenerationResult, check_context

__all__ = ["RemoteGenerator"]

_RETRY_STATUS = {429, 500, 502, 503, 504}


class RemoteGenerator:
    """Chat completions from an OpenAI-compatible server.

    Args:
        base_url: server root, e.g. ``http://vllm:8000/v1``.
        model: the base model id on that server.
        api_key: sent as ``Authorization: Bearer``.
        adapters: adapter names the server serves; a request for adapter ``a`` asks for model
            ``model_map[a]`` when the map has it, else ``adapter_model.format(base=model, adapter=a)``.
        adapter_model: the served name of an adapter missing from ``model_map``; the default
            ``"{adapter}"`` is the adapter's own name, as vLLM names ``--lora-modules name=path``
            (``"{base}:{adapter}"`` gives the older ``base:adapter`` form).
        model_map: adapter name -> the model name the server serves it under.
        timeout_s: per-request timeout (connect and read).
        max_retries: retries after the first attempt.
        backoff_s: first retry delay; doubles each time, with jitter; ``Retry-After`` wins when given.
        client: an ``httpx.Client`` to use (tests, connection pools).
        context_tokens: the server model's context; when given, a request whose prompt (counted
            approximately, ~4 characters a token) + ``max_tokens`` exceed it is refused here with
            the same ``ValidationError`` as the local engines (None: the server's 400 says so).

    A non-streamed request is bounded by ``timeout_s`` (the server sends nothing until it is
    done); a stream stops at ``params.max_seconds`` or ``cancel`` by closing the connection,
    which makes vLLM and similar servers abort the decode.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        adapters: Sequence[str] = (),
        adapter_model: str = "{adapter}",
        model_map: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        client: Any = None,
        context_tokens: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.n_ctx = context_tokens
        self.name = model
        self.api_key = api_key
        self._adapters = list(adapters)
        self.adapter_model = adapter_model
        self.model_map = dict(model_map or {})
        self._adapters += [a for a in self.model_map if a not in self._adapters]
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def adapter_names(self) -> list[str]:
        return list(self._adapters)

    def served_model(self, adapter: str | None) -> str:
        """The ``model`` a request for ``adapter`` (None: the base model) is sent as."""
        if not adapter:
            return self.name
        if adapter in self.model_map:
            return self.model_map[adapter]
        return self.adapter_model.format(base=self.name, adapter=adapter)

    def count_tokens(self, text: str) -> int:
        """Approximate (the server's tokenizer is not here): ~4 characters a token."""
        return max(1, len(text) // 4) if text else 0

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return sum(self.count_tokens(m.content) + 4 for m in messages)

    def check_fits(self, messages: Sequence[ChatMessage], params: GenerationParams) -> None:
        """Raise ``ValidationError`` (422) when the approximate prompt + ``max_tokens`` exceed
        ``context_tokens`` (when it is known)."""
        check_context(self.count_prompt_tokens(messages), params, self.n_ctx)

    def _body(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None, stream: bool
    ) -> dict[str, Any]:
        if not messages:
            raise ValidationError("messages must not be empty")
        self.check_fits(messages, params)
        model = self.served_model(adapter)
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _send(self, body: dict[str, Any], stream: bool) -> Any:
        """POST with retries; returns an open response (caller closes it)."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                request = self.client.build_request("POST", url, json=body, headers=self._headers())
                response = self.client.send(request, stream=stream)
            except httpx.TransportError as e:
                if last:
                    raise ModelUnavailableError(f"generator server {self.base_url} unreachable: {e}") from e
                self._sleep(delay, None)
                delay *= 2
                continue
            if response.status_code < 400:
                return response
            if response.status_code in _RETRY_STATUS and not last:
                retry_after = response.headers.get("retry-after")
                response.close()
                self._sleep(delay, retry_after)
                delay *= 2
                continue
            raise self._error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _sleep(delay: float, retry_after: str | None) -> None:
        wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else delay
        time.sleep(min(30.0, wait) * (1 + random.random() * 0.1))

    def _error(self, response: Any) -> KgnlpError:
        response.read()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        response.close()
        status = response.status_code
        text = f"generator server answered {status}: {message}"
        if status == 404:
            return NotFoundError(text)
        if status in (400, 422):
            return ValidationError(text)
        if status in (429, 503):
            return OverloadedError(text, retry_after=float(response.headers.get("retry-after", 1) or 1))
        return ModelUnavailableError(text)

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = GenerationParams(),
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        response = self._send(self._body(messages, params, adapter, stream=False), stream=False)
        try:
            data = response.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return GenerationResult(
                text=choice["message"]["content"] or "",
                finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            )
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ModelUnavailableError(f"generator server sent an unexpected body: {e}") from e
        finally:
            response.close()

    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams = GenerationParams(),
        adapter: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield content deltas from the server's SSE stream (closing the iterator, setting
        ``cancel`` or ``params.max_seconds`` passing closes the connection)."""
        deadline = None if params.max_seconds is None else time.monotonic() + params.max_seconds
        response = self._send(self._body(messages, params, adapter, stream=True), stream=True)
        try:
            for line in response.iter_lines():
                if (cancel is not None and cancel.is_set()) or (deadline is not None and time.monotonic() > deadline):
                    return
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                try:
                    chunk = json.loads(payload)
                except ValueError as e:
                    raise ModelUnavailableError(f"generator server sent a bad SSE chunk: {payload[:100]}") from e
                if "error" in chunk:
                    raise ModelUnavailableError(f"generator server failed mid-stream: {chunk['error']}")
                for choice in chunk.get("choices", []):
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta
        finally:
            response.close()
