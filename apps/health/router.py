"""Liveness and readiness."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from apps.core.deps import ServicesDep
from apps.core.errors import caller_is_operator

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Live(BaseModel):
    status: Literal["alive"] = "alive"


@router.get("/health/live", response_model=Live)
def live() -> Live:
    """The process is up."""
    return Live()


@router.get("/health/ready", responses={503: {"description": "not ready"}})
def ready(request: Request, services: ServicesDep) -> JSONResponse:
    """Whether every configured component is loaded (``status`` per component).

    The route is public: what each component is (model names, file paths, the remote generator's
    URL, hints) goes only to the operator, i.e. a caller with an ``admin`` key or one that needs no
    key (:func:`apps.core.errors.caller_is_operator`).
    """
    detailed = caller_is_operator(request)
    body: dict[str, Any] = {
        "status": "ready" if services.ready else "not_ready",
        "components": {
            name: {"status": c.status, **(c.detail if detailed else {})}
            for name, c in sorted(services.components.items())
        },
    }
    return JSONResponse(body, status_code=200 if services.ready else 503)
