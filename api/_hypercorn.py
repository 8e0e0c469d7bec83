"""One failing connection never takes the server down.

hypercorn (0.18, trio worker) lets an exception escape a connection's handler into the
listeners' nursery, which ends the whole server. Any client can cause one: a websocket upgrade
request with a frame right behind it (before any answer) makes hypercorn answer 400 for the
early data while the app sends its own refusal (401 for a missing or bad token), and h11 raises
for the second response (pgjones/hypercorn#225; the per-connection isolation proposed in #228
was reverted upstream). `isolate_connections` has hypercorn's trio worker run each connection
with a handler that closes that connection alone and logs one line.
"""

from __future__ import annotations

import logging

import hypercorn.trio.run
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


def isolate_connections() -> None:
    """Serve every connection with `OneConnection` (idempotent)."""
    hypercorn.trio.run.TCPServer = OneConnection  # type: ignore[attr-defined]
