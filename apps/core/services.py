"""The long-lived objects one service process holds (models, graphs), built once at start."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from apps.core.settings import Settings

__all__ = ["Component", "Services", "build_services", "load_generator", "open_graph_registry"]

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
    generation: Any = None  # models.concurrency.GenerationQueue in front of the generator
    embedder: Any = None  # sentence_transformers.SentenceTransformer
    graphs: Any = None  # kg registry
    retrievers: dict[str, Any] = field(default_factory=dict)  # corpus name -> retrieval.Retriever
    customer_service: Any = None  # apps.customer_service.pipeline.CustomerServicePipeline
    sentiment: Any = None  # apps.sentiment.service.SentimentService
    recommend: Any = None  # apps.recommend.service.RecommendService
    recommend_admin: Any = None  # apps.recommend.catalogue_admin.CatalogueAdmin: catalogue edits, training jobs
    components: dict[str, Component] = field(default_factory=dict)
    propagation: Any = None  # apps.core.propagation.Propagation: changes made by other workers and replicas
    started_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return all(c.status in ("ready", "not_configured") for c in self.components.values())

    def close(self) -> None:
        sessions = getattr(self.customer_service, "sessions", None)
        if self.recommend_admin is not None:
            self.recommend_admin.close()
        for part in (self.sentiment, self.recommend, self.graphs, self.generator, sessions):
            if part is not None and hasattr(part, "close"):
                part.close()


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
        services.generator, detail = load_generator(settings, cache)
        services.components["generator"] = Component("generator", "ready", detail)
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
    if services.generator is not None:
        from models.concurrency import GenerationQueue

        m = settings.models
        running = m.remote_max_concurrent if m.backend == "remote" else m.max_concurrent  # a remote server batches
        services.generation = GenerationQueue(
            services.generator, running, m.max_waiting, m.timeout_s, max_batch=m.max_batch,
            decode_timeout_s=m.decode_timeout_s,
        )  # fmt: skip
    services.graphs = open_graph_registry(settings, services.embedder)
    services.components["graphs"] = Component(
        "graphs",
        "ready",
        {"backend": settings.graph.backend, "default": settings.graph.default, "available": services.graphs.names()},
    )
    if services.embedder is not None:
        _load_retrievers(settings, services)
        _load_customer_service(settings, services)
    for app_name in ("sentiment", "recommend"):
        _load_app(app_name, settings, services)
    return services


def _load_app(name: str, settings: Settings, services: Services) -> None:
    """Load ``apps.<name>.service`` when its settings section is enabled.

    Each app module exposes ``load(settings, services) -> Component``, sets ``services.<name>``
    itself and reports ``not_configured`` (with a hint) when its model or data is not built yet.
    """
    import importlib

    if not getattr(settings, name).enabled:
        return
    module = importlib.import_module(f"apps.{name}.service")
    services.components[name] = module.load(settings, services)


def _load_retrievers(settings: Settings, services: Services) -> None:
    from kgnlp.errors import NotFoundError
    from retrieval.corpus import load_retriever
    from retrieval.retriever import RetrieverConfig

    config = RetrieverConfig(fusion=settings.retrieval.fusion, token_budget=settings.retrieval.token_budget)
    missing = []
    for name in settings.retrieval.corpora:
        try:
            services.retrievers[name] = load_retriever(name, settings.home, services.embedder, services.graphs, config)
        except NotFoundError:
            missing.append(name)
            continue
        services.retrievers[name].warm()  # else the first graph-mode request pays for it (failure: logged)
    services.components["retrieval"] = Component(
        "retrieval",
        "ready" if services.retrievers else "not_configured",
        {
            "corpora": {n: {"passages": len(r), "modes": list(r.modes)} for n, r in services.retrievers.items()},
            "not_built": missing,
            **({"hint": "kgnlp index build --corpus NAME"} if missing else {}),
        },
    )


def _load_customer_service(settings: Settings, services: Services) -> None:
    cs = settings.customer_service
    if not cs.enabled:
        return
    from apps.customer_service.pipeline import CustomerServicePipeline
    from apps.customer_service.profile import CompanyProfile
    from apps.customer_service.sessions import SessionStore
    from apps.customer_service.setup import DATA_DIR, intents_dir, load_intents

    if not (intents_dir(settings.home) / "labels.json").is_file():
        services.components["customer_service"] = Component(
            "customer_service", "not_configured", {"hint": "kgnlp cs setup (trains the intent classifier)"}
        )
        return
    from apps.core.pii import mask_pii

    mask = mask_pii if settings.observability.mask_pii_stored else None
    sessions = SessionStore(
        settings.db_url, window=cs.session_window, ttl_s=cs.session_ttl_s, mask=mask,
        max_chars=settings.retention.max_message_chars,
    ).open()  # fmt: skip
    services.customer_service = CustomerServicePipeline(
        intents=load_intents(settings.home, services.embedder),
        sessions=sessions,
        profile=CompanyProfile.load(cs.profile or DATA_DIR / "company.yaml"),
        retriever=services.retrievers.get(cs.corpus),
        generation=services.generation,
        adapter=cs.adapter,
        answer_mode=cs.answer_mode,
        min_confidence=cs.min_confidence,
        max_failures=cs.max_failures,
        generation_timeout_s=cs.generation_timeout_s,
        k=cs.k,
        max_tokens=cs.max_tokens,
        source_chars=cs.source_chars,
        answer_chars=cs.answer_chars,
        facts=cs.facts,
        citation_bias=cs.citation_bias,
    )
    services.components["customer_service"] = Component(
        "customer_service",
        "ready",
        {"corpus": cs.corpus if cs.corpus in services.retrievers else None,
         "adapter": services.customer_service.active_adapter,
         "answers": "generated" if services.customer_service.generates else "retrieved"},
    )  # fmt: skip


def load_generator(settings: Settings, cache: Any) -> tuple[Any, dict[str, Any]]:
    """The generator the settings ask for (remote, llama.cpp or torch) and its ``/health/ready`` detail."""
    m = settings.models
    t0 = time.perf_counter()
    if m.backend == "remote":
        from kgnlp.errors import ConfigurationError
        from models.remote import RemoteGenerator

        if not m.remote_url:
            raise ConfigurationError("KGNLP_MODELS__REMOTE_URL is required when KGNLP_MODELS__BACKEND=remote")
        key = m.remote_api_key.get_secret_value() if m.remote_api_key else None
        # the server's context is its own: checked here only when the operator states it
        context = m.context_tokens if "context_tokens" in m.model_fields_set else None
        gen: Any = RemoteGenerator(m.remote_url, _public_name(m.generator), api_key=key, adapters=m.remote_adapters,
                                   adapter_model=m.remote_adapter_model, model_map=m.remote_model_map,
                                   timeout_s=m.timeout_s, context_tokens=context)  # fmt: skip
        return gen, {"model": gen.name, "backend": "remote", "url": m.remote_url, "adapters": gen.adapter_names()}
    from kgnlp.cpu import cpu_info

    path = cache.resolve(m.generator)
    adapter_dir = m.adapter_dir or settings.home / "adapters"
    engine, measured = _engine(settings, cache)
    common = {"model": _public_name(m.generator), "backend": "local", "engine": engine, "path": str(path),
              "cpu": cpu_info(), **({"tokens_per_s": measured} if measured else {})}  # fmt: skip
    if engine == "llama.cpp":
        from models.llamacpp import LlamaCppGenerator

        gen = LlamaCppGenerator.from_files(
            cache.gguf(m.generator), path, _public_name(m.generator), adapter_dir=adapter_dir,
            cache_dir=settings.home / "gguf" / "merged", n_ctx=m.context_tokens, n_threads=m.threads,
            max_adapters=m.max_adapters,
        )  # fmt: skip
        for name in gen.adapter_names():  # merge and open now, not in the first request
            gen.adapters.model(name)
        return gen, {**common, "quantization": gen.quantization, "adapters": gen.adapter_names(),
                     "load_s": round(time.perf_counter() - t0, 2)}  # fmt: skip
    from models.engine import TORCH_QUANTIZATION
    from models.generation import LocalGenerator
    from models.loading import Quantization

    quantization: Quantization = m.quantization or TORCH_QUANTIZATION
    gen = LocalGenerator.from_path(path, name=_public_name(m.generator), quantization=quantization,
                                   adapter_dir=adapter_dir, max_adapters=m.max_adapters,
                                   context_tokens=m.context_tokens)  # fmt: skip
    return gen, {**common, "quantization": quantization, "adapters": gen.adapter_names(),
                 "load_s": round(time.perf_counter() - t0, 2)}  # fmt: skip


def _engine(settings: Settings, cache: Any) -> tuple[str, dict[str, float] | None]:
    """The decode engine for the generator, and the speeds it was chosen by (``auto``)."""
    from models.catalog import CATALOG

    m = settings.models
    has_gguf = m.generator in CATALOG and CATALOG[m.generator].gguf_file is not None
    if m.engine == "torch" or not has_gguf or (m.quantization is not None and m.engine == "auto"):
        return "torch", None
    from models.llamacpp import llama_cpp_available

    if not llama_cpp_available():
        if m.engine == "llama.cpp":
            from kgnlp.errors import ConfigurationError

            raise ConfigurationError("KGNLP_MODELS__ENGINE=llama.cpp but llama-cpp-python is not installed")
        log.warning("llama-cpp-python is not installed: decoding with torch")
        return "torch", None
    if m.engine == "llama.cpp":
        return "llama.cpp", None
    from models.engine import choose_engine

    record = choose_engine(settings.home, m.generator, report=log.info)  # cached per CPU after the first run
    return record["engine"], record["tokens_per_s"]


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
    auto = settings.graph.read_only is None
    read_only = settings.server.workers > 1 if auto else bool(settings.graph.read_only)
    return GraphRegistry(
        settings.graphs_dir,
        backend=settings.graph.backend,
        read_only=read_only,
        share_writer=auto,  # a second replica on one home reads while the first one writes
        neo4j={k: v for k, v in neo4j.items() if v is not None} if settings.graph.backend == "neo4j" else None,
        linker_options=linker_options,
    )


def _public_name(name_or_path: str) -> str:
    """The name the API shows: catalog names as is, paths by their last component."""
    from pathlib import PurePath

    return PurePath(name_or_path).name if "/" in name_or_path else name_or_path
