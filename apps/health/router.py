"""Liveness and readiness."""

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
