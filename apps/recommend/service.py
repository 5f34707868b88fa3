"""Loading the recommend app into the running service."""

from __future__ import annotations

from typing import Any

from apps.services import Component
from apps.settings import Settings


def load(settings: Settings, services: Any) -> Component:
    """Build the app's long-lived objects onto services.recommend (not built yet)."""
    return Component("recommend", "not_configured", {"hint": "not built yet"})
