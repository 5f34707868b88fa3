"""Service configuration: pydantic-settings, ``KGNLP_`` prefix, ``__`` for nesting.

Built by :func:`load_settings`, never at import time, so tests and the CLI can
construct their own. Every value is validated when the object is built and
errors name the field and the value.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.sentiment.rules import AlertPolicy, AlertRule
from kgnlp.files import default_home

__all__ = [
    "AuthSettings",
    "GraphSettings",
    "LimitsSettings",
    "ModelSettings",
    "ObservabilitySettings",
    "RecommendSettings",
    "RetentionSettings",
    "SentimentSettings",
    "ServerSettings",
    "Settings",
    "load_settings",
]


class ServerSettings(BaseModel):
    """Where the API listens."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(2_000_000, ge=1024, description="larger request bodies get 413")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; empty: CORS off")
    reload_poll_s: float = Field(
        1.0, ge=0, le=3600,
        description="how often each worker checks KGNLP_HOME for corpora and adapters changed by another worker "
        "or replica (0: never)",
    )  # fmt: skip

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
    engine: Literal["auto", "llama.cpp", "torch"] = Field(
        "auto",
        description="local decode engine; auto: the faster of llama.cpp (GGUF) and torch on this CPU, measured "
        "once and cached in KGNLP_HOME/engine.json (torch serves mixed-adapter batches and non-GGUF models)",
    )
    quantization: Literal["none", "int4-weight", "int8-weight", "int8-dynamic", "bnb-4bit", "bnb-8bit"] | None = Field(
        None,
        description="torch engine: int4-weight / int8-weight (weight-only, bf16 activations, perplexity within ~1 %), "
        "int8-dynamic (lossy on small models), none (fp32); CUDA: bnb-4bit (NF4) / bnb-8bit via bitsandbytes; "
        "default int4-weight (llama.cpp runs the GGUF's own quantization)",
    )
    context_tokens: int = Field(
        2048,
        ge=256,
        le=32_768,
        description="context (prompt + max_tokens) in tokens; a longer request gets 422 on every engine (torch: "
        "capped by the model's positions; remote: checked, approximately, only when set explicitly)",
    )
    threads: int | None = Field(None, ge=1, description="decode threads; default: the cores this process may use")
    backend: Literal["local", "remote"] = Field("local", description="remote: any OpenAI-compatible server")
    remote_url: str | None = Field(None, description="e.g. http://vllm:8000/v1 (backend=remote)")
    remote_api_key: SecretStr | None = None
    remote_adapters: list[str] = Field(default_factory=list, description="adapter names the remote server serves")
    remote_model_map: dict[str, str] = Field(
        default_factory=dict,
        description="adapter name -> the model name the remote server serves it under (adapters listed here are "
        "served too); an adapter missing from the map is asked for as remote_adapter_model",
    )
    remote_adapter_model: str = Field(
        "{adapter}",
        description="served model name of an adapter not in remote_model_map: '{adapter}' (its own name, as vLLM "
        "names --lora-modules name=path) or e.g. '{base}:{adapter}' (placeholders: base, adapter)",
    )
    remote_max_concurrent: int = Field(
        16,
        ge=1,
        le=1024,
        description="backend=remote: requests in flight to the server at once (it batches them; max_concurrent is "
        "for local decoding)",
    )
    adapter_dir: Path | None = Field(None, description="LoRA adapters, one folder each; default KGNLP_HOME/adapters")
    max_adapters: int = Field(4, ge=1, le=64, description="adapters kept loaded (LRU)")
    max_concurrent: int = Field(
        1, ge=1, le=64, description="local generations running at once (backend=remote: remote_max_concurrent)"
    )
    max_waiting: int = Field(16, ge=0, le=10_000, description="generations allowed to wait; more get 503")
    max_batch: int = Field(
        4, ge=1, le=64, description="waiting non-streamed greedy requests decoded together (static batching)"
    )
    timeout_s: float = Field(
        120.0, gt=0, le=3600, description="longest wait for a generation slot (remote: also the HTTP timeout)"
    )
    decode_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="wall-clock limit of one decode; past it the answer ends as it is with finish_reason 'length'",
    )

    @field_validator("remote_adapter_model")
    @classmethod
    def _adapter_model_template(cls, v: str) -> str:
        try:
            name = v.format(base="b", adapter="a")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"remote_adapter_model {v!r}: only {{base}} and {{adapter}} may appear ({e})") from e
        if "{adapter}" not in v:
            raise ValueError(f"remote_adapter_model {v!r} must contain {{adapter}} (adapters would share one name)")
        if not name.strip():
            raise ValueError("remote_adapter_model must not be empty")
        return v

    @field_validator("remote_model_map")
    @classmethod
    def _model_map(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k, name in v.items() if not k.strip() or not name.strip()]
        if bad:
            raise ValueError(f"remote_model_map: empty adapter or model name for {bad}")
        return v


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
        None,
        description="open embedded graphs read-only; default: when serving with several workers, or when another "
        "process (a second replica on the same KGNLP_HOME) already holds a graph for writing",
    )


