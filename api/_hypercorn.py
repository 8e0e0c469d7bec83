"""Changes to hypercorn's trio worker: one failing connection never takes the server down,
websockets are never compressed, the app learns how each websocket was closed, and no
connection outlives its peer: every close completes or is cut, and a peer that stops reading
or answering is cut.

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
with whatever code. `Websocket` writes the first close frame that goes out into the
connection's scope (`CLOSE_KEY`): `("server", code)` for a close the server started (the app's
own, or hypercorn's 1009 for a frame over its size limit), `("client", code)` for the answer to
a client's close, which echoes the client's code. The /ws edge logs it.

Connections that would never end in hypercorn as it is (each held a file handle for good):
- A websocket whose app stopped reading (it is closing a flooder) stopped the connection's
  reader too: the frames still coming filled the app's queue, the reader waited for room, and
  the close that follows the app's return waited for the same room. `Websocket` discards what
  arrives once a close frame has gone out, and a websocket that is gone cancels its app, as
  Quart-Trio does on a disconnect, instead of queueing the news behind unread frames.
- hypercorn ends the TCP connection as soon as the app returns, before the peer's close frame
  (closing with unread data makes the kernel answer with a reset, which may destroy the close
  frame in flight). A close the server starts now completes: frames are read and discarded
  until the peer's close arrives, and after `websocket_close_timeout` the connection is aborted.
- hypercorn's pings were never checked: a peer that vanished without a FIN was kept forever.
  A peer that does not answer a ping within `websocket_ping_timeout` is cut. hypercorn kept a
  task per websocket for its pings; one clock for the whole server (api/_deadlines) keeps
  every websocket's next ping and pong deadline instead, and a websocket gets a task only while
  one is due.
- A write to a peer that stopped reading waited forever (shielded). `OneConnection` gives each
  write `send_timeout`, then aborts the connection.
- A kept-alive HTTP connection idle after its first answer was never closed: hypercorn starts
  its idle timer with `nursery.start` from the task that ends the answer, which under
  Quart-Trio runs inside a nursery cancelled as the answer ends, and the timer died with it.
  Any client could hold a file handle for good with one request, and a stop waited for its
  whole grace period on every idle browser or proxy connection. `IdleTimer` starts the timer
  in the connection's own task group, so `keep_alive_timeout` and a stop close it.
- For the same reason an answer that ends its connection (`Connection: close`, HTTP/1.0, an
  early answer with the body still coming, any answer while the server stops) never closed
  it: the close ran in the answer's cancelled task and stopped at its first checkpoint. The
  socket stayed open until the peer closed it. `OneConnection` closes shielded.

An app hypercorn refused after starting it was never told either: a frame right behind the
upgrade request is answered 400 and the stream closed, while the app went on to accept into the
closed stream and serve it until the server stopped (and never logged its end), holding the
principal's connection slot and presence. A stream closed that way now ends its app too.

Aborting resets the TCP connection (SO_LINGER 0): the file handle and the kernel's buffers are
freed at once, nothing is retransmitted to a peer that is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from math import inf
from typing import Any, Protocol

import h11
import hypercorn.protocol.h2
import hypercorn.protocol.h11
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data, Request, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h11 import H11Protocol, H11WSConnection
from hypercorn.protocol.ws_stream import ASGIWebsocketState, FrameTooLargeError
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.task_group import _handle as _handle_app
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.typing import (
    AppWrapper,
    ASGIReceiveCallable,
    H11SendableEvent,
    Scope,
)
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping, Pong
from wsproto.events import Event as WsprotoEvent
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from api._client_frames import received_events
from api._deadlines import Entry, deadlines

log = logging.getLogger("api.server")


class ServerConfig(Config):
    """hypercorn's configuration with the bounds this module adds (seconds)."""

    # A close the server started: how long the peer has to answer with its own close frame.
    websocket_close_timeout: float = 5.0
    # How long a peer has to answer a websocket ping.
    websocket_ping_timeout: float = 20.0
    # How long one write may wait for a peer to read.
    send_timeout: float = 20.0


_connection: ContextVar[OneConnection] = ContextVar("switchboard_connection")


