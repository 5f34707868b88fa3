"""OpenAI-compatible endpoints: ``/v1/models`` and ``/v1/chat/completions`` (JSON or SSE)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from fastapi.sse import format_sse_event
from pydantic import BaseModel

from apps.core.deps import ServicesDep
from apps.openai_compat.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)
from kgnlp.errors import ModelUnavailableError, NotFoundError, ValidationError
from models.generation import ChatMessage, GenerationParams

__all__ = ["resolve_model", "router"]

router = APIRouter(prefix="/v1", tags=["openai"])

DEFAULT_MAX_TOKENS = 256
CS_MODEL = "customer-service"
CS_ADAPTER = "customer_service"


def resolve_model(services: Any, model: str, adapter: str | None) -> tuple[str, str | None]:
    """Split ``base[:adapter]`` and check both exist; a bare adapter name is that adapter on the
    base model (vLLM serves a LoRA module under its own name, so this server can stand in for it).

    Raises:
        NotFoundError: naming what is available.
    """
    generator = services.generator
    if generator is None:
        raise ModelUnavailableError("no generator is loaded (KGNLP_MODELS__LOAD_GENERATOR=false)")
    base, _, suffix = model.partition(":")
    if not suffix and base != generator.name and base in generator.adapter_names():
        base, suffix = generator.name, base
    if base != generator.name:
        raise NotFoundError(f"model {model!r} not found; available: {', '.join(_model_ids(services))}")
    if suffix and adapter and suffix != adapter:
        raise NotFoundError(f"model names adapter {suffix!r} but the adapter field says {adapter!r}")
    chosen = suffix or adapter or None
    if chosen is not None and chosen not in generator.adapter_names():
        raise NotFoundError(
            f"adapter {chosen!r} not found; available: {', '.join(generator.adapter_names()) or 'none'}"
        )
    return base, chosen


def _model_ids(services: Any) -> list[str]:
    """The base, every ``base:adapter``, every bare adapter name (as vLLM lists LoRA modules) and,
    while the customer-service app runs, its pipeline."""
    ids = []
    if (generator := services.generator) is not None:
        adapters = [a for a in generator.adapter_names() if a != generator.name]
        ids = [generator.name, *(f"{generator.name}:{a}" for a in adapters), *adapters]
    if getattr(services, "customer_service", None) is not None:
        ids.append(CS_MODEL)
    return ids


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "kgnlp"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/models", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """The base model, every ``base:adapter`` pair and every adapter by its own name."""
    created = int(services.started_at)
    return ModelList(data=[ModelCard(id=i, created=created) for i in _model_ids(services)])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks when stream=true"}},
)
async def chat_completions(body: ChatCompletionRequest, services: ServicesDep, request: Request) -> Any:
    """Chat completions in the OpenAI format; ``stream: true`` answers with SSE chunks and ``[DONE]``.

    The model ``customer-service`` (or the ``customer_service`` adapter) answers through the
    grounded customer-service pipeline; its citations and intent come in the extra ``kgnlp`` field.
    """
    generator = services.generator
    generator_name = getattr(generator, "name", None)
    # the bare adapter name is `base:customer_service` (vLLM's convention), so it gets the pipeline too
    # when the app runs: on its own, without the retrieved passages it was tuned on, the adapter
    # answers ungrounded. Not installed, or the app switched off: the name means what it does for vLLM.
    bare_adapter = (
        body.model == CS_ADAPTER
        and getattr(services, "customer_service", None) is not None
        and generator is not None
        and CS_ADAPTER in generator.adapter_names()
    )
    if body.model in (CS_MODEL, f"{generator_name}:{CS_ADAPTER}") or bare_adapter or body.adapter == CS_ADAPTER:
        return await _customer_service(body, services, request)
    base, adapter = resolve_model(services, body.model, body.adapter)
    messages = [ChatMessage(m.role, m.text) for m in body.messages]
    params = GenerationParams(
        max_tokens=body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=body.stop_sequences,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model_id = f"{base}:{adapter}" if adapter else base
    queue = services.generation
    if not body.stream:
        result = await queue.generate(messages, params, adapter)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=model_id,
            choices=[Choice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)],
            usage=Usage(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                total_tokens=result.prompt_tokens + result.completion_tokens,
            ),
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if (fits := getattr(services.generator, "check_fits", None)) is not None:
        await asyncio.to_thread(fits, messages, params)  # too long for the context: 422 before any byte
    deltas = queue.stream(messages, params, adapter)  # a full queue raises here: 503 before any byte
    generator = services.generator

    def chunk(delta: Delta, finish: Any = None, usage: Usage | None = None) -> bytes:
        c = ChatCompletionChunk(
            id=completion_id,
            created=created,
            model=model_id,
            choices=[] if usage else [ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
        )
        return format_sse_event(data_str=c.model_dump_json(exclude_none=True))

    async def events() -> AsyncIterator[bytes]:
        yield chunk(Delta(role="assistant", content=""))
        text = ""
        try:
            async for delta in deltas:
                text += delta
                yield chunk(Delta(content=delta))
        except Exception as e:  # headers are already sent: report in-band, as OpenAI servers do
            error = {"error": {"message": str(e), "type": type(e).__name__}}
            yield format_sse_event(data_str=json.dumps(error))
            yield format_sse_event(data_str="[DONE]")
            return
        used = generator.count_tokens(text)
        prompt = generator.count_prompt_tokens(messages)
        cut = getattr(deltas, "finish_reason", None) == "length"  # the decode deadline passed
        finish = "length" if cut or used >= params.max_tokens else "stop"
        yield chunk(Delta(), finish=finish)
        if include_usage:
            yield chunk(Delta(), usage=Usage(prompt_tokens=prompt, completion_tokens=used, total_tokens=prompt + used))
        yield format_sse_event(data_str="[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _customer_service(body: ChatCompletionRequest, services: Any, request: Request) -> Any:
    """Answer the last user message through the customer-service pipeline (session = ``user``, a session
    of the caller's key; without one, nothing of the conversation is stored)."""
    from dataclasses import asdict

    from apps.customer_service.router import caller_owner, get_pipeline

    pipeline = get_pipeline(services)
    owner = caller_owner(request)
    user_turns = [m.text for m in body.messages if m.role == "user" and m.text.strip()]
    if not user_turns:
        raise ValidationError("messages: the customer-service model needs a user message")
    from apps.customer_service.schemas import MAX_MESSAGE_CHARS, is_session_id

    if len(user_turns[-1]) > MAX_MESSAGE_CHARS:  # the /cs limit: the same pipeline reads it
        raise ValidationError(
            f"messages: the customer's last message has {len(user_turns[-1])} characters; "
            f"the customer-service model takes at most {MAX_MESSAGE_CHARS}"
        )
    if body.user is not None and not is_session_id(body.user):  # not re.match: `$` lets "id\n" through
        raise ValidationError(
            "user: the customer-service model uses it as the session id: 1-128 of letters, digits, . _ : -"
        )
    from apps.customer_service.sessions import EPHEMERAL_PREFIX

    # no `user`: a one-off conversation that is answered but not stored (else every call left a session).
    # `user` names a session of the caller's key; without a key, only a server-issued session (POST
    # /cs/sessions, or a /cs/answer without session_id) can be continued: any other `user` is a 404
    session_id = body.user or f"{EPHEMERAL_PREFIX}{uuid.uuid4().hex}"
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def extras(result: Any) -> dict[str, Any]:
        data = asdict(result)
        data.pop("answer")
        data["session_id"] = session_id
        return data

    if not body.stream:
        result = await pipeline.answer(session_id, user_turns[-1], owner=owner)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=CS_MODEL,
            choices=[Choice(message=AssistantMessage(content=result.answer), finish_reason="stop")],
            usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
            kgnlp=extras(result),
        )
    result, deltas = await pipeline.stream(session_id, user_turns[-1], owner=owner)

    def chunk(delta: Delta, finish: Any = None, extra: dict[str, Any] | None = None) -> bytes:
        c = ChatCompletionChunk(
            id=completion_id, created=created, model=CS_MODEL,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)], kgnlp=extra,
        )  # fmt: skip
        return format_sse_event(data_str=c.model_dump_json(exclude_none=True))

    async def events() -> AsyncIterator[bytes]:
        yield chunk(Delta(role="assistant", content=""))
        async for delta in deltas:
            yield chunk(Delta(content=delta))
        yield chunk(Delta(), finish="stop", extra=extras(result))
        yield format_sse_event(data_str="[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
