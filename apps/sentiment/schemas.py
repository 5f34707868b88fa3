"""Request and response bodies of the sentiment app."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

__all__ = [
    "AckRequest",
    "AlertOut",
    "AnalyzeRequest",
    "AnalyzeResponse",
    "EventItem",
    "EventsRequest",
    "EventsResponse",
    "ModelOut",
    "TextResult",
    "TimelineOut",
]


def _has_words(text: str) -> str:
    if text.isspace():
        raise ValueError("text is only whitespace; send the words to analyse")
    return text


Text = Annotated[str, StringConstraints(min_length=1, max_length=5000), AfterValidator(_has_words)]
Label = Literal["negative", "neutral", "positive"]


class AnalyzeRequest(BaseModel):
    model_config = {"extra": "forbid"}

    texts: list[Text] = Field(min_length=1, max_length=256, description="1–256 texts, each 1–5000 characters")


class CompanyOut(BaseModel):
    id: str
    name: str
    ticker: str | None
    sector: str | None
    sub_industry: str | None
    surface: str | None = Field(None, description="the text span that mentions it (None when given explicitly)")
    sentiment: Label


class TextResult(BaseModel):
    label: Label
    probabilities: dict[Label, float]
    topics: list[str]
    entities: list[CompanyOut]


class AnalyzeResponse(BaseModel):
    model: str
    results: list[TextResult]


class ModelOut(BaseModel):
    """What the served sentiment model is and where it comes from."""

    version: str = Field(description="the registered model's name")
    kind: str | None = None
    created: str | None = None
    recipe: dict[str, Any] | str | None = Field(
        None,
        description="how it was built: the shipped adapter's recipe (method, data, steps) or a training recipe's name",
    )
    trained_on: Any = Field(None, description="training data, as recorded at registration")
    licence: str | None = Field(None, description="the licence the training data puts on the model")
    metrics: dict[str, Any] = Field(default_factory=dict, description="held-out scores recorded at registration")
    calibration: dict[str, Any] = Field(default_factory=dict)
    quantize: str
    runtime: str | None = Field(None, description="what runs the classifier: onnx (ONNX Runtime) or torch")
    float_layers: list[str] | str = Field(
        "all", description="layer-name suffixes kept in float when quantized (chosen on validation at registration)"
    )
    quantization: dict[str, Any] = Field(
        default_factory=dict, description="how the served form was chosen: validation accuracy of each form tried"
    )
    members: int
    size: dict[str, Any] = Field(default_factory=dict)
    topics: dict[str, Any] = Field(default_factory=dict, description="the topic tagger: method, names and its fit")


class EventItem(BaseModel):
    model_config = {"extra": "forbid"}

    id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+\-]+$")]
    text: Text
    timestamp: datetime = Field(description="ISO 8601 or Unix seconds; naive times are UTC")
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "api"
    entity: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="attribute explicitly to this company (entity id or ticker)"
    )

    @field_validator("timestamp")
    @classmethod
    def _in_range(cls, v: datetime) -> datetime:
        # buckets are `ts // width` in SQL (truncating: pre-1970 times would land in the wrong bucket)
        # and timelines add days to the newest event (year 9999 overflows)
        aware = v if v.tzinfo else v.replace(tzinfo=UTC)
        if not datetime(1970, 1, 1, tzinfo=UTC) <= aware < datetime(3000, 1, 1, tzinfo=UTC):
            raise ValueError("must be between 1970-01-01 and 3000-01-01 (UTC)")
        return v


class EventsRequest(BaseModel):
    model_config = {"extra": "forbid"}

    events: list[EventItem] = Field(min_length=1, max_length=1000)


class AlertChange(BaseModel):
    id: str
    change: Literal["alert.fired", "alert.resolved"]
    scope: str
    key: str


class EventsResponse(BaseModel):
    inserted: int
    duplicates: list[str] = Field(description="ids already stored (or repeated in the batch): skipped")
    alerts: list[AlertChange]


class AlertOut(BaseModel):
    id: str
    rule: str
    scope: str
    key: str
    status: Literal["open", "resolved"]
    started: datetime
    fired: datetime
    resolved: datetime | None
    peak: float
    limit: float
    breach_buckets: int
    acked: bool
    acked_at: datetime | None
    ack_note: str | None
    explanation: dict[str, Any]


class AckRequest(BaseModel):
    model_config = {"extra": "forbid"}

    note: Annotated[str, StringConstraints(max_length=2000)] | None = None


class BucketOut(BaseModel):
    start: datetime
    n: int
    negative: int
    neutral: int
    positive: int
    negative_share: float


class TimelineOut(BaseModel):
    scope: str
    key: str
    bucket_s: int
    buckets: list[BucketOut]
    alerts: list[AlertOut]
