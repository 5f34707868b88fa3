"""Request and response bodies of ``/admin/keys``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from apps.core.keystore import ApiKey

__all__ = ["CreateKey", "CreatedKey", "KeyList", "KeyOut"]


class CreateKey(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=100, description="who or what uses the key")
    scopes: list[str] = Field(min_length=1, max_length=3, description="read, write and/or admin")
    rate_limit: str | None = Field(None, max_length=100, description="own limit, e.g. 10/second")


class KeyOut(BaseModel):
    id: str
    name: str
    hint: str
    scopes: list[str]
    rate_limit: str | None
    created_at: float
    revoked_at: float | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            hint=key.hint,
            scopes=sorted(s.value for s in key.scopes),
            rate_limit=key.rate_limit,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class CreatedKey(KeyOut):
    token: str = Field(description="shown once; only its hash is stored")


class KeyList(BaseModel):
    data: list[KeyOut]
