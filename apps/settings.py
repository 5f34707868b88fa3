"""Service configuration: pydantic-settings, ``KGNLP_`` prefix, ``__`` for nesting.

Built by :func:`load_settings`, never at import time, so tests and the CLI can
construct their own. Every value is validated when the object is built and
errors name the field and the value.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kgnlp.files import default_home

__all__ = ["GraphSettings", "ModelSettings", "ServerSettings", "Settings", "load_settings"]


class ServerSettings(BaseModel):
    """Where the API listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(2_000_000, ge=1024, description="larger request bodies get 413")

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class ModelSettings(BaseModel):
    """Which models the service loads at start."""

    generator: str = Field("smollm2-135m-instruct", description="catalog name, local directory or HF hub id")
    embedder: str = Field("all-minilm-l6-v2", description="catalog name, local directory or HF hub id")
    load_generator: bool = True
    load_embedder: bool = True
    quantization: Literal["none", "int8-dynamic"] = "none"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's choice")
    backend: Literal["local", "remote"] = Field("local", description="remote: any OpenAI-compatible server")
    remote_url: str | None = Field(None, description="e.g. http://vllm:8000/v1 (backend=remote)")
    remote_api_key: SecretStr | None = None
    remote_adapters: list[str] = Field(default_factory=list, description="adapter names the remote server serves")
    adapter_dir: Path | None = Field(None, description="LoRA adapters, one folder each; default KGNLP_HOME/adapters")
    max_adapters: int = Field(4, ge=1, le=64, description="adapters kept loaded (LRU)")
    max_concurrent: int = Field(1, ge=1, le=64, description="generations running at once")
    max_waiting: int = Field(16, ge=0, le=10_000, description="generations allowed to wait; more get 503")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="per-request generation timeout")


class GraphSettings(BaseModel):
    """Which graph backend serves ``/kg`` and retrieval."""

    backend: Literal["ladybug", "neo4j"] = "ladybug"
    default: str = "retail"
    path: Path | None = Field(None, description="where embedded graphs live; default KGNLP_HOME/graphs")
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = SecretStr("")
    neo4j_database: str | None = None
    read_only: bool | None = Field(
        None, description="open embedded graphs read-only; default: only when serving with several workers"
    )


class Settings(BaseSettings):
    """All settings; ``KGNLP_HOME``, ``KGNLP_SERVER__PORT``, ``KGNLP_MODELS__GENERATOR`` …"""

    model_config = SettingsConfigDict(env_prefix="KGNLP_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=default_home)
    server: ServerSettings = ServerSettings()
    models: ModelSettings = ModelSettings()
    graph: GraphSettings = GraphSettings()

    @field_validator("home")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def graphs_dir(self) -> Path:
        return self.graph.path or self.home / "graphs"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and ``.env``), then apply keyword overrides.

    Raises:
        kgnlp.errors.ConfigurationError: naming each invalid field and its value.
    """
    from pydantic import ValidationError as PydanticValidationError

    from kgnlp.errors import ConfigurationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticValidationError as e:
        problems = "; ".join(
            f"KGNLP_{'__'.join(str(p).upper() for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from e
