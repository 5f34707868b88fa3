"""Route of the retrieval API. Retrievers live in ``request.app.state.services.retrievers`` (name → Retriever)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from apps.retrieve.schemas import EvidenceOut, RetrieveRequest, RetrieveResponse
from kgnlp.errors import ValidationError

__all__ = ["router"]

router = APIRouter(tags=["retrieval"])


def _retriever(request: Request, corpus: str) -> Any:
    services = getattr(request.app.state, "services", None)
    retrievers = getattr(services, "retrievers", None)
    if not retrievers:
        raise HTTPException(
            status_code=503, detail="no retrieval corpus is loaded (build one with: kgnlp index build --corpus retail)"
        )
    r = retrievers.get(corpus)
    if r is None:
        raise HTTPException(status_code=404, detail=f"corpus {corpus!r} not found; loaded: {sorted(retrievers)}")
    return r


@router.post("/retrieve", response_model=RetrieveResponse)
async def retrieve(request: Request, body: RetrieveRequest) -> RetrieveResponse:
    """Retrieve cited evidence for a query from a corpus."""
    r = _retriever(request, body.corpus)
    if body.mode not in r.modes:
        raise HTTPException(
            status_code=422,
            detail=f"mode {body.mode!r} is not available for corpus {body.corpus!r} (available: {list(r.modes)})",
        )
    try:
        # embedding and FAISS search are CPU-bound: keep them off the event loop
        evidence = await run_in_threadpool(r.retrieve, body.query, body.k, body.mode)
    except ValidationError as e:
        raise HTTPException(status_code=422, detail=str(e)) from e
    return RetrieveResponse(corpus=body.corpus, mode=body.mode, evidence=[EvidenceOut(**e.to_json()) for e in evidence])
