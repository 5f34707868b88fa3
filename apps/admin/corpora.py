"""``/admin/corpora``: add, replace and delete documents of a built retrieval corpus at run time (admin scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from apps.core.deps import ServicesDep
from apps.core.propagation import propagation
from kgnlp.errors import ModelUnavailableError, NotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/admin/corpora", tags=["admin"])
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DOC_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,255}$"


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
    unlinked_passages: int = Field(0, description="passages of deleted or replaced documents taken out of the graph")
    documents: int
    passages: int


def _apply(services: Any, name: str, **change: Any) -> CorpusUpdate:
    from retrieval.corpus import update_corpus

    if services.embedder is None:
        raise ModelUnavailableError("no embedder is loaded (KGNLP_MODELS__LOAD_EMBEDDER=false)")
    if name not in services.retrievers:
        raise NotFoundError(f"corpus {name!r} is not loaded by this service (KGNLP_RETRIEVAL__CORPORA)")
    # under the corpus's cross-process lock; other workers and replicas swap it in within a poll
    result = update_corpus(name, services.settings.home, services.embedder, graphs=services.graphs, **change)
    propagation(services).reload_corpus(name)  # this process answers from the new version at once
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
