from apps.health.router import router

__all__ = ["router"]
