"""The client's address: one answer for everything that keys on it (the sign-in throttle, the
registration throttle, the request log, the websocket and Socket.IO connect lines).

The connection's peer is the client, unless the peer is one of SWITCHBOARD_TRUSTED_PROXIES:
then X-Forwarded-For is read from its right end (the entry the trusted proxy added) leftwards,
past every trusted proxy, and the first address that is not one is the client. Entries further
left were written by the client itself and are never believed. Nobody else's header counts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import cache

from quart import Request, Websocket, has_request_context, request, websocket

from api._services import services

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


@cache
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """SWITCHBOARD_TRUSTED_PROXIES' addresses and networks (`10.0.0.7`, `10.1.0.0/16`)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
) -> str:
    """The client behind `peer`: `forwarded_for` (the X-Forwarded-For headers, in order) is
    believed only as far as it was written by trusted proxies."""
    client = peer or UNKNOWN
    if not trusted or not _trusted(client, trusted):
        return client
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        try:
            hop = str(ipaddress.ip_address(hop))
        except ValueError:
            return client  # garbage from the client: the last proxy's peer is what we know
        client = hop
        if not _trusted(client, trusted):
            return client
    return client


def client_of(connection: Request | Websocket, trusted_proxies: Sequence[str]) -> str:
    return client_address(
        connection.remote_addr,
        connection.headers.getlist("X-Forwarded-For"),
        networks(tuple(trusted_proxies)),
    )


def current_client() -> str:
    """The client of the request or websocket handshake being handled."""
    connection: Request | Websocket = request if has_request_context() else websocket
    return client_of(connection, services().settings.trusted_proxies)