class AuthSettings(BaseModel):
    """API keys (``Authorization: Bearer kgnlp_…``); see ``apps.core.security``."""

    enabled: bool | None = Field(
        None,
        description="default: on, except for requests that arrive on a loopback socket from a loopback client "
        "with a loopback Host and no proxy headers while the server binds a loopback address (the local demo)",
    )
    open_read: bool = Field(False, description="let read-scope routes through without a key")
    keys_path: Path | None = Field(None, description="the key store (SQLite); default KGNLP_HOME/keys.sqlite")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names accepted while auth is off (enabled=false), besides loopback names: a guard "
        "against DNS rebinding; '*' accepts any",
    )

    def mode(self, server: ServerSettings) -> Literal["on", "off", "local"]:
        """``on``: every request needs a key; ``off``: none does; ``local``: a request needs one unless it
        is provably local (see :func:`apps.core.security.is_local_request`). The default is ``local`` on a
        loopback bind and ``on`` otherwise: the bind address alone cannot say where a request came from
        (``uvicorn --factory --host 0.0.0.0``, a same-host proxy, DNS rebinding)."""
        if self.enabled is not None:
            return "on" if self.enabled else "off"
        return "local" if server.is_loopback else "on"


DEFAULT_ANONYMOUS_RATE = "60/minute"


class LimitsSettings(BaseModel):
    """Per-key rate limits (``limits`` notation: ``120/minute``, ``10/second;1000/hour``)."""

    enabled: bool = True
    rate: str = Field("120/minute", description="default per-key limit; a key may carry its own")
    anonymous_rate: str | None = Field(
        "auto",
        description=f"per-client-address limit for requests without a key; auto: {DEFAULT_ANONYMOUS_RATE} unless "
        "the server binds a loopback address (where auth is off too and every request is the operator's own); "
        "none: unlimited",
    )
    storage_uri: str = Field("memory://", description="limits storage, e.g. redis://host:6379 for several workers")

    @field_validator("rate", "anonymous_rate")
    @classmethod
    def _parse_rate(cls, v: str | None) -> str | None:
        if v is not None and v.strip().lower() in ("", "none"):
            return None
        if v is not None and v != "auto":
            from limits import parse_many

            try:
                parse_many(v)
            except ValueError as e:
                raise ValueError(f"not a rate limit like '120/minute': {v!r}") from e
        return v


class ObservabilitySettings(BaseModel):
    """Metrics, logs and PII masking."""

    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics")
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = Field(True, description="one log line per request (route, status, duration, key id)")
    mask_pii_logs: bool = Field(True, description="mask emails, phones, cards, IBANs, order ids in log lines")
    mask_pii_stored: bool = Field(
        True,
        description="mask the same, and self-introduced names, in what the service stores (turns, slots, hand-offs, "
        "events) and sends (alert explanations, webhooks); a turn still works on the real values it was given",
    )


