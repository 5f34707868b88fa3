"""The long-lived objects one service process holds (models, graphs), built once at start."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from apps.settings import Settings

__all__ = ["Component", "Services", "build_services", "open_graph_registry"]

log = logging.getLogger("kgnlp.services")


@dataclass
class Component:
    """Load state of one part of the service, as ``/health/ready`` reports it."""

    name: str
    status: str = "not_configured"  # not_configured | ready | failed
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Services:
    """Everything routes need; tests build one by hand with fakes or small real parts."""

    settings: Settings
    generator: Any = None  # models.generation.Generator
    embedder: Any = None  # sentence_transformers.SentenceTransformer
    graphs: Any = None  # kg registry
    components: dict[str, Component] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return all(c.status in ("ready", "not_configured") for c in self.components.values())

    def close(self) -> None:
        if self.graphs is not None and hasattr(self.graphs, "close"):
            self.graphs.close()


def build_services(settings: Settings) -> Services:
    """Provision and load what the settings ask for (blocking; runs in the lifespan).

    Raises:
        kgnlp.errors.ModelUnavailableError: a model is neither cached nor fetchable.
    """
    from models.provision import ModelCache

    services = Services(settings=settings)
    cache = ModelCache(settings.home, report=log.info)
    if settings.models.threads:
        import torch

        torch.set_num_threads(settings.models.threads)
    if settings.models.load_generator:
        from models.generation import LocalGenerator

        t0 = time.perf_counter()
        path = cache.resolve(settings.models.generator)
        services.generator = LocalGenerator.from_path(
            path, name=_public_name(settings.models.generator), quantization=settings.models.quantization
        )
        services.components["generator"] = Component(
            "generator",
            "ready",
            {"model": services.generator.name, "backend": "local", "path": str(path),
             "quantization": settings.models.quantization, "load_s": round(time.perf_counter() - t0, 2)},
        )  # fmt: skip
    if settings.models.load_embedder:
        from models.loading import load_sentence_embedder

        t0 = time.perf_counter()
        path = cache.resolve(settings.models.embedder)
        services.embedder = load_sentence_embedder(path)
        services.components["embedder"] = Component(
            "embedder",
            "ready",
            {"model": _public_name(settings.models.embedder), "path": str(path),
             "dimension": services.embedder.get_embedding_dimension(), "load_s": round(time.perf_counter() - t0, 2)},
        )  # fmt: skip
    services.graphs = open_graph_registry(settings, services.embedder)
    services.components["graphs"] = Component(
        "graphs",
        "ready",
        {"backend": settings.graph.backend, "default": settings.graph.default, "available": services.graphs.names()},
    )
    return services


def open_graph_registry(settings: Settings, embedder: Any = None) -> Any:
    """The graph registry the API serves from (graphs open lazily on first use)."""
    from kg.registry import GraphRegistry

    neo4j = {
        "uri": settings.graph.neo4j_uri,
        "user": settings.graph.neo4j_user,
        "password": settings.graph.neo4j_password,
        "database": settings.graph.neo4j_database,
    }
    linker_options = {}
    if embedder is not None:
        linker_options["embedder"] = lambda texts: embedder.encode(texts, normalize_embeddings=True)
    read_only = settings.graph.read_only if settings.graph.read_only is not None else settings.server.workers > 1
    return GraphRegistry(
        settings.graphs_dir,
        backend=settings.graph.backend,
        read_only=read_only,
        neo4j={k: v for k, v in neo4j.items() if v is not None} if settings.graph.backend == "neo4j" else None,
        linker_options=linker_options,
    )


def _public_name(name_or_path: str) -> str:
    """The name the API shows: catalog names as is, paths by their last component."""
    from pathlib import PurePath

    return PurePath(name_or_path).name if "/" in name_or_path else name_or_path
