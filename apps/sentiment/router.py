"""HTTP routes of the sentiment app."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["sentiment"])
