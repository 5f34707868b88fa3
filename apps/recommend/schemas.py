"""Request and response bodies of the recommendation API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

__all__ = [
    "ExplanationOut",
    "FeedbackIn",
    "FeedbackRequest",
    "FeedbackResponse",
    "Filters",
    "PathStepOut",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "SimilarItem",
    "SimilarResponse",
]

ID = r"^[A-Za-z0-9._:@/-]{1,128}$"
ItemId = Annotated[str, Field(min_length=1, max_length=256)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]


class Filters(BaseModel):
    model_config = {"extra": "forbid"}

    tags: list[Tag] = Field(default_factory=list, max_length=50, description="keep items carrying any of these tags")
    exclude_items: list[ItemId] = Field(default_factory=list, max_length=1000, description="never return these ids")


class RecommendRequest(BaseModel):
    model_config = {"extra": "forbid"}

    user_id: str | None = Field(None, pattern=ID, description="a known or new user; new users get a cold-start list")
    recent_items: list[ItemId] = Field(
        default_factory=list, max_length=200, description="item ids the (anonymous or new) user just played"
    )
    k: int = Field(10, ge=1, le=100)
    exclude_seen: bool = True
    filters: Filters = Field(default_factory=Filters)
    explain: Literal["none", "template", "llm"] | None = Field(None, description="default: the service setting")

    @model_validator(mode="after")
    def _who(self) -> RecommendRequest:
        if self.user_id is None and not self.recent_items:
            raise ValueError("give user_id or recent_items")
        return self


class PathStepOut(BaseModel):
    id: str
    name: str
    relation: str | None = None


class ExplanationOut(BaseModel):
    kind: Literal["kg_path", "co_played", "popular"]
    text: str
    path: list[PathStepOut]
    via_item: str | None = None
    generated: bool = Field(False, description="true when the sentence was written by the generator")


class RecommendedItem(BaseModel):
    item_id: str
    name: str
    score: float
    tags: list[str]
    explanation: ExplanationOut | None = None


class RecommendResponse(BaseModel):
    user_id: str | None
    cold_start: bool = Field(description="true when nothing about the user was known (popularity and text only)")
    history_size: int
    items: list[RecommendedItem]
    explain: Literal["none", "template", "llm"]
    fallback_reason: str | None = Field(None, description="why llm explanations fell back to templates")


class SimilarItem(BaseModel):
    item_id: str
    name: str
    score: float
    tags: list[str]


class SimilarResponse(BaseModel):
    item_id: str
    items: list[SimilarItem]


class FeedbackIn(BaseModel):
    model_config = {"extra": "forbid"}

    user_id: str = Field(pattern=ID)
    item_id: str = Field(min_length=1, max_length=256)
    event: Literal["click", "play", "skip"]
    event_id: str | None = Field(None, pattern=ID, description="makes a retried event count once")
    ts: float | None = Field(None, ge=0, allow_inf_nan=False, description="unix time; default now")


class FeedbackRequest(BaseModel):
    model_config = {"extra": "forbid"}

    events: list[FeedbackIn] = Field(min_length=1, max_length=1000)


class FeedbackResponse(BaseModel):
    accepted: int
    duplicates: int
