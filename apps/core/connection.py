"""Where a request comes from: its ``Host`` name and whether it is provably local.

Below both the auth middleware (``apps.core.security``) and the error handlers (``apps.core.errors``), which
decide by it whether a caller needs a key and may see an error's details.
"""

from __future__ import annotations

import ipaddress

from starlette.types import Scope

__all__ = ["host_name", "is_local_request", "is_loopback_host"]


# A proxy in front (on the same host, so the socket is loopback) says where the request came from.
_PROXY_HEADERS = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-real-ip", b"via"))


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback IP literal (brackets allowed); False for None or any other name."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(scope: Scope) -> str | None:
    """The ``Host`` header without its port (``[::1]:8000`` → ``::1``); None when absent."""
    for name, value in scope.get("headers") or []:
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                return host[1 : host.find("]")] if "]" in host else host
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return None


def is_local_request(scope: Scope) -> bool:
    """Whether a request provably comes from this machine to a loopback socket, by a loopback name.

    All four must hold: the server socket is loopback, the peer is loopback, the ``Host`` is a loopback
    name (a DNS-rebound page sends its own name) and no proxy header says it was forwarded (a proxy on
    the same host connects from loopback). A Unix socket counts as not local.
    """
    server, client = scope.get("server"), scope.get("client")
    if not server or not client or not is_loopback_host(server[0]) or not is_loopback_host(client[0]):
        return False
    if not is_loopback_host(host_name(scope)):
        return False
    return not any(name in _PROXY_HEADERS for name, _ in scope.get("headers") or [])
