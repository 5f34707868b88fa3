"""``/admin/adapters``: list, hot-load and unload LoRA adapters without a restart (admin scope)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from apps.core.deps import GeneratorDep, ServicesDep
from apps.core.propagation import propagation, with_generator_lock

__all__ = ["router"]

router = APIRouter(prefix="/admin/adapters", tags=["admin"])
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AdapterState(BaseModel):
    available: list[str] = Field(description="registered adapters")
    loaded: list[str] = Field(description="adapters in memory, least recently used first")
    max_loaded: int


class LoadAdapter(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(pattern=NAME)
    path: str = Field(min_length=1, max_length=4096, description="a peft adapter folder on the server")


def _state(generator: object) -> AdapterState:
    adapters = getattr(generator, "adapters", None)
    if adapters is None:  # a remote backend: the server behind it owns its adapters
        names = generator.adapter_names()  # type: ignore[attr-defined]
        return AdapterState(available=names, loaded=names, max_loaded=len(names))
    return AdapterState(available=adapters.available(), loaded=adapters.loaded(), max_loaded=adapters.max_loaded)


def _local_adapters(generator: object) -> Any:
    from kgnlp.errors import ValidationError

    adapters = getattr(generator, "adapters", None)
    if adapters is None:
        raise ValidationError("adapters of a remote generator are managed on that server")
    return adapters


@router.get("", response_model=AdapterState)
def list_adapters(generator: GeneratorDep) -> AdapterState:
    """Registered and loaded adapters."""
    return _state(generator)


@router.post("", response_model=AdapterState, status_code=201)
async def load_adapter(body: LoadAdapter, services: ServicesDep) -> AdapterState:
    """Load an adapter from a folder on the server (replacing one of the same name), then publish it
    to the shared adapter folder: every worker and replica loads it within a poll, and the next
    start finds it. A broken adapter is refused (422) and nothing is published."""
    generator = services.generator
    adapters = _local_adapters(generator)
    changes = propagation(services)

    def load() -> None:
        with_generator_lock(generator, lambda: adapters.load(body.name, Path(body.path)))
        published = changes.publish_adapter(body.name, Path(body.path))
        with_generator_lock(generator, lambda: adapters.register(body.name, published))

    await run_in_threadpool(load)
    return _state(generator)


@router.delete("/{name}", response_model=AdapterState)
async def unload_adapter(services: ServicesDep, name: Annotated[str, PathParam(pattern=NAME)]) -> AdapterState:
    """Unload and unregister an adapter, here and (within a poll) on every worker and replica."""
    from kgnlp.errors import NotFoundError

    generator = services.generator
    adapters = _local_adapters(generator)
    if name not in adapters.available():
        raise NotFoundError(
            f"adapter {name!r} is not registered; available: {', '.join(adapters.available()) or 'none'}"
        )
    changes = propagation(services)

    def forget() -> None:
        changes.withdraw_adapter(name)
        with_generator_lock(generator, lambda: adapters.forget(name))

    await run_in_threadpool(forget)
    return _state(generator)
