"""Quart-Trio's websocket connection without its pump task.

Quart-Trio runs two tasks per websocket: one moves each frame from the ASGI `receive` into a
channel of its own (sending a signal on the way), the other runs the handler, which reads that
channel. Every frame in costs a task switch and a channel more than it needs. `DirectWebsocket`
has the handler's `receive` read the ASGI events itself, and makes no channel; every frame out
skips Quart's signal. Nothing in Switchboard listens to Quart's websocket signals.

A disconnect still ends the handler: the stream cancels the app when its peer is gone
(api/_hypercorn.Websocket), and a `websocket.disconnect` read here cancels it too.

A handler may also hand its accepted connection over (`serve_after_handshake`): the handshake
(checks, refusals, their log lines) runs in Quart as any handler does, then Quart's dispatch
returns and the connection is served by the `Accepted` it left, reading and writing through
this object. Quart's contexts, `g`, session, url adapter, headers and six coroutines of its
dispatch are then gone for the connection's life (about 6 KB per idle connection). Under
api/_hypercorn the server runs the `Accepted` once the app's call has returned
(`AFTER_KEY`), so the coroutines of the middleware and of Quart's entry go too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope
from quart import Websocket, websocket
from quart.asgi import ASGIWebsocketConnection
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIWebsocketConnection

from api._hypercorn import AFTER_KEY, CANCEL_KEY, AppQueue, FrameHandler, _CancellableApp
from api._hypercorn import Websocket as Stream


class _Cancels(Protocol):
    """What ends the handler, or what serves the connection after it (the server's `CANCEL_KEY`)."""

    def cancel(self) -> None: ...


class DirectWebsocket(TrioASGIWebsocketConnection):
    """The handler's `receive` reads the ASGI events (see the module's doc)."""

    def __init__(self, app: QuartTrio, scope: WebsocketScope) -> None:
        # Quart-Trio's, without the channel its pump task would fill: it is never read here,
        # and it lived as long as the connection.
        self.app = app
        self.scope = scope
        self._accepted = False
        self._closed_ = False
        self.receive_channel = _NO_CHANNEL  # type: ignore[assignment]
        # Set as it is called: the ASGI events, and the scope a disconnect cancels.
        self._asgi_receive: ASGIReceiveCallable
        self._asgi_send: ASGISendCallable
        self._gone: _Cancels | trio.CancelScope

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        websocket = self._create_websocket_from_scope(send)
        # A disconnect read ends the handler: it cancels what the server runs the app in when
        # the server gives it (api/_hypercorn), else a scope of this call's own.
        given: _Cancels | None = self.scope.get(CANCEL_KEY)  # type: ignore[assignment]
        own = trio.CancelScope() if given is None else None
        self._gone = own if own is not None else given  # type: ignore[assignment]
        with own if own is not None else nullcontext():
            self._asgi_receive = receive
            self._asgi_send = send
            websocket._receive = self.receive
            # ASGI's first event (Quart-Trio's pump read it). Left queued, the accepted
            # connection counted it as a frame waiting and its task waited behind it for the
            # client's first frame: an idle client that never sent one kept that task for life.
            if (await receive())["type"] != "websocket.connect":
                return  # gone before it was offered to the app
            try:
                await ASGIWebsocketConnection.handle_websocket(self, websocket, send)
            except BaseException:
                accepted = _take_accepted(self.scope)
                if accepted is not None:
                    accepted.abandon()
                raise
            accepted = _take_accepted(self.scope)
            if accepted is None:
                return
            if given is not None:
                # The server serves it once this call has returned: the frames of Quart's
                # dispatch and of the middleware (about 1.5 KB) do not stay for its life.
                self.scope[AFTER_KEY] = partial(accepted.serve, self)  # type: ignore[literal-required]
                return
            del websocket  # and with it what Quart kept for the handshake
            await accepted.serve(self)

    @property
    def _closed(self) -> bool:
        # Quart closes an accepted websocket as its handler returns, unless closed already: a
        # connection handed over is not closed then.
        return self._closed_ or ACCEPTED_KEY in self.scope

    @_closed.setter
    def _closed(self, closed: bool) -> None:
        self._closed_ = closed

    # --- the accepted connection, once its handler handed it over -----------------------------

    async def receive(self) -> str | bytes:
        """The next frame's data, as Quart hands it over (an empty binary frame as None)."""
        while True:
            event = await self._asgi_receive()
            if event["type"] == "websocket.receive":
                data: str | bytes = event.get("bytes") or event.get("text")  # type: ignore[assignment]
                return data
            if event["type"] == "websocket.disconnect":
                self._gone.cancel()
                await trio.lowlevel.checkpoint()  # raises Cancelled, caught by that scope

    async def send(self, data: str) -> None:
        await self.send_data(self._asgi_send, data)

    async def send_texts(self, texts: list[str]) -> bool:
        """`send` of each of `texts`, in one write to the socket; False, sending nothing, when
        the server cannot (send them one by one then)."""
        stream = self._stream()
        return stream is not None and await stream.send_texts(texts)

    def can_send_texts_now(self) -> bool:
        """Whether `send_texts_now` would send: nothing is being written or owed to the socket
        (checked since the caller's last checkpoint)."""
        stream = self._stream()
        return stream is not None and stream.can_send_texts_now()

    def send_texts_now(self, texts: list[str]) -> None:
        """`send_texts` without waiting, for a caller that must not: only where
        `can_send_texts_now` (api/_hypercorn's `send_texts_now`)."""
        stream = self._stream()
        assert stream is not None
        stream.send_texts_now(texts)

    def _stream(self) -> Stream | None:
        """The server's websocket stream this connection sends through (hypercorn's `app_send`
        is its method); None under another server."""
        stream = getattr(self._asgi_send, "__self__", None)
        return stream if isinstance(stream, Stream) else None

    def frames_waiting(self) -> int | None:
        """How many frames the server has read for this connection that `receive` has not
        returned yet; None when the server does not say."""
        queue = getattr(self._asgi_receive, "__self__", None)
        return len(queue) if isinstance(queue, AppQueue) else None

    async def close(self, code: int, reason: str = "") -> None:
        await self.close_connection(self._asgi_send, code, reason)

    def take_frames(self, handler: FrameHandler) -> None:
        """Have the server hand every frame from now on to `handler`, in its reader task, and
        tell it when the peer is gone; the caller's task may then end (api/_hypercorn's
        `take_frames`: the serving is done when `done` says so). Only under that server."""
        self._server().take_frames(handler)

    def give_back_frames(self) -> None:
        """Frames are queued for `receive` again (api/_hypercorn's `give_back_frames`): the
        handler that took them is done, and the caller's task, which stayed, returns."""
        self._server().give_back_frames()

    def spawn(self, run: Callable[[], Awaitable[None]]) -> None:
        """Start `run` in the connection's task group (RuntimeError once it has ended)."""
        self._server().spawn(run)

    async def done(self) -> None:
        """Serving the connection handed to a `FrameHandler` is over."""
        await self._server().done()

    def _server(self) -> _CancellableApp:
        given = self.scope.get(CANCEL_KEY)
        if not isinstance(given, _CancellableApp):
            raise RuntimeError("frames are handed to a handler under api/_hypercorn's server only")
        return given

    async def send_data(self, send: ASGISendCallable, data: str | bytes) -> None:
        stream = getattr(send, "__self__", None)  # hypercorn's `app_send` is the stream's
        if isinstance(data, str) and isinstance(stream, Stream):
            await stream.send_text(data)
        elif isinstance(data, str):
            await send({"type": "websocket.send", "bytes": None, "text": data})
        else:
            await send({"type": "websocket.send", "bytes": data, "text": None})


ACCEPTED_KEY = "switchboard.accepted"
"""The scope's entry for the `Accepted` a handler left (`serve_after_handshake`)."""


class Accepted(Protocol):
    """An accepted websocket's service, run once Quart's dispatch has returned."""

    async def serve(self, connection: DirectWebsocket) -> None:
        """Serve the connection until it ends (its `receive`, `send` and `close`)."""

    def abandon(self) -> None:
        """The connection ended before `serve` could run: let go of what was taken for it."""


def serve_after_handshake(accepted: Accepted) -> None:
    """Have the current websocket, accepted, served by `accepted` once its handler returns."""
    websocket.scope[ACCEPTED_KEY] = accepted  # type: ignore[literal-required]


def _take_accepted(scope: WebsocketScope) -> Accepted | None:
    entries: dict[str, Any] = scope  # type: ignore[assignment]
    found: Accepted | None = entries.pop(ACCEPTED_KEY, None)
    return found


class _NoChannel:
    """Where Quart-Trio's websocket would read its channel: `DirectWebsocket.__call__` gives the
    websocket `DirectWebsocket.receive` instead before anything reads."""

    @staticmethod
    async def receive() -> str | bytes:
        raise RuntimeError("DirectWebsocket reads the ASGI events itself")


_NO_CHANNEL = _NoChannel()


def current_websocket() -> Websocket:
    """The request's websocket itself, not Quart's `websocket` proxy, which looks the object up
    in the context on every use: a connection reads and writes through it for every frame."""
    found: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
    return found


@dataclass(frozen=True, slots=True)
class AcceptedFrames:
    """An accepted websocket's frames, read and written past Quart's `Websocket`, whose `receive`
    and `send` accept again before every frame (a werkzeug `Headers` and two coroutines each)."""

    receive: Callable[[], Coroutine[Any, Any, str | bytes]]
    send: Callable[[str], Coroutine[Any, Any, None]]
    _close: Callable[[int, str], Coroutine[Any, Any, None]]
    scope: WebsocketScope
    frames_waiting: Callable[[], int | None]
    """How many frames are read and waiting for `receive`; None when unknown."""
    send_texts: Callable[[list[str]], Coroutine[Any, Any, bool]]
    """`send` of each text in one write to the socket; False, sending nothing, when it cannot."""
    can_send_texts_now: Callable[[], bool]
    """Whether `send_texts_now` would send (checked since the caller's last checkpoint)."""
    send_texts_now: Callable[[list[str]], None]
    """`send_texts` without waiting, where `can_send_texts_now` (`DirectWebsocket`)."""
    take_frames: Callable[[FrameHandler], None]
    """Hand every frame from now on to a handler in the server's reader task (`DirectWebsocket`)."""
    give_back_frames: Callable[[], None]
    """Queue the frames for `receive` again, once the handler is done."""

    async def close(self, code: int, reason: str = "") -> None:
        await self._close(code, reason)


def accepted_frames(accepted: Websocket) -> AcceptedFrames:
    """The frames of `accepted`, a websocket its handler has accepted (the app's websockets are
    `DirectWebsocket`s: api/_app.py)."""
    receive = accepted._receive  # the callables Quart made it with
    direct = getattr(receive, "__self__", None)
    assert isinstance(direct, DirectWebsocket), "the app serves its websockets directly"
    return AcceptedFrames(
        receive,
        accepted._send,
        accepted._close,
        accepted.scope,  # type: ignore[arg-type]
        direct.frames_waiting,
        direct.send_texts,
        direct.can_send_texts_now,
        direct.send_texts_now,
        direct.take_frames,
        direct.give_back_frames,
    )
