from apps.openai_compat.router import router

__all__ = ["router"]
