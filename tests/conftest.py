"""Shared fixtures: the provisioned model cache, the shared datasets, a live server helper."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or ``$KGNLP_SHARED_DATA``), when present."""
    env = os.environ.get("KGNLP_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (datasets are not part of a user's clone)")
    return path


@pytest.fixture(scope="session")
def model_home() -> Path:
    """The real model cache (``make test`` provisions it; pulled here when missing)."""
    from kgnlp.files import default_home
    from models.provision import ModelCache

    home = default_home()
    cache = ModelCache(home)
    for name in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        cache.ensure(name)
    return home


@pytest.fixture(scope="session")
def generator_path(model_home: Path) -> Path:
    return model_home / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def embedder_path(model_home: Path) -> Path:
    return model_home / "models" / "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def local_generator(generator_path: Path):  # type: ignore[no-untyped-def]
    from models.generation import LocalGenerator

    return LocalGenerator.from_path(generator_path, name="smollm2-135m-instruct")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server in a background thread, on a free loopback port."""

    def __init__(self, app: object, host: str = "127.0.0.1", **config: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning", **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 120
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def local_client(app: Any, **kwargs: Any) -> Any:
    """A Starlette TestClient whose requests look local (loopback peer, server and Host): the
    in-process stand-in for a request from this machine, which the default auth lets through."""
    from starlette.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 50000), **kwargs)


@pytest.fixture()
def live_server_factory() -> Iterator[type[LiveServer]]:
    yield LiveServer
