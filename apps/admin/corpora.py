"""``/admin/corpora``: add, replace and delete documents of a built retrieval corpus at run time (admin scope)."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from apps.deps import ServicesDep
from kgnlp.errors import ModelUnavailableError, NotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/admin/corpora", tags=["admin"])
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DOC_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,255}$"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class DocumentIn(BaseModel):
    model_config = {"extra": "forbid"}

    id: Annotated[str, StringConstraints(pattern=DOC_ID)]
    text: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    title: Annotated[str, StringConstraints(max_length=1000)] = ""
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=50)


class DocumentsIn(BaseModel):
    model_config = {"extra": "forbid"}

    documents: list[DocumentIn] = Field(min_length=1, max_length=500)


class CorpusUpdate(BaseModel):
    corpus: str
    added_passages: int
    deleted_passages: int
    mentions: int = Field(description="MENTIONS edges written to the corpus's graph")
    documents: int
    passages: int


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def _apply(services: Any, name: str, **change: Any) -> CorpusUpdate:
    from retrieval.corpus import load_retriever, update_corpus
    from retrieval.retriever import RetrieverConfig

    if services.embedder is None:
        raise ModelUnavailableError("no embedder is loaded (KGNLP_MODELS__LOAD_EMBEDDER=false)")
    if name not in services.retrievers:
        raise NotFoundError(f"corpus {name!r} is not loaded by this service (KGNLP_RETRIEVAL__CORPORA)")
    settings = services.settings
    with _lock(name):
        result = update_corpus(name, settings.home, services.embedder, graphs=services.graphs, **change)
        config = RetrieverConfig(fusion=settings.retrieval.fusion, token_budget=settings.retrieval.token_budget)
        old = services.retrievers[name]
        new = load_retriever(name, settings.home, services.embedder, services.graphs, config)
        new.warm()  # before the swap: requests keep the old, warm one meanwhile
        services.retrievers[name] = new  # one reference swap: requests in flight finish on the old one
        cs = services.customer_service
        if cs is not None and cs.retriever is old:
            cs.retriever = new
    return CorpusUpdate(**result)


@router.post("/{name}/documents", response_model=CorpusUpdate)
async def add_documents(
    body: DocumentsIn, services: ServicesDep, name: Annotated[str, PathParam(pattern=NAME)]
) -> CorpusUpdate:
    """Add documents (a document with an existing id replaces it): chunked, embedded, linked, saved atomically."""
    from retrieval.types import Document

    docs = [Document(d.id, d.text, d.title, dict(d.metadata), source="admin") for d in body.documents]
    return await run_in_threadpool(_apply, services, name, add=docs)


@router.delete("/{name}/documents/{doc_id}", response_model=CorpusUpdate)
async def delete_document(
    services: ServicesDep,
    name: Annotated[str, PathParam(pattern=NAME)],
    doc_id: Annotated[str, PathParam(pattern=DOC_ID)],
) -> CorpusUpdate:
    """Delete one document (all its passages) from the corpus; 404 when it is not there."""
    result = await run_in_threadpool(_apply, services, name, delete=[doc_id])
    if result.deleted_passages == 0:
        raise NotFoundError(f"no document {doc_id!r} in corpus {name!r}")
    return result