class IdleTimer:
    """hypercorn's `TrioSingleTask` for a connection's idle timer, started with `start_soon`
    in the connection's task group: never a child of the caller's task (see the module's doc)."""

    __slots__ = ("_scope",)

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None

    async def restart(self, task_group: TaskGroup, action: Callable[[], Awaitable[None]]) -> None:
        await self.stop()
        scope = self._scope = trio.CancelScope()

        async def run() -> None:
            with scope:
                await action()

        task_group.spawn(run)

    async def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None


class OneConnection(TCPServer):
    """hypercorn's connection handler, except that what escapes it ends only its connection
    (hypercorn closes the stream on the way out), a write waits at most `send_timeout`, and
    an idle connection is closed after `keep_alive_timeout` or when the server stops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = IdleTimer()  # type: ignore[assignment]
        self.websocket: Websocket | None = None  # the connection's, once upgraded
        # Bytes that must reach the socket before any written after them (`write_now` could
        # not write them all at once): whoever holds the send lock writes them, in order, with
        # whatever is added meanwhile. None while nothing is owed.
        self._owed: bytearray | None = None

    async def run(self) -> None:
        # The connection's streams are made in this task (and their tasks inherit its context):
        # they find the connection to abort here.
        _connection.set(self)
        try:
            await super().run()
        except Exception as error:  # trio's Cancelled is a BaseException: it still goes through
            log.warning("a connection failed inside the HTTP server and was closed: %r", error)

    async def _read_data(self) -> None:
        try:
            if self.config.read_timeout or not isinstance(self.stream, trio.SocketStream):
                await super()._read_data()
                return
            # hypercorn's loop without its deadline when there is none (`fail_after(inf)`: a
            # cancel scope and a generator), reading the socket itself: `receive_some` waits
            # inside four more coroutines (the stream's, its error translation, trio's socket
            # method and its non-blocking helper), and every idle connection kept them all.
            raw = self.stream.socket
            while True:
                await trio.lowlevel.checkpoint_if_cancelled()
                fd = raw.fileno()
                if fd == -1:  # closed (aborted) by another task
                    break
                try:
                    data = os.read(fd, MAX_RECV)
                except BlockingIOError:
                    data = None  # waited for outside the handler: the exception is not kept
                except OSError:  # reset by the peer: what `receive_some` raises as broken
                    break
                if data is None:
                    try:
                        await trio.lowlevel.wait_readable(raw)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        break
                    continue
                # As trio's own receive: a checkpoint after each read, so a peer that always
                # has data waiting cannot keep the other tasks from running.
                await trio.lowlevel.cancel_shielded_checkpoint()
                await self.protocol.handle(RawData(data))
                if data == b"":
                    break
            await self.protocol.handle(Closed())
        except BaseException:
            # Cancelled (the server's last moment) or failed: a websocket served without a task
            # of its own (its frames handled here) learns of its end from this task.
            if self.websocket is not None:
                self.websocket.cut()
            raise

    async def _close(self) -> None:
        # Shielded: often run by the task of an answer that Quart-Trio has just cancelled.
        with trio.CancelScope(shield=True):
            await super()._close()

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        data = event.data
        try:
            data = self._send_now(data)
        except OSError:
            await self.protocol.handle(Closed())
            return
        if not data:
            return
        self._owe(data)
        await self._write_owed()

    def _owe(self, data: bytes) -> None:
        if self._owed is None:
            self._owed = bytearray(data)
        else:
            self._owed += data

    async def _write_owed(self) -> None:
        """Write what is owed, and what is owed meanwhile, under the send lock."""
        broken = False
        # Shielded as hypercorn does (a cancelled write would corrupt the stream, and part of
        # this one may have gone out), but bounded: a peer that does not read for
        # `send_timeout` is aborted. One scope for both.
        timeout = _send_timeout(self.config)
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout) as bound:
            async with self.send_lock:
                try:
                    while self._owed:
                        data, self._owed = bytes(self._owed), None
                        bound.deadline = trio.current_time() + timeout  # for each write
                        await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    broken = True
        if bound.cancelled_caught:
            log.info("a peer read nothing for %gs and was cut", _send_timeout(self.config))
            await self.abort()
        if broken or bound.cancelled_caught:
            self._owed = None  # the connection is over: nothing more goes out
            await self.protocol.handle(Closed())

    def _send_now(self, data: bytes) -> bytes:
        """Write what the socket takes now, without waiting: what is left to send. Nothing
        else is writing (the lock is free, nothing is owed) and this does not yield, so no other
        write can come between; most writes fit in the socket's buffer and cost no trip through
        the scheduler. Not for TLS streams (their bytes must go through the TLS layer)."""
        raw = getattr(self.stream, "socket", None)
        if raw is None or self.send_lock.locked() or self._owed is not None:
            return data
        try:
            sent = os.write(raw.fileno(), data)
        except BlockingIOError:
            return data
        return data[sent:]

    def can_write_now(self) -> bool:
        """Whether `write_now` can take bytes: a plain socket (TLS bytes go through its layer)
        that nothing is writing to and nothing is owed to. A caller that must not wait writes
        only then; else it queues for a task of its own, whose wait is what slows it."""
        return (
            getattr(self.stream, "socket", None) is not None
            and self._owed is None
            and not self.send_lock.locked()
        )

    def write_now(self, data: bytes) -> None:
        """Send `data` without waiting, from a caller that must not (a websocket's frames, from
        the domain's side): what the socket takes now is written at once; the rest is owed, and
        a task of the connection's writes it before anything sent later. Only where
        `can_write_now`, checked since the caller's last checkpoint."""
        assert self.can_write_now()
        with contextlib.suppress(OSError):  # broken: the owed write finds out, and ends it
            data = self._send_now(data)
        if not data:
            return
        self._owe(data)
        with contextlib.suppress(RuntimeError, AttributeError):  # the connection is over
            self._task_group.spawn(self._write_owed)

    async def abort(self) -> None:
        """Reset the TCP connection: its file handle and buffers are freed at once."""
        raw = getattr(self.stream, "socket", None)
        if raw is not None:
            with contextlib.suppress(OSError):  # closed already
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


def _send_timeout(config: Config) -> float:
    return getattr(config, "send_timeout", inf)


class UncompressedHandshake(ws_stream.Handshake):
    """hypercorn's websocket handshake, offering no extension: permessage-deflate is declined.
    The wsproto connection it accepts with queues its rare events (a close on EOF) in a list,
    not a deque: an empty deque holds a 760-byte block for the connection's whole life."""

    def __init__(self, headers: list[tuple[bytes, bytes]], http_version: str) -> None:
        super().__init__(headers, http_version)
        self.extensions = None

    def accept(
        self, subprotocol: str | None, additional_headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[int, list[tuple[bytes, bytes]], WSConnection]:
        status_code, headers, connection = super().accept(subprotocol, additional_headers)
        if isinstance(getattr(connection, "_events", None), deque):
            connection._events = _Events(connection._events)  # type: ignore[assignment]
        return status_code, headers, connection


class SwitchedConnection(H11WSConnection):
    """hypercorn's HTTP/1.1 side of a websocket, which lets go of the h11 connection (its parser
    and state, about 2 KB) once the 101 that switches protocols is written: after it only raw
    bytes go either way, and h11 itself would refuse any other HTTP event."""

    def send(self, event: H11SendableEvent) -> bytes:
        data = self.h11_connection.send(event)
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            self.h11_connection = _SWITCHED
        return data


class _Switched:
    """What is left of the h11 connection after the 101: it sends nothing (as h11 refuses)."""

    @staticmethod
    def send(event: H11SendableEvent) -> bytes:
        raise h11.LocalProtocolError("the connection switched to the websocket protocol")


_SWITCHED: Any = _Switched()


class _Accepted:
    """What is left of a websocket's handshake once accepted: that it was."""

    accepted = True


_ACCEPTED: Any = _Accepted()


class _Events(list[Any]):
    """What wsproto's connection does with its event queue (append, popleft, truth), on a list."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


CLOSE_KEY = "switchboard.websocket_close"
"""The scope's entry for how a websocket was closed: (who started it, the code)."""
BATCH_KEY = "switchboard.websocket_batch"
"""The scope's entry for `Batch`: frames sent meanwhile leave in one write to the socket."""
CANCEL_KEY = "switchboard.websocket_cancel"
"""The scope's entry for what cancels the websocket's app (`cancel`, as a cancel scope): an app
that reads its peer's disconnect ends itself with it instead of entering a scope of its own.
What serves the websocket after the app (`AFTER_KEY`) hands its own scope over to it."""
AFTER_KEY = "switchboard.websocket_after"
"""The scope's entry an app may leave for what serves its websocket once the app has returned
(a coroutine function of no arguments), run in the app's task: the frames of the app's call
chain (the framework's dispatch, the middleware) do not stay for the connection's life. It runs
outside the app's cancel scope, and must give `CANCEL_KEY`'s `hand_over` a scope of its own
before its first checkpoint: the peer's end cancels that one."""


class Batch:
    """While a block of `async with scope[BATCH_KEY]:` runs, the websocket's data frames are
    kept and then written to the socket at once: one system call and one wake-up of the peer
    for all of them, where each frame cost its own (the largest cost of a frame on loopback).
    Any other frame (a ping, a close) first writes what was kept, so the order stays."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Websocket) -> None:
        self._stream = stream

    async def __aenter__(self) -> None:
        self._stream._kept = bytearray()

    async def __aexit__(self, *_: object) -> None:
        await self._stream._write_kept()


class FrameHandler(Protocol):
    """What reads an accepted websocket's frames once its app's task has ended (`take_frames`)."""

    async def frame(self, data: str | bytes | None, more: bool) -> None:
        """One frame's data, as the app would read it (an empty binary frame is None), in the
        connection's reader task: no frame is read meanwhile. `more`: other frames of the same
        read follow it at once (or may: the server cannot always tell)."""

    def gone(self) -> None:
        """The peer is gone (or the connection is cut): end, without blocking."""


class _CancellableApp:
    """The app of one websocket, run in a scope the stream can cancel, with the stream's
    `Batch` and this object (`CANCEL_KEY`) in its ASGI scope; then what the app left to serve
    the websocket (`AFTER_KEY`), in that scope or in one it hands over to (`hand_over`), which
    may hand the frames to a `FrameHandler` (`take_frames`) and end the task."""

    __slots__ = ("app", "batch", "handler", "scope")

    def __init__(self, app: AppWrapper, batch: Batch) -> None:
        self.app = app
        self.scope = trio.CancelScope()
        self.batch = batch
        self.handler: FrameHandler | None = None

    def cancel(self) -> None:
        """The stream's peer is gone: end the app, or what serves the websocket after it."""
        if self.handler is not None:
            self.handler.gone()
        else:
            self.scope.cancel()

    def hand_over(self, scope: trio.CancelScope) -> None:
        """Cancel `scope` from now on instead of the handshake's (at once if the peer is gone
        already)."""
        if self.scope.cancel_called:
            scope.cancel()
        self.scope = scope

    def take_frames(self, handler: FrameHandler) -> None:
        """Hand every frame read from now on to `handler` in the connection's reader task, and
        tell it when the peer is gone (at once if it is): the app's task may end without the
        app being done, so an idle connection keeps no task of its own. Whatever serves the
        connection says when it is done (`done`)."""
        self.handler = handler
        if self.scope.cancel_called:
            handler.gone()

    def give_back_frames(self) -> None:
        """Frames from now on are queued for the app again, and the peer's end cancels it: for
        an app whose task stayed while a handler took the frames, and which returns now."""
        self.handler = None

    def spawn(self, run: Callable[[], Awaitable[None]]) -> None:
        """Start `run` in the connection's task group: it ends with the connection at the latest.
        RuntimeError once the connection's tasks have ended."""
        self.batch._stream.task_group.spawn(run)

    async def done(self) -> None:
        """What serves the websocket after `take_frames` is done: as the app's return is."""
        await self.batch._stream.app_send(None)

    async def run(
        self,
        config: Config,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        """The app's task: what hypercorn's `_handle` does around an app (its errors logged, the
        stream told the app is done), in this one coroutine: hypercorn's was one more. It ends
        as soon as the frames are handed to a `FrameHandler`."""
        scope[BATCH_KEY] = self.batch  # type: ignore[literal-required]
        scope[CANCEL_KEY] = self  # type: ignore[literal-required]
        after: Callable[[], Awaitable[None]] | None = None
        try:
            with self.scope:
                await self.app(scope, receive, send, trio.to_thread.run_sync, trio.from_thread.run)
                after = scope.pop(AFTER_KEY, None)  # type: ignore[misc]
            if after is not None:
                # Outside the handshake's scope: `after` hands a scope of its own over before its
                # first checkpoint, so an idle connection keeps one scope (and its two sets) less.
                await after()
        except trio.Cancelled:
            raise
        except BaseExceptionGroup as error:
            _, other_errors = error.split(trio.Cancelled)
            if other_errors is not None:
                await config.log.exception("Error in ASGI Framework")
                await send(None)
            else:
                raise
        except Exception:
            await config.log.exception("Error in ASGI Framework")
        finally:
            if self.handler is None:
                await send(None)


class AppQueue:
    """What hypercorn's memory channel between a websocket and its app does (bounded, in order,
    put waiting for room, one reader), keeping nothing while empty: a channel keeps a deque, two
    ordered dicts and two sets for the connection's whole life (about 2 KiB)."""

    __slots__ = ("_capacity", "_handed", "_items", "_putters", "_receiver")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[Any] | None = None
        self._receiver: trio.lowlevel.Task | None = None  # the app, waiting for a message
        self._handed: Any = None  # the message handed to the app as it was woken
        self._putters: deque[list[Any]] | None = None  # [task, message] waiting for room

    def __len__(self) -> int:
        """The messages queued for the app and not read yet."""
        return 0 if self._items is None else len(self._items)

    def put_nowait(self, message: Any) -> None:
        """Hand `message` to the waiting app or queue it; `trio.WouldBlock` when full."""
        if self._receiver is not None:
            task, self._receiver = self._receiver, None
            self._handed = message
            trio.lowlevel.reschedule(task)
            return
        if self._items is not None and len(self._items) >= self._capacity:
            raise trio.WouldBlock
        if self._items is None:
            if self._capacity <= 0:
                raise trio.WouldBlock
            self._items = deque()
        self._items.append(message)

    async def put(self, message: Any) -> None:
        """`put_nowait`, waiting for room; a checkpoint either way, as a channel's `send`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.put_nowait(message)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        entry = [trio.lowlevel.current_task(), message]
        if self._putters is None:
            self._putters = deque()
        putters = self._putters
        putters.append(entry)

        def abort(_: object) -> trio.lowlevel.Abort:
            putters.remove(entry)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def receive(self) -> Any:
        """The next message, waiting for one."""
        await trio.lowlevel.checkpoint_if_cancelled()
        items, putters = self._items, self._putters
        if items:
            message = items.popleft()
            if putters:  # room for the oldest waiting put
                task, waiting = putters.popleft()
                items.append(waiting)
                trio.lowlevel.reschedule(task)
            if not items:
                self._items = None
            await trio.lowlevel.cancel_shielded_checkpoint()
            return message
        if putters:  # no room at all (capacity 0): straight from the put
            task, message = putters.popleft()
            trio.lowlevel.reschedule(task)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return message
        if self._receiver is not None:
            raise trio.BusyResourceError("another task is receiving from this app's queue")
        self._receiver = trio.lowlevel.current_task()
        # A bound method, not a closure: an idle connection's app waits here for its whole life.
        await trio.lowlevel.wait_task_rescheduled(self._abort_receive)
        message, self._handed = self._handed, None
        return message

    def _abort_receive(self, _: object) -> trio.lowlevel.Abort:
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED


class ConnectionTaskGroup(TaskGroup):
    """hypercorn's task group of a connection, with an `AppQueue` between a websocket and its
    app instead of a memory channel (HTTP requests keep hypercorn's)."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[Any], Awaitable[None]],
    ) -> Callable[[Any], Awaitable[None]]:
        if scope["type"] != "websocket":
            put: Callable[[Any], Awaitable[None]] = await super().spawn_app(
                app, config, scope, send
            )
            return put
        queue = AppQueue(config.max_app_queue_size)
        assert self._nursery is not None
        if isinstance(app, _CancellableApp):
            self._nursery.start_soon(app.run, config, scope, queue.receive, send)
        else:
            self._nursery.start_soon(
                _handle_app,
                app,
                config,
                scope,
                queue.receive,
                send,
                trio.to_thread.run_sync,
                trio.from_thread.run,
            )
        return queue.put


class Websocket(ws_stream.WSStream):
    """hypercorn's websocket stream: notes the first close frame it sends in the scope, and
    ends when its peer does (see the module's doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connection = _connection.get(None)
        if self._connection is not None:
            self._connection.websocket = self
        self._app: _CancellableApp | None = None
        self._app_done = False
        self._closing = False  # a close frame went out: what arrives is discarded
        self._put: trio.CancelScope | None = None  # a frame waiting for room in the app's queue
        self._ended = False
        self._ended_event: trio.Event | None = None  # made for a close awaiting the peer's
        self._ponged_at = -inf
        self._next_ping = -inf  # the first ping goes out as the websocket is accepted
        self._unanswered_since: float | None = None  # when the oldest unanswered ping went out
        self._ping_entry: Entry | None = None  # this websocket's turn on the `deadlines` clock
        self._kept: bytearray | None = None  # data frames of a `Batch`, not written yet

    async def handle(self, event: StreamEvent) -> None:
        if self.closed:
            return
        if isinstance(event, Request):
            self._app = _CancellableApp(self.app, Batch(self))
            self.app = self._app  # type: ignore[assignment]  # run by ConnectionTaskGroup, not called
        elif isinstance(event, StreamClosed):
            self.closed = True
            self._end()
            return
        elif isinstance(event, Data) and self.handshake.accepted:
            await self._handle_events(received_events(self.connection, event.data))
            return
        await super().handle(event)
        if self.closed and not self._ended:
            # hypercorn answered 400 to data that came before the app accepted, and closed the
            # stream without telling the app it had started: the app accepted into a closed
            # stream and served it for good (a slot and a presence held until the server
            # stopped, and past it). It ends now, as on any end of the stream.
            self._end()

    async def _accept(self, message: Any) -> None:
        await super()._accept(message)
        # What only the handshake needed (read before and as it is accepted, hypercorn's access
        # log line included) goes: the request's headers (a token among them) and the parsed
        # handshake stayed for the connection's life (about 1.5 KB).
        self.handshake = _ACCEPTED
        self.scope["headers"] = []

    def cut(self) -> None:
        """The connection is being cancelled (the server stops for good): the stream is over."""
        if not self.closed:
            self.closed = True
            self._end()

    def _end(self) -> None:
        """The stream is over: its app stops (Quart-Trio cancels it on a disconnect too)."""
        self._ended = True
        if self._ended_event is not None:
            self._ended_event.set()
        if self._ping_entry is not None:
            deadlines().drop(self._ping_entry)
            self._ping_entry = None
        if self._put is not None:
            self._put.cancel()
        if self._app is not None and not self._app_done:
            self._app.cancel()

    async def app_send(self, message: Any) -> None:
        if message is None and not self.closed:
            self._app_done = True
            if self.state is ASGIWebsocketState.CONNECTED:
                await self._send_wsproto_event(CloseConnection(code=CloseReason.INTERNAL_ERROR))
                self.state = ASGIWebsocketState.CLOSED
            if self.state is ASGIWebsocketState.CLOSED and self._awaiting_peer_close():
                return  # the peer's close frame, or the close timeout, ends the stream
        await super().app_send(message)

    async def send_text(self, text: str) -> None:
        """What `app_send` does with a `websocket.send` of `text`, framed here: on an open
        connection in the middle of no message, a server's text frame is a header and the
        UTF-8 bytes (unmasked, no extension: `UncompressedHandshake` declines them), where
        hypercorn and wsproto made an event, a dict and three copies per frame."""
        if (
            self.closed
            or self.state is not ASGIWebsocketState.CONNECTED
            or self.connection.state is not ConnectionState.OPEN
            or self.connection._proto._outbound_opcode is not None  # a fragmented message
            or self.connection._proto.extensions
        ):
            await self.app_send({"type": "websocket.send", "bytes": None, "text": text})
            return
        frame = _text_frame(text)
        if self._kept is not None:
            self._kept += frame
        else:
            await self.send(Data(stream_id=self.stream_id, data=frame))

    async def send_texts(self, texts: list[str]) -> bool:
        """`send_text` of each of `texts` in one write to the socket, made here without a
        coroutine per frame and per layer (the stream, hypercorn's HTTP/1.1 protocol, the
        connection): what the socket takes now is written at once, the rest as
        `OneConnection.protocol_send` writes it. False, sending nothing, where `send_text` would
        not frame them itself (then send them one by one, or in a `Batch`)."""
        connection = self._framing_connection()
        if connection is None:
            return False
        data = _text_frames(texts)
        # On an error nothing was written: the connection's own write finds the socket broken.
        with contextlib.suppress(OSError):
            data = connection._send_now(data)
        if data:
            # No checkpoint since `_send_now`: nothing else has written in between.
            await self.send(Data(stream_id=self.stream_id, data=data))
        return True

    def can_send_texts_now(self) -> bool:
        """Whether `send_texts_now` would send."""
        connection = self._framing_connection()
        return connection is not None and connection.can_write_now()

    def send_texts_now(self, texts: list[str]) -> None:
        """`send_texts` without waiting, for a caller that must not (the domain's side of a
        connection, a task that is not its own): the socket takes what it can now, the
        connection owes the rest and writes it before anything sent later (`write_now`).
        Only where `can_send_texts_now`, checked since the caller's last checkpoint."""
        connection = self._framing_connection()
        assert connection is not None
        connection.write_now(_text_frames(texts))

    def _framing_connection(self) -> OneConnection | None:
        """The connection, where this stream frames text itself and writes its bytes straight to
        it; None where `send_text` would not frame them itself."""
        connection = self._connection
        if (
            self.closed
            or self._kept is not None
            or connection is None
            or self.state is not ASGIWebsocketState.CONNECTED
            or self.connection.state is not ConnectionState.OPEN
            or self.connection._proto._outbound_opcode is not None
            or self.connection._proto.extensions
            # Only over HTTP/1.1, whose stream's bytes go straight to the connection.
            or not isinstance(getattr(self.send, "__self__", None), H11Protocol)
        ):
            return None
        return connection

    def _awaiting_peer_close(self) -> bool:
        return self.connection.state is ConnectionState.LOCAL_CLOSING

    async def _handle_events(self, events: Iterable[WsprotoEvent] | None = None) -> None:
        buffer = self.buffer
        # The read's last event, where the events are known at once (the plain frames of
        # `received_events`): a handler learns whether more frames follow the one it is given.
        last = events[-1] if isinstance(events, list) and events else None
        for event in self.connection.events() if events is None else events:
            if isinstance(event, Message):
                if self._closing or self.closed:
                    continue  # the app reads no more
                data = event.data
                if (
                    event.message_finished
                    and buffer.value is None
                    and len(data) <= buffer.max_length
                ):
                    # A whole message in one event (the usual case): what the buffer would make of
                    # it (its limit counts characters of text, bytes of binary), without it.
                    text = isinstance(data, str)
                    await self._to_app(
                        {
                            "type": "websocket.receive",
                            "bytes": None if text else data,
                            "text": data if text else None,
                        },
                        event is not last,
                    )
                    continue
                try:
                    self.buffer.extend(event)
                except FrameTooLargeError:
                    await self._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG)
                    )
                    continue
                if event.message_finished:
                    await self._to_app(self.buffer.to_message(), event is not last)
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, Pong):
                self._ponged_at = trio.current_time()
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def _to_app(self, message: Any, more: bool) -> None:
        """Hand a frame to the app: at once when its queue has room (no cancel scope, no
        checkpoint: this runs for every frame), else waiting for room; or, once a handler took
        the frames, to the handler, in this (the reader's) task, telling it whether `more`
        frames of this read follow."""
        app = self._app
        if app is not None and app.handler is not None:
            await self._to_handler(app, message.get("bytes") or message.get("text"), more)
            return
        assert self.app_put is not None
        queue = getattr(self.app_put, "__self__", None)  # the app's queue, or hypercorn's channel
        if isinstance(queue, AppQueue):
            try:
                queue.put_nowait(message)
                return
            except trio.WouldBlock:
                pass
        elif isinstance(queue, trio.MemorySendChannel):
            try:
                queue.send_nowait(message)
                return
            except trio.WouldBlock:
                pass
        # The app's queue is full while it does not read: a close frame going out releases
        # this wait, and the frame is dropped.
        with trio.CancelScope() as self._put:
            await self.app_put(message)

    async def _to_handler(self, app: _CancellableApp, data: str | bytes | None, more: bool) -> None:
        """A frame to the handler; what escapes it is what an app's failure is: logged, the
        handler told the connection is over, and a 1011 close."""
        assert app.handler is not None
        try:
            await app.handler.frame(data, more)
        except Exception:
            await self.config.log.exception("Error in ASGI Framework")
            if not self._app_done:
                app.handler.gone()
            await self.app_send(None)

    async def _send_wsproto_event(self, event: Any) -> None:
        if self._kept is not None:
            if isinstance(event, Message):
                with contextlib.suppress(LocalProtocolError):  # as hypercorn: closed, dropped
                    self._kept += self.connection.send(event)
                return
            await self._write_kept()
        if isinstance(event, CloseConnection):
            answering = self.connection.state == ConnectionState.REMOTE_CLOSING
            if CLOSE_KEY not in self.scope:
                self.scope[CLOSE_KEY] = ("client" if answering else "server", event.code)  # type: ignore[literal-required]
            if not answering and not self._closing:
                self._closing = True
                if self._put is not None:
                    self._put.cancel()
                self.task_group.spawn(self._cut_after_close_timeout)
        await super()._send_wsproto_event(event)

    async def _write_kept(self) -> None:
        kept, self._kept = self._kept, None
        if kept:
            await self.send(Data(stream_id=self.stream_id, data=bytes(kept)))

    async def _cut_after_close_timeout(self) -> None:
        if self._ended:
            return
        self._ended_event = trio.Event()
        with trio.move_on_after(getattr(self.config, "websocket_close_timeout", inf)):
            await self._ended_event.wait()
            return
        await self._abort("no close frame answered the server's close in time")

    async def _send_pings(self) -> None:
        """What is due of the ping schedule: ping every interval; cut the peer when a ping stays
        unanswered for the timeout. Then the `deadlines` clock wakes this again when the next is due
        (hypercorn starts it as the websocket is accepted; it used to loop until the end)."""
        self._ping_entry = None
        if self._ended:
            return
        interval = self.config.websocket_ping_interval
        assert interval is not None
        timeout = getattr(self.config, "websocket_ping_timeout", inf)
        now = trio.current_time()
        if self._unanswered_since is not None and self._ponged_at >= self._unanswered_since:
            self._unanswered_since = None
        # While closing, the close timeout decides.
        if self._unanswered_since is not None and now >= self._unanswered_since + timeout:
            if not self._closing:
                await self._abort("no pong within the ping timeout")
                return
            self._unanswered_since = None
        if now >= self._next_ping:
            await self._send_wsproto_event(Ping())
            self._next_ping = now + interval
            if self._unanswered_since is None:
                self._unanswered_since = now
        if self._ended:
            return
        wake = (
            self._next_ping
            if self._unanswered_since is None
            else min(self._next_ping, self._unanswered_since + timeout)
        )
        self._ping_entry = deadlines().call_at(wake, self._ping_due)

    def _ping_due(self) -> None:
        """The clock says a ping or a pong's deadline is due: a task does it."""
        self._ping_entry = None
        if self._ended or self.closed:
            return
        try:
            self.task_group.spawn(self._send_pings)
        except (RuntimeError, AttributeError):  # the connection's task group has ended
            return

    async def _abort(self, why: str) -> None:
        if self.closed:
            return
        log.info("websocket cut: %s", why)
        if self._connection is not None:
            await self._connection.abort()
        await self.send(StreamClosed(stream_id=self.stream_id))


def _text_frames(texts: list[str]) -> bytes:
    """`texts` as text frames, one after another, for one write."""
    return b"".join([_text_frame(text) for text in texts])


def _text_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2) carrying `text`."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def adjust_hypercorn() -> None:
    """Serve every connection with `OneConnection` (its tasks in a `ConnectionTaskGroup`),
    `UncompressedHandshake`, `Websocket` and `SwitchedConnection` (idempotent)."""
    hypercorn.trio.run.TCPServer = OneConnection  # type: ignore[attr-defined]
    hypercorn.trio.tcp_server.TaskGroup = ConnectionTaskGroup  # type: ignore[attr-defined]
    ws_stream.Handshake = UncompressedHandshake  # type: ignore[misc]
    hypercorn.protocol.h11.WSStream = Websocket  # type: ignore[attr-defined]
    hypercorn.protocol.h11.H11WSConnection = SwitchedConnection  # type: ignore[misc]
    hypercorn.protocol.h2.WSStream = Websocket  # type: ignore[attr-defined]