class RetentionSettings(BaseModel):
    """How long stored data is kept: a task in each API process deletes what is older (``apps.core.retention``)."""

    enabled: bool = Field(True, description="run the expiry task in the API's lifespan")
    interval_s: float = Field(3600, ge=1, le=7 * 86_400, description="seconds between expiry runs (one at start)")
    sessions_days: float = Field(30, gt=0, description="customer-service sessions (turns, slots) idle this long go")
    handoffs_days: float = Field(30, gt=0, description="hand-off records older than this go")
    events_days: float = Field(
        90, gt=0, description="sentiment events (with their mentions) stored this long ago go, and finished webhook "
        "deliveries last attempted this long ago"
    )  # fmt: skip
    max_message_chars: int = Field(
        4000, ge=100, le=1_000_000, description="stored turns and hand-off messages are cut to this many characters "
        "(after masking; the turn itself answers the whole message)"
    )  # fmt: skip


class RetrievalSettings(BaseModel):
    """Which corpora the service loads (built by ``kgnlp index build --corpus NAME``)."""

    corpora: list[str] = Field(default_factory=lambda: ["retail"])
    fusion: Literal["rrf", "weighted"] = "rrf"
    token_budget: int = Field(1500, ge=50, le=32_000)


class CustomerServiceSettings(BaseModel):
    """The customer-service app."""

    enabled: bool = True
    corpus: str = "retail"
    profile: Path | None = Field(None, description="company profile YAML; default data/retail/company.yaml")
    adapter: str = Field("customer_service", description="LoRA adapter used for grounded answers when present")
    answer_mode: Literal["auto", "generate", "retrieve"] = Field(
        "auto", description="auto: generate with the adapter when it exists, else return the best retrieved answer"
    )
    min_confidence: float = Field(0.35, ge=0, le=1, description="below this intent probability, hand over")
    max_failures: int = Field(2, ge=1, le=20)
    generation_timeout_s: float = Field(10.0, gt=0, le=600, description="past this, the retrieved answer is sent")
    k: int = Field(3, ge=1, le=10)
    facts: int = Field(1, ge=0, le=5, description="knowledge-graph facts added to the sources (hybrid+graph)")
    max_tokens: int = Field(
        128, ge=1, le=2048, description="longest answer; the adapter writes ~60-token answers, stopping by itself"
    )
    source_chars: int | None = Field(
        300, ge=50, description="each source is shortened to this many characters in the prompt, at a sentence"
    )
    answer_chars: int = Field(300, ge=50, le=4000, description="retrieved answers are shortened the same way")
    citation_bias: float = Field(
        2.0, ge=0, le=10, description="logit bias on the citation bracket until the answer cites (chosen on validation)"
    )
    session_window: int = Field(8, ge=1, le=100)
    session_ttl_s: float = Field(86_400, gt=0)


def _default_alert_rules() -> list[AlertRule]:
    from apps.sentiment.rules import ShareRule, ZScoreRule

    return [
        # chosen with benchmarks/alerting.py --compare: the prior lets low-volume companies be
        # judged at all; a 2-bucket window catches bursts that straddle a bucket boundary
        ZScoreRule(name="negative-zscore", z=3.0, window=24, min_volume=5, min_baseline=10, prior_weight=20, span=2),
        ShareRule(name="negative-share", threshold=0.6, min_volume=8, span=3),
    ]


