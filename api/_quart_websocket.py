"""Quart-Trio's websocket connection without its pump task.

Quart-Trio runs two tasks per websocket: one moves each frame from the ASGI `receive` into a
channel of its own (sending a signal on the way), the other runs the handler, which reads that
channel. Every frame in costs a task switch and a channel more than it needs. `DirectWebsocket`
has the handler's `receive` read the ASGI events itself, and makes no channel; every frame out
skips Quart's signal. Nothing in Switchboard listens to Quart's websocket signals.

A disconnect still ends the handler: the stream cancels the app when its peer is gone
(api/_hypercorn.Websocket), and a `websocket.disconnect` read here cancels it too.
"""

from __future__ import annotations

from functools import partial

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope
from quart import Websocket, websocket
from quart.asgi import ASGIWebsocketConnection
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIWebsocketConnection


class DirectWebsocket(TrioASGIWebsocketConnection):
    """The handler's `receive` reads the ASGI events (see the module's doc)."""

    def __init__(self, app: QuartTrio, scope: WebsocketScope) -> None:
        # Quart-Trio's, without the channel its pump task would fill: it is never read here,
        # and it lived as long as the connection.
        self.app = app
        self.scope = scope
        self._accepted = False
        self._closed = False
        self.receive_channel = _NO_CHANNEL  # type: ignore[assignment]

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        websocket = self._create_websocket_from_scope(send)
        with trio.CancelScope() as gone:
            websocket._receive = partial(_next_frame, receive, gone)
            await ASGIWebsocketConnection.handle_websocket(self, websocket, send)

    async def send_data(self, send: ASGISendCallable, data: str | bytes) -> None:
        if isinstance(data, str):
            await send({"type": "websocket.send", "bytes": None, "text": data})
        else:
            await send({"type": "websocket.send", "bytes": data, "text": None})


class _NoChannel:
    """Where Quart-Trio's websocket would read its channel: `DirectWebsocket.__call__` gives the
    websocket `_next_frame` instead before anything reads."""

    @staticmethod
    async def receive() -> str | bytes:
        raise RuntimeError("DirectWebsocket reads the ASGI events itself")


_NO_CHANNEL = _NoChannel()


async def _next_frame(receive: ASGIReceiveCallable, gone: trio.CancelScope) -> str | bytes:
    """The next frame's data, as Quart hands it over (an empty binary frame as None)."""
    while True:
        event = await receive()
        if event["type"] == "websocket.receive":
            data: str | bytes = event.get("bytes") or event.get("text")  # type: ignore[assignment]
            return data
        if event["type"] == "websocket.disconnect":
            gone.cancel()
            await trio.lowlevel.checkpoint()  # raises Cancelled, caught by `gone`
        # websocket.connect: nothing to do


def current_websocket() -> Websocket:
    """The request's websocket itself, not Quart's `websocket` proxy, which looks the object up
    in the context on every use: a connection reads and writes through it for every frame."""
    found: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
    return found
