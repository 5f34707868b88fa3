"""FastAPI dependencies as ``Annotated`` aliases; tests swap them via ``app.dependency_overrides``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from apps.core.services import Services
from kgnlp.errors import ModelUnavailableError

__all__ = ["GeneratorDep", "ServicesDep", "get_generator", "get_services"]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_generator(services: ServicesDep) -> Any:
    if services.generator is None:
        raise ModelUnavailableError("no generator is loaded (KGNLP_MODELS__LOAD_GENERATOR=false)")
    return services.generator


GeneratorDep = Annotated[Any, Depends(get_generator)]