class SentimentSettings(BaseModel):
    """The financial-sentiment app (``/sentiment``, monitoring and alerts)."""

    enabled: bool = True
    graph: str = Field("finance", description="graph whose companies are linked and whose peers explain alerts")
    batch_size: int = Field(64, ge=1, le=1024, description="texts per classifier forward pass")
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="classifier runtime; auto: ONNX Runtime where installed (1.1-1.3x torch int8 here), else torch",
    )
    topics_file: Path | None = Field(None, description="topics YAML; default data/finance/topics.yaml")
    topic_tagger: Literal["head", "similarity"] = Field(
        "head",
        description="head: fitted on hand-labelled texts over the classifier's own sentence vector, words and keywords "
        "(one encoder pass); similarity: MiniLM similarity to the topics' descriptions (a second pass)",
    )
    topic_labels: Path | None = Field(
        None, description="labelled texts the topic head is fitted on; default data/finance/topics_labelled.jsonl"
    )
    topic_threshold: float = Field(0.36, ge=0, le=1, description="min cosine similarity for a topic (similarity)")
    max_topics: int = Field(3, ge=1, le=20)
    bucket_s: int = Field(3600, ge=60, le=7 * 86_400, description="alert and timeline bucket width in seconds")
    lookback_buckets: int = Field(24 * 8, ge=4, le=10_000, description="history one alert evaluation reads")
    alert_scopes: list[Literal["company", "sector", "topic"]] = Field(default=["company"])
    rules: list[Annotated[AlertRule, Field(discriminator="kind")]] = Field(
        default_factory=_default_alert_rules, description="alert rules (JSON list; kinds share, zscore, ewma)"
    )
    policy: AlertPolicy = AlertPolicy()
    webhook_urls: list[str] = Field(default_factory=list, description="alert webhooks (POSTed JSON, HMAC-signed)")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for X-Kgnlp-Signature")
    webhook_max_attempts: int = Field(6, ge=1, le=50)
    webhook_backoff_s: float = Field(2.0, gt=0, le=3600, description="first retry delay; doubles per attempt")
    webhook_lease_s: float = Field(
        60.0, ge=5, le=86_400,
        description="how long a delivery claimed by one worker or replica stays its own before another may retry "
        "it; must cover one delivery attempt's timeout (5 s)",
    )  # fmt: skip

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, v: list[AlertRule]) -> list[AlertRule]:
        names = [r.name for r in v]
        if len(set(names)) != len(names):
            raise ValueError(f"alert rule names must be unique: {names}")
        return v


class RecommendSettings(BaseModel):
    """The recommendation app (``/recommend``, ``/items``, ``/feedback``)."""

    enabled: bool = True
    catalogue: str = Field(
        "synthetic",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$",
        description="which trained catalogue to serve: synthetic, lastfm or one imported with `kgnlp recommend "
        "import` (trained by `kgnlp recommend setup|train`)",
    )
    model_dir: Path | None = Field(None, description="trained model folder; default KGNLP_HOME/recommend/<catalogue>")
    max_k: int = Field(100, ge=1, le=1000, description="largest k a request may ask for")
    explain: Literal["none", "template", "llm"] = Field(
        "template", description="default explanation mode; llm rewrites with the `recommend` adapter when present"
    )
    adapter: str = Field("recommend", description="LoRA adapter used for llm explanations")
    explain_timeout_s: float = Field(3.0, gt=0, le=60, description="llm explanations past this fall back to templates")
    llm_items: int = Field(3, ge=1, le=20, description="how many of the top items get an llm-written sentence")


class Settings(BaseSettings):
    """All settings; ``KGNLP_HOME``, ``KGNLP_SERVER__PORT``, ``KGNLP_MODELS__GENERATOR`` …"""

    model_config = SettingsConfigDict(env_prefix="KGNLP_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=default_home)
    server: ServerSettings = ServerSettings()
    models: ModelSettings = ModelSettings()
    graph: GraphSettings = GraphSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    customer_service: CustomerServiceSettings = CustomerServiceSettings()
    sentiment: SentimentSettings = SentimentSettings()
    recommend: RecommendSettings = RecommendSettings()
    database_url: str | None = Field(
        None, description="SQLAlchemy URL for sessions/events/alerts; default sqlite:///KGNLP_HOME/state.sqlite"
    )
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    retention: RetentionSettings = RetentionSettings()

    @model_validator(mode="after")
    def _resolve_anonymous_rate(self) -> Settings:
        if self.limits.anonymous_rate == "auto":
            rate = None if self.server.is_loopback else DEFAULT_ANONYMOUS_RATE
            self.limits = self.limits.model_copy(update={"anonymous_rate": rate})
        return self

    @field_validator("home")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def graphs_dir(self) -> Path:
        return self.graph.path or self.home / "graphs"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'state.sqlite'}"

    @property
    def keys_path(self) -> Path:
        return self.auth.keys_path or self.home / "keys.sqlite"


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
