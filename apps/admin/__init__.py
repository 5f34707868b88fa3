from apps.admin.adapters import router

__all__ = ["router"]
