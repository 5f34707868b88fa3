"""HTTP routes of the recommendation app: ``POST /recommend``, ``GET /items/{id}/similar``, ``POST /feedback``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from apps.core.deps import ServicesDep
from apps.recommend.feedback import FeedbackEvent
from apps.recommend.schemas import (
    ExplanationOut,
    FeedbackRequest,
    FeedbackResponse,
    PathStepOut,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    SimilarItem,
    SimilarResponse,
)
from apps.recommend.service import RecommendResult, RecommendService
from kgnlp.errors import ModelUnavailableError

__all__ = ["get_recommender", "router"]

router = APIRouter(tags=["recommend"])


def get_recommender(services: ServicesDep) -> RecommendService:
    svc: RecommendService | None = getattr(services, "recommend", None)
    if svc is None:
        raise ModelUnavailableError(
            "the recommend app is not set up (run `kgnlp recommend setup`, or `make serve` which does it)"
        )
    return svc


RecommendDep = Annotated[RecommendService, Depends(get_recommender)]


def _response(svc: RecommendService, result: RecommendResult) -> RecommendResponse:
    c = svc.catalogue
    items = []
    for r in result.items:
        exp = None
        if r.explanation is not None:
            e = r.explanation
            path = [PathStepOut(id=s.id, name=s.name, relation=s.relation) for s in e.path]
            exp = ExplanationOut(kind=e.kind, text=e.text, via_item=e.via_item, generated=r.generated, path=path)
        items.append(RecommendedItem(item_id=c.item_ids[r.item], name=c.item_names[r.item], score=round(r.score, 5),
                                     tags=c.item_tags[r.item], explanation=exp))  # fmt: skip
    return RecommendResponse(user_id=result.user_id, cold_start=result.cold_start, history_size=result.history_size,
                             items=items, explain=result.explain, fallback_reason=result.fallback_reason)  # fmt: skip


@router.post("/recommend", response_model=RecommendResponse)
async def recommend(body: RecommendRequest, svc: RecommendDep) -> RecommendResponse:
    """Top-k items for a user (by id, by recent items, or both) with scores and explanations.

    Unknown ``user_id`` without history: a cold-start list (popularity and text), ``cold_start: true``.
    Unknown ids in ``recent_items``: 404. ``k`` outside 1..100: 422.
    """
    result = await svc.recommend(body.user_id, body.recent_items, body.k, body.exclude_seen, body.filters.tags,
                                 body.filters.exclude_items, body.explain)  # fmt: skip
    return _response(svc, result)


@router.get("/items/{item_id}/similar", response_model=SimilarResponse)
async def similar(svc: RecommendDep, item_id: Annotated[str, Path(min_length=1, max_length=256)],
                  k: Annotated[int, Query(ge=1, le=100)] = 10) -> SimilarResponse:  # fmt: skip
    """Items most similar to one item (KG model, text tower and item text). Unknown id: 404."""
    c = svc.catalogue
    pairs = svc.similar(item_id, k)
    items = [SimilarItem(item_id=c.item_ids[j], name=c.item_names[j], score=round(s, 5), tags=c.item_tags[j])
             for j, s in pairs]  # fmt: skip
    return SimilarResponse(item_id=item_id, items=items)


@router.post("/feedback", response_model=FeedbackResponse)
async def feedback(body: FeedbackRequest, svc: RecommendDep) -> FeedbackResponse:
    """Record click/play/skip events; the user's next recommendation reflects them at once.

    Events with an ``event_id`` already stored are counted as duplicates. Unknown item ids: 404.
    """
    events = [FeedbackEvent(e.user_id, e.item_id, e.event, e.event_id, e.ts) for e in body.events]
    added = await asyncio.to_thread(svc.add_feedback, events)
    return FeedbackResponse(accepted=added, duplicates=len(events) - added)
