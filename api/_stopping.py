"""Graceful stop: once the server is told to stop (SIGTERM, Ctrl-C), it stops accepting, and every
websocket is closed with 1001 Going Away (a Socket.IO session with its close packet) instead of
being dropped when the HTTP server's grace period runs out. In-flight requests finish within it.

The app's `Stopping` is set when the stop begins; each live connection is told.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio
from quart import Quart, current_app

STOPPING_KEY = "switchboard.stopping"
CLOSE_GOING_AWAY = 1001
GOING_AWAY = "the server is stopping; reconnect shortly"


class Stopping:
    """Set once, when the server begins to stop. A connection asks to be told (`telling`)
    rather than keeping a task of its own waiting on an event: ten thousand idle websockets
    would hold ten thousand such tasks."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._told: set[Callable[[], None]] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self) -> None:
        if self._event.is_set():
            return
        self._event.set()
        for tell in list(self._told):
            tell()

    def tell(self, tell: Callable[[], None]) -> None:
        """Call `tell` once the stop begins (at once if it has), until `forget(tell)`. For a
        connection's whole life, where a `telling` block would keep a generator and its
        context manager on the connection's frame."""
        if self._event.is_set():
            tell()
        self._told.add(tell)

    def forget(self, tell: Callable[[], None]) -> None:
        self._told.discard(tell)

    @contextmanager
    def telling(self, tell: Callable[[], None]) -> Iterator[None]:
        """Call `tell` once the stop begins (at once if it has) while the block runs."""
        self.tell(tell)
        try:
            yield
        finally:
            self.forget(tell)


def stopping_event(app: Quart) -> Stopping:
    """The app's stop, set when the server begins to stop (made on first use)."""
    found: Stopping | None = app.extensions.get(STOPPING_KEY)
    if found is None:
        found = app.extensions[STOPPING_KEY] = Stopping()
    return found


def stopping() -> Stopping:
    """The current app's stop (inside a request or websocket)."""
    return stopping_event(current_app)
