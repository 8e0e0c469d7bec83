"""Graceful stop: once the server is told to stop (SIGTERM, Ctrl-C), it stops accepting, and every
websocket is closed with 1001 Going Away (a Socket.IO session with its close packet) instead of
being dropped when the HTTP server's grace period runs out. In-flight requests finish within it.

The app's `stopping` event is set when the stop begins; each live connection waits on it.
"""

from __future__ import annotations

import trio
from quart import Quart, current_app

STOPPING_KEY = "switchboard.stopping"
CLOSE_GOING_AWAY = 1001
GOING_AWAY = "the server is stopping; reconnect shortly"


def stopping_event(app: Quart) -> trio.Event:
    """The app's event, set when the server begins to stop (made on first use)."""
    found: trio.Event | None = app.extensions.get(STOPPING_KEY)
    if found is None:
        found = app.extensions[STOPPING_KEY] = trio.Event()
    return found


def stopping() -> trio.Event:
    """The current app's event (inside a request or websocket)."""
    return stopping_event(current_app)
