"""``/admin/keys``: create, list and revoke API keys (the admin scope guards every route here)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from apps.core.keystore import KeyStore
from apps.keys.schemas import CreatedKey, CreateKey, KeyList, KeyOut

__all__ = ["router"]

router = APIRouter(prefix="/admin/keys", tags=["admin"])


def _store(request: Request) -> KeyStore:
    store: KeyStore = request.app.state.keys
    return store


@router.get("", response_model=KeyList)
async def list_keys(request: Request, include_revoked: bool = True) -> KeyList:
    """Every key (no secrets, no hashes)."""
    keys = await run_in_threadpool(_store(request).list, include_revoked)
    return KeyList(data=[KeyOut.of(k) for k in keys])


@router.post("", response_model=CreatedKey, status_code=201)
async def create_key(request: Request, body: CreateKey) -> CreatedKey:
    """Create a key; the token in the answer is shown this once."""
    key, token = await run_in_threadpool(_store(request).create, body.name, body.scopes, body.rate_limit)
    return CreatedKey(**KeyOut.of(key).model_dump(), token=token)


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(request: Request, key_id: str) -> KeyOut:
    """Revoke a key; requests with it get 401 from now on."""
    return KeyOut.of(await run_in_threadpool(_store(request).revoke, key_id))
