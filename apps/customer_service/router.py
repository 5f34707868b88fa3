"""Routes of the customer-service app: ``/cs/*`` and the ``/chat`` web page."""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, Response

from apps.customer_service.pipeline import CSAnswer, CustomerServicePipeline
from apps.customer_service.schemas import SESSION_ID, AnswerRequest, AnswerResponse, CitationOut, Handoff
from apps.deps import ServicesDep
from kgnlp.errors import ModelUnavailableError

__all__ = ["answer_response", "get_pipeline", "router"]

router = APIRouter(tags=["customer-service"])


def get_pipeline(services: ServicesDep) -> CustomerServicePipeline:
    pipeline: CustomerServicePipeline | None = getattr(services, "customer_service", None)
    if pipeline is None:
        raise ModelUnavailableError(
            "the customer-service app is not set up (run `kgnlp cs setup`, or `make serve` which does it)"
        )
    return pipeline


PipelineDep = Annotated[CustomerServicePipeline, Depends(get_pipeline)]


def answer_response(result: CSAnswer) -> AnswerResponse:
    data: dict[str, Any] = asdict(result)
    data["citations"] = [CitationOut(**c) for c in data["citations"]]
    return AnswerResponse(**data)


@router.post("/cs/answer", response_model=AnswerResponse)
async def answer(body: AnswerRequest, pipeline: PipelineDep) -> AnswerResponse:
    """Answer one customer message within a session, with citations, intent and escalation."""
    return answer_response(await pipeline.answer(body.session_id, body.message))


@router.delete("/cs/sessions/{session_id}", status_code=204, response_class=Response)
async def delete_session(pipeline: PipelineDep, session_id: Annotated[str, Path(pattern=SESSION_ID)]) -> Response:
    """Delete everything stored about a session (turns, slots, hand-offs)."""
    import asyncio

    await asyncio.to_thread(pipeline.sessions.delete, session_id)
    return Response(status_code=204)


@router.get("/cs/handoffs", response_model=list[Handoff])
async def handoffs(pipeline: PipelineDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Handoff]:
    """Recent hand-offs to human agents, newest first (for the operator)."""
    import asyncio

    return [Handoff(**h) for h in await asyncio.to_thread(pipeline.sessions.handoffs, limit)]


@router.get("/chat", response_class=HTMLResponse, include_in_schema=False)
def chat_page() -> HTMLResponse:
    """A small web chat (no build step) that streams answers and shows citations."""
    html = resources.files("apps.customer_service").joinpath("static/chat.html").read_text(encoding="utf-8")
    return HTMLResponse(html)
