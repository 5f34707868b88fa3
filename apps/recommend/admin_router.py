"""``/admin/recommend``: edit the served catalogue and retrain without downtime (admin scope).

- ``PUT /admin/recommend/items``: add or update up to 1,000 items with their facts; new items are
  recommendable at once (text tower and graph neighbours).
- ``DELETE /admin/recommend/items/{item_id}``: stop recommending an item at once.
- ``POST /admin/recommend/interactions``: up to 5,000 events for the next training run.
- ``POST /admin/recommend/train`` → ``202`` with a job id (``409`` while one runs);
  ``GET /admin/recommend/train/{job_id}``: its stage and progress.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from apps.core.deps import ServicesDep
from apps.recommend.catalogue_admin import CatalogueAdmin
from apps.recommend.cold_start import NewItem
from apps.recommend.interactions import InteractionRow
from apps.recommend.schemas import (
    InteractionsRequest,
    InteractionsResponse,
    ItemsRequest,
    ItemsResponse,
    TrainJobOut,
)
from kgnlp.errors import ModelUnavailableError

__all__ = ["router"]

router = APIRouter(prefix="/admin/recommend", tags=["admin"])


def get_admin(services: ServicesDep) -> CatalogueAdmin:
    admin: CatalogueAdmin | None = getattr(services, "recommend_admin", None)
    if admin is None or getattr(services, "recommend", None) is None:
        raise ModelUnavailableError(
            "the recommend app is not set up (run `kgnlp recommend setup`, or `make serve` which does it)"
        )
    return admin


AdminDep = Annotated[CatalogueAdmin, Depends(get_admin)]


@router.put("/items", response_model=ItemsResponse)
async def upsert_items(body: ItemsRequest, admin: AdminDep) -> ItemsResponse:
    """Add or update items (and their facts) in the catalogue's graph; served at once."""
    items = [NewItem(it.item_id, it.name.strip(), list(it.tags), it.text, it.all_facts()) for it in body.items]
    out = await asyncio.to_thread(admin.upsert_items, items)
    return ItemsResponse(**out)


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(admin: AdminDep, item_id: Annotated[str, Path(min_length=1, max_length=256)]) -> None:
    """Delete an item from the catalogue's graph; it is not recommended from now on. Unknown id: 404."""
    await asyncio.to_thread(admin.delete_item, item_id)


@router.post("/interactions", response_model=InteractionsResponse)
async def add_interactions(body: InteractionsRequest, admin: AdminDep) -> InteractionsResponse:
    """Store events for the next training run (retries count once). Unknown item: 404, nothing stored."""
    rows = [InteractionRow(x.user_id, x.item_id, x.weight, x.ts or 0.0, x.event_id) for x in body.interactions]
    added = await asyncio.to_thread(admin.add_interactions, rows)
    return InteractionsResponse(accepted=added, duplicates=len(rows) - added)


@router.post("/train", response_model=TrainJobOut, status_code=202)
async def start_training(admin: AdminDep) -> TrainJobOut:
    """Retrain on the current catalogue, events and feedback; ``/recommend`` keeps answering meanwhile."""
    return TrainJobOut(**admin.start_training().as_dict())


@router.get("/train/{job_id}", response_model=TrainJobOut)
async def training_job(admin: AdminDep, job_id: Annotated[str, Path(min_length=1, max_length=64)]) -> TrainJobOut:
    """A training job's status, stage and progress (0-1). Unknown id: 404."""
    return TrainJobOut(**admin.jobs.get(job_id).as_dict())
