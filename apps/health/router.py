"""Liveness, readiness and the OpenAI-style model list."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from apps.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Live(BaseModel):
    status: Literal["alive"] = "alive"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "kgnlp"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/health/live", response_model=Live)
def live() -> Live:
    """The process is up."""
    return Live()


@router.get("/health/ready", responses={503: {"description": "not ready"}})
def ready(services: ServicesDep) -> JSONResponse:
    """Whether every configured component is loaded, and what each one is."""
    body: dict[str, Any] = {
        "status": "ready" if services.ready else "not_ready",
        "components": {name: {"status": c.status, **c.detail} for name, c in sorted(services.components.items())},
    }
    return JSONResponse(body, status_code=200 if services.ready else 503)


@router.get("/v1/models", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """Base models (and, once registered, ``base:adapter`` pairs) this service can answer with."""
    created = int(services.started_at)
    cards = []
    if services.generator is not None:
        cards.append(ModelCard(id=services.generator.name, created=created))
        for adapter in getattr(services.generator, "adapter_names", lambda: [])():
            cards.append(ModelCard(id=f"{services.generator.name}:{adapter}", created=created))
    return ModelList(data=cards)
