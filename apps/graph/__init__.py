"""Knowledge-graph read API (``/kg``): entities, search, neighbourhoods, entity linking."""

from apps.graph.router import router

__all__ = ["router"]
