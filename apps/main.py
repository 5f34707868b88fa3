"""The FastAPI application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apps.core.errors import install_error_handlers
from apps.core.middleware import BodySizeLimit, RequestId
from apps.core.observability import install_observability
from apps.core.security import install_security
from apps.core.services import Services, build_services
from apps.core.settings import Settings, load_settings
from kgnlp import __version__

__all__ = ["app_factory", "create_app"]

log = logging.getLogger("kgnlp.api")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: configuration; read from the environment when omitted.
        services: pre-built services (tests); otherwise loaded in the lifespan.

    Returns:
        the FastAPI app; models load when its lifespan starts.
    """
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        owned = services is None
        app.state.services = services or await anyio.to_thread.run_sync(build_services, settings)
        log.info("kgnlp ready: %s", {k: c.status for k, c in app.state.services.components.items()})
        # the models, indexes and graphs loaded at start-up live as long as the process: moved out of
        # the collector's reach, a full collection no longer walks them while holding the GIL (it
        # took 0.35-0.6 s with ~800k objects, stalling the event loop and every request meanwhile)
        gc.collect()
        gc.freeze()
        tasks = []
        if settings.server.reload_poll_s > 0:  # corpora and adapters changed by other workers and replicas
            from apps.core.propagation import propagation

            tasks.append(asyncio.create_task(propagation(app.state.services).run()))
        if settings.retention.enabled:  # deletes what is past the retention settings, now and every interval
            from apps.core.retention import run_periodically

            tasks.append(asyncio.create_task(run_periodically(app.state.services, settings.retention)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if owned:
                app.state.services.close()
            gc.unfreeze()  # what the stopped service held can be collected again

    app = FastAPI(
        title="kgnlp",
        version=__version__,
        description="Knowledge-graph-augmented NLP: customer-service chat, financial sentiment, recommendation.",
        lifespan=lifespan,
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)

    from apps.admin import router as admin_router
    from apps.customer_service.router import router as cs_router
    from apps.graph.router import router as graph_router
    from apps.health import router as health_router
    from apps.keys import router as keys_router
    from apps.openai_compat import router as openai_router
    from apps.recommend.admin_router import router as recommend_admin_router
    from apps.recommend.router import router as recommend_router
    from apps.retrieve.router import router as retrieve_router
    from apps.sentiment.router import router as sentiment_router

    app.include_router(health_router)
    app.include_router(openai_router)
    app.include_router(cs_router)
    app.include_router(retrieve_router)
    app.include_router(sentiment_router)
    app.include_router(recommend_router)
    app.include_router(recommend_admin_router)
    app.include_router(graph_router)
    app.include_router(keys_router)
    app.include_router(admin_router)

    app.add_middleware(BodySizeLimit, max_bytes=settings.server.max_body_bytes)
    install_security(app, settings)  # API keys + rate limits, then CORS outside them
    install_observability(app, settings)  # /metrics; the observer sits outside auth to count 401/429
    app.add_middleware(RequestId)  # outermost: every response, 413s included, carries the id
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (and every worker of ``kgnlp serve --workers N``)."""
    from apps.core.logging_setup import configure_logging

    settings = load_settings()
    configure_logging(settings.observability)
    return create_app(settings)
