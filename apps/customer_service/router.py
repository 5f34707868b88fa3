"""Routes of the customer-service app: ``/cs/*`` and the ``/chat`` web page."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from apps.core.deps import ServicesDep
from apps.customer_service.pipeline import CSAnswer, CustomerServicePipeline
from apps.customer_service.schemas import (
    SESSION_ID,
    AnswerRequest,
    AnswerResponse,
    CitationOut,
    Handoff,
    NewSession,
)
from apps.customer_service.sessions import owner_of_key
from kgnlp.errors import ModelUnavailableError

__all__ = ["answer_response", "caller_owner", "get_pipeline", "new_session_id", "router"]

router = APIRouter(tags=["customer-service"])


def get_pipeline(services: ServicesDep) -> CustomerServicePipeline:
    pipeline: CustomerServicePipeline | None = getattr(services, "customer_service", None)
    if pipeline is None:
        raise ModelUnavailableError(
            "the customer-service app is not set up (run `kgnlp cs setup`, or `make serve` which does it)"
        )
    return pipeline


PipelineDep = Annotated[CustomerServicePipeline, Depends(get_pipeline)]


def caller_owner(request: Request) -> str:
    """The owner of the caller's sessions: its API key (``key:<id>``), or ``anon`` without one."""
    key = getattr(request.state, "api_key", None)
    return owner_of_key(key.id if key is not None else None)


def new_session_id() -> str:
    """A server-issued session id: 192 random bits, 32 characters of the session-id alphabet."""
    return secrets.token_urlsafe(24)


async def issue_session(pipeline: CustomerServicePipeline, owner: str) -> str:
    """Store a new, empty session of ``owner`` under a server-issued id; the id."""
    session_id = new_session_id()
    await asyncio.to_thread(pipeline.sessions.create, session_id, owner)
    return session_id


def answer_response(result: CSAnswer) -> AnswerResponse:
    data: dict[str, Any] = asdict(result)
    data["citations"] = [CitationOut(**c) for c in data["citations"]]
    return AnswerResponse(**data)


@router.post("/cs/answer", response_model=AnswerResponse)
async def answer(body: AnswerRequest, pipeline: PipelineDep, request: Request) -> AnswerResponse:
    """Answer one customer message within a session, with citations, intent and escalation.

    Without ``session_id`` a new session starts (the response names it). Sessions belong to the API
    key that made them; a caller without a key continues only an id the server issued it (else 404).
    """
    owner = caller_owner(request)
    session_id = body.session_id or await issue_session(pipeline, owner)
    return answer_response(await pipeline.answer(session_id, body.message, owner=owner))


@router.post("/cs/sessions", status_code=201, response_model=NewSession)
async def create_session(pipeline: PipelineDep, request: Request) -> NewSession:
    """Start an empty session under a new server-issued id (for clients that then talk through
    ``/v1/chat/completions`` with ``user`` set to it, such as the web chat)."""
    return NewSession(session_id=await issue_session(pipeline, caller_owner(request)))


@router.delete("/cs/sessions/{session_id}", status_code=204, response_class=Response)
async def delete_session(
    pipeline: PipelineDep, request: Request, session_id: Annotated[str, Path(pattern=SESSION_ID)]
) -> Response:
    """Delete everything stored about one of the caller's sessions (turns, slots, hand-offs); another
    key's session of the same id is untouched. Idempotent: 204 whether or not it existed."""
    await asyncio.to_thread(pipeline.sessions.delete, session_id, caller_owner(request))
    return Response(status_code=204)


@router.get("/cs/handoffs", response_model=list[Handoff])
async def handoffs(pipeline: PipelineDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Handoff]:
    """Recent hand-offs to human agents, newest first (for the operator)."""
    return [Handoff(**h) for h in await asyncio.to_thread(pipeline.sessions.handoffs, limit)]


@router.get("/chat", response_class=HTMLResponse, include_in_schema=False)
def chat_page() -> HTMLResponse:
    """A small web chat (no build step) that streams answers and shows citations."""
    html = resources.files("apps.customer_service").joinpath("static/chat.html").read_text(encoding="utf-8")
    return HTMLResponse(html)
