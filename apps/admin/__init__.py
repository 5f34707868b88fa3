"""Admin-scope routes: LoRA adapters and retrieval corpora, changed at run time."""

from fastapi import APIRouter

from apps.admin.adapters import router as adapters_router
from apps.admin.corpora import router as corpora_router

router = APIRouter()
router.include_router(adapters_router)
router.include_router(corpora_router)

__all__ = ["router"]
