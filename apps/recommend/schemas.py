"""Request and response bodies of the recommendation API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

__all__ = [
    "CatalogueId",
    "ExplanationOut",
    "FactIn",
    "FeedbackIn",
    "FeedbackRequest",
    "FeedbackResponse",
    "Filters",
    "InteractionIn",
    "InteractionsRequest",
    "InteractionsResponse",
    "ItemIn",
    "ItemsRequest",
    "ItemsResponse",
    "PathStepOut",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "RelationIn",
    "SimilarItem",
    "SimilarResponse",
    "TrainJobOut",
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


# -- catalogue administration (admin scope) and `kgnlp recommend import` rows ----------------------
CatalogueId = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^\S(.*\S)?$", description="no leading/trailing spaces")
]
RelationName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
Text = Annotated[str, Field(max_length=500)]
MAX_ITEMS_PER_REQUEST = 1000
MAX_INTERACTIONS_PER_REQUEST = 5000


class FactIn(BaseModel):
    """``item -relation-> entity`` (a genre, category, brand …; created when new)."""

    model_config = {"extra": "forbid"}

    relation: RelationName
    entity_id: CatalogueId
    entity_name: Text = ""


class ItemIn(BaseModel):
    """An item of the catalogue: what the text tower reads and the KG facts about it."""

    model_config = {"extra": "forbid"}

    item_id: CatalogueId
    name: str = Field(min_length=1, max_length=500, pattern=r"\S", description="display name")
    text: str = Field("", max_length=5000, description="description read by the text tower")
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    attributes: dict[RelationName, Text] = Field(
        default_factory=dict, max_length=50,
        description="attribute -> value, each a fact `item -attribute-> attribute:value` (brand, category …)",
    )  # fmt: skip
    facts: list[FactIn] = Field(default_factory=list, max_length=100)

    def all_facts(self) -> list[tuple[str, str, str]]:
        """``(relation, entity id, entity name)`` of the facts and the non-empty attributes."""
        out = [(f.relation, f.entity_id, f.entity_name) for f in self.facts]
        out += [(k, f"{k}:{v.strip()}", v.strip()) for k, v in self.attributes.items() if v.strip()]
        return list(dict.fromkeys(out))


class RelationIn(BaseModel):
    """A KG fact between any two entities (``head`` may be an item or another entity)."""

    model_config = {"extra": "forbid"}

    head: CatalogueId
    relation: RelationName
    tail: CatalogueId
    tail_name: Text = ""


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for x in ids:
        if x in seen:
            raise ValueError(f"{what} {x!r} appears twice in one request")
        seen.add(x)


class ItemsRequest(BaseModel):
    model_config = {"extra": "forbid"}

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)

    @model_validator(mode="after")
    def _distinct(self) -> ItemsRequest:
        _unique([it.item_id for it in self.items], "item_id")
        return self


class ItemsResponse(BaseModel):
    added: int
    updated: int
    items: int = Field(description="items in the catalogue now")


class InteractionIn(BaseModel):
    """A positive event (play, purchase, view) for the next training run."""

    model_config = {"extra": "forbid"}

    user_id: str = Field(pattern=ID)
    item_id: CatalogueId
    weight: float = Field(1.0, gt=0, le=1e9, allow_inf_nan=False, description="play count, quantity …")
    ts: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False, description="unix time; default unknown")
    event_id: str | None = Field(None, pattern=ID, description="makes a retried event count once")


class InteractionsRequest(BaseModel):
    model_config = {"extra": "forbid"}

    interactions: list[InteractionIn] = Field(min_length=1, max_length=MAX_INTERACTIONS_PER_REQUEST)


class InteractionsResponse(BaseModel):
    accepted: int
    duplicates: int


class TrainJobOut(BaseModel):
    job_id: str
    status: Literal["running", "succeeded", "failed"]
    stage: str
    progress: float
    started_at: float
    finished_at: float | None = None
    result: dict[str, object] | None = None
    error: str | None = None
