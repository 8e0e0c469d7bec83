"""Two changes to hypercorn's trio worker: one failing connection never takes the server down,
and websockets are never compressed.

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
"""

from __future__ import annotations

import logging

import hypercorn.trio.run
from hypercorn.protocol import ws_stream
from hypercorn.trio.tcp_server import TCPServer

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


def adjust_hypercorn() -> None:
    """Serve every connection with `OneConnection` and `UncompressedHandshake` (idempotent)."""
    hypercorn.trio.run.TCPServer = OneConnection  # type: ignore[attr-defined]
    ws_stream.Handshake = UncompressedHandshake  # type: ignore[misc]
