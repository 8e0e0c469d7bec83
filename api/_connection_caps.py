"""Live connections per principal, /ws and Socket.IO together: one token cannot hold hundreds.

A new connection over its principal's cap is refused with `too_many_connections` (an HTTP 429
before the websocket is accepted, a CONNECT_ERROR on Socket.IO); the connections already open
are never dropped for it. Counted in this process (one node of a cluster).
"""

from __future__ import annotations

from collections import Counter

from quart import current_app

from api._auth import Principal
from api._config import Settings
from api._services import services
from store import Role
from telemetry import limit_hit

CAPS_KEY = "switchboard.connection_caps"


class TooManyConnections(Exception):
    """The principal has as many live connections as it may; the message says so.
    `retry_after`: by then a connection whose peer vanished has missed its ping and is cut."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Slot:
    """One live connection's place in its principal's count; `release` once it ends."""

    __slots__ = ("_caps", "_user_id")

    def __init__(self, caps: ConnectionCaps, user_id: str) -> None:
        self._caps: ConnectionCaps | None = caps
        self._user_id = user_id

    def release(self) -> None:
        caps, self._caps = self._caps, None
        if caps is not None:
            caps.released(self._user_id)


class ConnectionCaps:
    def __init__(self, settings: Settings) -> None:
        self._staff = settings.max_connections_per_staff
        self._customer = settings.max_connections_per_customer
        self._live: Counter[str] = Counter()
        self._retry_after = settings.ws_ping_interval_seconds + settings.ws_ping_timeout_seconds

    def take(self, principal: Principal) -> Slot:
        user_id = principal.user.id
        customer = principal.role is Role.CUSTOMER
        limit = self._customer if customer else self._staff
        if self._live[user_id] >= limit:
            limit_hit("connections", principal=user_id, live=self._live[user_id])
            kind = "a customer" if customer else "a staff account"
            raise TooManyConnections(
                f"you have {limit} live connections, the most {kind} may have; close one "
                "(another tab or device) and connect again",
                self._retry_after,
            )
        self._live[user_id] += 1
        return Slot(self, user_id)

    def released(self, user_id: str) -> None:
        self._live[user_id] -= 1
        if self._live[user_id] <= 0:
            del self._live[user_id]


def connection_caps() -> ConnectionCaps:
    """The app's counts (made on first use)."""
    found: ConnectionCaps | None = current_app.extensions.get(CAPS_KEY)
    if found is None:
        found = current_app.extensions[CAPS_KEY] = ConnectionCaps(services().settings)
    return found
