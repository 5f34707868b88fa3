"""Key management over HTTP (``/admin/keys``, admin scope)."""

from apps.keys.router import router

__all__ = ["router"]
