"""One of the HTTP server's connections over a given stream, with a stand-in for hypercorn's
protocol that records what the connection told it (for the read and write tests)."""

from __future__ import annotations

from typing import Any

import trio

from api._hypercorn import OneConnection, ServerConfig


class Recorded:
    """Stands in for hypercorn's protocol: what the connection told it."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.events.append(event)


def one_connection(stream: trio.SocketStream) -> tuple[OneConnection, Recorded]:
    connection = OneConnection(None, ServerConfig(), None, None, stream)
    protocol = Recorded()
    connection.protocol = protocol  # type: ignore[assignment]
    return connection, protocol
