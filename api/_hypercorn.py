"""Three changes to hypercorn's trio worker: one failing connection never takes the server
down, websockets are never compressed, and the app learns how each websocket was closed.

hypercorn (0.18, trio worker) lets an exception escape a connection's handler into the
listeners' nursery, which ends the whole server. Any client can cause one: a websocket upgrade
request with a frame right behind it (before any answer) makes hypercorn answer 400 for the
early data while the app sends its own refusal (401 for a missing or bad token), and h11 raises
for the second response (pgjones/hypercorn#225; the per-connection isolation proposed in #228
was reverted upstream). `adjust_hypercorn` has hypercorn's trio worker run each connection
with a handler that closes that connection alone and logs one line.

hypercorn agrees to permessage-deflate whenever a client offers it, and inflates a frame before
the app can look at its size: a few kB could cost the server megabytes. Our frames are small
JSON, so compressing them costs both sides more CPU than it saves bytes on the wire (measured by
`switchboard bench socketio`: server and client CPU per message both fell). `UncompressedHandshake`
declines the extension; a frame marked compressed is then a protocol error.

ASGI tells an app only that its websocket is gone, with 1000 or 1006, whoever closed it and
with whatever code. `NotedCloses` writes the first close frame that goes out into the
connection's scope (`CLOSE_KEY`): `("server", code)` for a close the server started (the app's
own, or hypercorn's 1009 for a frame over its size limit), `("client", code)` for the answer to
a client's close, which echoes the client's code. The /ws edge logs it.
"""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.protocol.h2
import hypercorn.protocol.h11
import hypercorn.trio.run
from hypercorn.protocol import ws_stream
from hypercorn.trio.tcp_server import TCPServer
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

log = logging.getLogger("api.server")


class OneConnection(TCPServer):
    """hypercorn's connection handler, except that what escapes it ends only its connection
    (hypercorn closes the stream on the way out)."""

    async def run(self) -> None:
        try:
            await super().run()
        except Exception as error:  # trio's Cancelled is a BaseException: it still goes through
            log.warning("a connection failed inside the HTTP server and was closed: %r", error)


class UncompressedHandshake(ws_stream.Handshake):
    """hypercorn's websocket handshake, offering no extension: permessage-deflate is declined."""

    def __init__(self, headers: list[tuple[bytes, bytes]], http_version: str) -> None:
        super().__init__(headers, http_version)
        self.extensions = None


CLOSE_KEY = "switchboard.websocket_close"
"""The scope's entry for how a websocket was closed: (who started it, the code)."""


class NotedCloses(ws_stream.WSStream):
    """hypercorn's websocket stream, noting the first close frame it sends in the scope."""

    async def _send_wsproto_event(self, event: Any) -> None:
        if isinstance(event, CloseConnection) and CLOSE_KEY not in self.scope:
            answering = self.connection.state == ConnectionState.REMOTE_CLOSING
            self.scope[CLOSE_KEY] = ("client" if answering else "server", event.code)  # type: ignore[literal-required]
        await super()._send_wsproto_event(event)


def adjust_hypercorn() -> None:
    """Serve every connection with `OneConnection`, `UncompressedHandshake` and `NotedCloses`
    (idempotent)."""
    hypercorn.trio.run.TCPServer = OneConnection  # type: ignore[attr-defined]
    ws_stream.Handshake = UncompressedHandshake  # type: ignore[misc]
    hypercorn.protocol.h11.WSStream = NotedCloses  # type: ignore[attr-defined]
    hypercorn.protocol.h2.WSStream = NotedCloses  # type: ignore[attr-defined]
