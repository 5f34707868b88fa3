"""``kgnlp keys``: create, list and revoke API keys in the key store.

The store is the one the service uses: the state database (``KGNLP_DATABASE_URL``, else
``KGNLP_HOME/state.sqlite``), or ``KGNLP_AUTH__KEYS_PATH`` when set; ``--store`` names a URL or a
SQLite file instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from apps.core.keystore import KeyStore
from kgnlp.errors import KgnlpError

app = typer.Typer(help="API keys: create, list, revoke (stored hashed).", no_args_is_help=True)

Home = Annotated[
    Path | None,
    typer.Option("--home", envvar="KGNLP_HOME", help="kgnlp home (its state database holds the keys)"),
]
Store = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="KGNLP_AUTH__KEYS_PATH",
        help="a database URL (postgresql+psycopg://…) or a SQLite file; default: the service's database",
    ),
]


def _store(home: Path | None, store: str | None) -> KeyStore:
    """``--store`` when given, else the service's own store (same settings, same database)."""
    if store:
        return KeyStore(store)
    from apps.core.settings import load_settings

    settings = load_settings(home=home.expanduser()) if home else load_settings()
    return KeyStore.for_settings(settings)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _fail(e: Exception) -> typer.Exit:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@app.command()
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="who or what uses the key")],
    scopes: Annotated[str, typer.Option("--scopes", "-s", help="comma-separated: read, write, admin")] = "read",
    rate: Annotated[str | None, typer.Option("--rate", help="own rate limit, e.g. 10/second")] = None,
    home: Home = None,
    store: Store = None,
) -> None:
    """Create a key and print its token (shown once; only a hash is stored)."""
    try:
        with _store(home, store) as keys:
            key, token = keys.create(name, scopes, rate)
    except KgnlpError as e:
        raise _fail(e) from e
    typer.echo(token)
    typer.secho(
        f"key {key.id} ({','.join(sorted(s.value for s in key.scopes))}) created; store the token now, "
        "it cannot be shown again",
        fg=typer.colors.YELLOW,
        err=True,
    )


@app.command("list")
def list_keys(
    all_: Annotated[bool, typer.Option("--all", "-a", help="include revoked keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per key")] = False,
    home: Home = None,
    store: Store = None,
) -> None:
    """List keys (id, name, scopes, dates); never secrets."""
    with _store(home, store) as keys:
        records = keys.list(include_revoked=all_)
    for k in records:
        scopes = ",".join(sorted(s.value for s in k.scopes))
        if as_json:
            typer.echo(json.dumps({"id": k.id, "name": k.name, "hint": k.hint, "scopes": scopes.split(","),
                                   "rate_limit": k.rate_limit, "created_at": k.created_at,
                                   "revoked_at": k.revoked_at}))  # fmt: skip
        else:
            state = f"revoked {_when(k.revoked_at)}" if k.revoked else "active"
            typer.echo(f"{k.id}  {k.name:<20} {scopes:<16} {k.rate_limit or 'default':<12} "
                       f"created {_when(k.created_at)}  {state}")  # fmt: skip
    if not records and not as_json:
        typer.echo("no keys; create one with: kgnlp keys create --name NAME --scopes read", err=True)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key id (kgnlp_<id>_…) or the whole token")],
    home: Home = None,
    store: Store = None,
) -> None:
    """Revoke a key; the running service rejects it from the next request on."""
    try:
        with _store(home, store) as keys:
            key = keys.revoke(key_id)
    except KgnlpError as e:
        raise _fail(e) from e
    typer.echo(f"revoked {key.id} ({key.name}) at {_when(key.revoked_at)}")
