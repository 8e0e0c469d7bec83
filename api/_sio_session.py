"""One Socket.IO session: its task tree, its transports and its CONNECT.

One session runs one task (in the app's nursery) owning four others: the heartbeat, the
dispatcher (inbound Socket.IO packets, in order, from an `inbox` that POSTs and the websocket's
frames fill: the server's reader task hands those over, and handles a packet itself when
nothing is queued before or behind it), the pump (the `outbox` of replies and pushed domain
events, rendered into the Engine.IO buffer) and, once connected, the core's delivery receipts.
On a websocket, what finds the socket free and nothing buffered before it is written by whoever
sent it (a packet's answer once its handling ends, in one write); the websocket's writer task
takes only what is left.
Bounds: sessions in number (`max_sessions`), the inbox and outbox in packets, the Engine.IO
buffer in characters. A client that stops polling or reading fills its outbox, and the domain
closes it (its `offer` raises WouldBlock, as on /ws); one that stops answering pings is closed
after pingTimeout. Neither slows anyone else. A malformed packet gets an `error` event and a
DISCONNECT, and its session closes; the server carries on.

Authentication as the original: `auth: {token}` in the Socket.IO CONNECT, else an
`Authorization: Bearer` header on the handshake; staff and shop (customer) tokens. A refusal is
a CONNECT_ERROR `{message}`. A session that has not connected within `socketio_connect_seconds`
closes, and one client address may have at most `socketio_pending_per_address` sessions waiting
for their CONNECT, so nobody without a token holds the session slots.

Over 500 lines: one class, the session, whose tasks share its state (the Engine.IO session, the
inbox, the outbox, the socket); split further, they would reach into each other's fields.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar, assert_never

import trio

from actors import (
    CLOSE_SLOW_READER,
    Event,
    Session,
)
from api import _engineio as eio
from api._auth import LEEWAY_SECONDS, Principal, Unauthenticated
from api._connection_caps import ConnectionCaps, Slot, TooManyConnections
from api._engineio import (
    EngineConfig,
    EngineSession,
    ProtocolError,
    Transport,
    TransportMismatch,
    Written,
)
from api._errors import ASK_SECONDS, ApiError
from api._guard import bearer_token
from api._hypercorn import FrameHandler
from api._services import Services
from api._shop_profile import CHECK_UNAVAILABLE, CustomerCheckUnavailable
from api._sio_events import (
    SioErrorOut,
)
from api._sio_namespace import SEND_MESSAGE, SEND_RUN, TYPING, ChatSocket, Outgoing
from api._stopping import GOING_AWAY, Stopping
from api._ws import WebSocket, send_together, token_id
from api._ws_core import (
    CONNECT_ROLES,
    TokenBucket,
)
from store import Role, StoreUnavailable, new_id
from telemetry import connection_closed, connection_opened, limit_hit

log = logging.getLogger("api.socketio")

T = TypeVar("T")

# Typing events have this many times the flood limit's rate and burst to themselves, so a fast
# typist (one `startTyping` per keystroke) is never cut; only beyond it do they count.
TYPING_ALLOWANCE = 4


@dataclass(frozen=True, slots=True)
class SocketIOLimits:
    max_sessions: int = 10_000
    # A session must complete an authenticated Socket.IO CONNECT this soon after the handshake.
    connect_seconds: float = 10.0
    # Sessions of one client address still waiting for their CONNECT (a stock client sends it
    # right after the handshake): one address cannot hold the session slots.
    pending_per_address: int = 20
    # An upgrading websocket must probe and upgrade this soon after it opens.
    upgrade_seconds: float = 10.0
    # How long a closing session waits for the client to collect its last packets.
    flush_seconds: float = 2.0
    inbox_packets: int = 16
    rooms_per_socket: int = 1_000


class SessionSocket(WebSocket, Protocol):
    """The websocket a session is carried on."""

    def frames_waiting(self) -> int | None:
        """How many frames are read and waiting for `receive`; None when unknown."""

    def can_send_texts_now(self) -> bool:
        """Whether `send_texts_now` would send: nothing is being written or owed to the socket."""

    def send_texts_now(self, texts: list[str]) -> None:
        """Send `texts` in one write without waiting; only where `can_send_texts_now`."""

    def take_frames(self, handler: FrameHandler) -> None:
        """Hand every frame from now on to `handler`, in the server's reader task."""

    def give_back_frames(self) -> None:
        """Queue the frames for `receive` again."""


class SioSession:
    """One Engine.IO session and its default-namespace socket."""

    def __init__(
        self,
        found: Services,
        limits: SocketIOLimits,
        config: EngineConfig,
        transport: Transport,
        authorization: str | None,
        *,
        client: str,
        settle: Callable[[], None],
        caps: ConnectionCaps,
        going_away: Stopping,
    ) -> None:
        self._found = found
        self._client = client
        self._caps = caps
        self._going_away = going_away
        self._slot: Slot | None = None  # its principal's connection count, once connected
        # Called once, at the CONNECT or the close: the session no longer waits for its CONNECT.
        self._settle: Callable[[], None] | None = settle
        self._limits = limits
        self._authorization = authorization
        self._changed = trio.Event()
        # The websocket's writer waits on an event of its own, set only when there is something
        # to write and no packet's answer is under way (`_flush` writes what that buffers).
        self._writable: trio.Event | None = None
        # The websocket the session is carried on, while it is: what finds it free and nothing
        # buffered before it is written to it at once, from the caller's step.
        self._carried: SessionSocket | None = None
        self.engine = EngineSession(
            secrets.token_urlsafe(15), transport, config, clock=trio.current_time, wake=self._wake
        )
        self._inbox, self._inbound = trio.open_memory_channel[str | bytes](limits.inbox_packets)
        # A packet read from the inbox behind a run of sends, handled next.
        self._held: str | bytes | None = None
        # Packets put in the inbox, or being put, that the dispatcher has not taken yet.
        self._in_inbox = 0
        self._dispatching = False  # the dispatcher is handling a packet
        # The websocket reader is handling a packet itself (`_read_websocket`), and the
        # dispatcher's wait for it to finish, if one came through the inbox meanwhile.
        self._reading_turn = False
        self._turn_over: trio.Event | None = None
        self._tasks: trio.Nursery | None = None  # the session's own, once it runs
        self._outbox, self._outgoing = trio.open_memory_channel[Outgoing](
            found.settings.ws_outbox_frames
        )
        # Items in the outbox or in the pump's hands: while there are any, later ones queue
        # behind them; while there are none, they skip the pump (one task switch less each).
        self._queued = 0
        # Counts every inbound packet but `sendMessage`, which the core's own bucket counts, and
        # typing within its own allowance.
        settings = found.settings
        self._bucket = TokenBucket(
            settings.ws_max_frames_per_second, settings.ws_frame_burst, trio.current_time()
        )
        self._typing_bucket = TokenBucket(
            TYPING_ALLOWANCE * settings.ws_max_frames_per_second,
            TYPING_ALLOWANCE * settings.ws_frame_burst,
            trio.current_time(),
        )
        self._socket: ChatSocket | None = None
        # The waits of a packet's handling that the session's end cancels, though they may be
        # in the server's reader task, outside the session's nursery (`_HandedFrames`): only
        # waits off the common path enter one of these scopes (a trio cancel scope is about
        # thirty calls, 5 to 6 µs). A send's ask is bounded by its core, which `_stop_waits`
        # stops.
        self._waits: set[trio.CancelScope] = set()
        self._waits_stopped = False
        self._attached: tuple[Session, Role] | None = None
        self._connected = trio.Event()
        # Its own event, so the tasks that only wait for the end do not wake on every packet.
        self._closed = trio.Event()
        self._opened_at: float | None = None  # when the Socket.IO CONNECT succeeded
        self._end_code = "closed"  # why the server ended it, or the client's doing

    @property
    def sid(self) -> str:
        return self.engine.sid

    def _wake(self) -> None:
        # Only an event someone waits on is set and replaced: the engine wakes the session a few
        # times a message, mostly with nobody waiting yet, and each new event made a parking
        # lot. A task checks its condition and waits without a checkpoint between: none misses
        # a change.
        if self._changed.statistics().tasks_waiting:
            self._changed.set()
            self._changed = trio.Event()
        writable = self._writable
        if writable is not None and self.engine.ready() and not self._holding():
            self._writable = None
            writable.set()
        if self.engine.closed is not None:
            self._closed.set()

    def _answering(self) -> bool:
        """A packet is being handled: what it buffers leaves with its answer (`_flush`)."""
        return self._reading_turn or self._dispatching

    def _holding(self) -> bool:
        """The writer is not woken: a packet's answer is under way (it writes what is buffered,
        in one write with the answer) and the buffer is less than half full."""
        engine = self.engine
        return (
            self._answering()
            and engine.closed is None
            and engine.buffered < engine.config.max_buffered // 2
        )

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._changed.wait()

    # --- the session's task --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            # Told when the server begins to stop, without a task of its own waiting for it.
            with self._going_away.telling(self._go_away):
                async with trio.open_nursery() as nursery:
                    self._tasks = nursery
                    nursery.start_soon(self._heartbeat)
                    nursery.start_soon(self._pump)
                    nursery.start_soon(self._dispatch, nursery)
                    nursery.start_soon(self._await_connect)
                    task_status.started()
                    await self._closed.wait()
                    nursery.cancel_scope.cancel()
            self._inbound.close()  # a POST waiting to hand over a packet is answered now
            with trio.move_on_after(self._limits.flush_seconds):
                await self._until(lambda: self.engine.drained)
        finally:
            # Closed already, unless a task crashed: then its transports must stop waiting.
            self.engine.close("internal error; reconnect")
            self._settled()
            self._release_slot()
            self._log_close()
            await self._detach()
            self._inbound.close()
            self._outgoing.close()

    def _release_slot(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.release()

    def _settled(self) -> None:
        settle, self._settle = self._settle, None
        if settle is not None:
            settle()

    def _go_away(self) -> None:
        """The server is stopping: the close packet, without a DISCONNECT, so the client
        reconnects by itself (to the server that takes over)."""
        self._end("server_stopping", GOING_AWAY, disconnect=False)

    async def _heartbeat(self) -> None:
        while self.engine.closed is None:
            await trio.sleep_until(self.engine.deadline())
            self.engine.tick()

    async def _await_connect(self) -> None:
        with trio.move_on_after(self._limits.connect_seconds):
            await self._connected.wait()
            return
        self.engine.close(f"no Socket.IO CONNECT within {self._limits.connect_seconds:g} s")

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        while True:
            data, self._held = self._held, None
            if data is None:
                try:
                    data = await self._inbound.receive()
                except trio.EndOfChannel:
                    return
                self._in_inbox -= 1
            # Only a POST racing an upgrade can find the websocket reader at a packet of its own.
            while self._reading_turn:
                self._turn_over = trio.Event()
                await self._turn_over.wait()
            self._dispatching = True
            try:
                await self._on_message(data, nursery)
            finally:
                self._dispatching = False
                self._flush()

    def _idle(self) -> bool:
        """Nothing is in the inbox, held, or being handled: a packet can be handled at once,
        in order, by whoever read it."""
        return not (self._in_inbox or self._dispatching or self._reading_turn) and (
            self._held is None
        )

    async def _to_inbox(self, data: str | bytes) -> None:
        """Hand `data` to the dispatcher, waiting for room (or for the session's end)."""
        self._in_inbox += 1
        handed = False
        try:
            try:
                self._inbox.send_nowait(data)
                handed = True
            except trio.WouldBlock:
                with self._stoppable():
                    await self._inbox.send(data)
                    handed = True
        finally:
            if not handed:
                self._in_inbox -= 1

    @contextmanager
    def _stoppable(self) -> Iterator[None]:
        """A scope for a wait that ends with the session wherever it is (`_waits`)."""
        with trio.CancelScope() as scope:
            if self._waits_stopped:
                scope.cancel()
            self._waits.add(scope)
            try:
                yield
            finally:
                self._waits.discard(scope)

    def _stop_waits(self) -> None:
        """The session is ending: what a packet's handling waits for is cancelled, now and from
        now on; a send's ask is answered as too slow, to nobody."""
        self._waits_stopped = True
        for scope in self._waits:
            scope.cancel()
        if self._socket is not None:
            self._socket.core.stop()

    def _sends_behind(self, first: eio.EventPacket) -> list[eio.EventPacket]:
        """`first` and the `sendMessage` events already waiting behind it (a client keeping
        several in flight), to be answered together; the first other packet is held for next."""
        run = [first]
        while len(run) < SEND_RUN and self._held is None:
            try:
                data = self._inbound.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self._in_inbox -= 1
            packet = None if isinstance(data, bytes) else _decoded(data)
            if (
                isinstance(packet, eio.EventPacket)
                and packet.name == SEND_MESSAGE
                and packet.namespace == eio.DEFAULT_NAMESPACE
            ):
                run.append(packet)
            else:
                self._held = data
        return run

    async def _pump(self) -> None:
        async for item in self._outgoing:
            for packet, written in self._render_now(item):
                # A client that does not collect what is buffered stops the pump here; its
                # outbox then fills and the domain closes it as a slow reader.
                await self._until(lambda: self.engine.has_room)
                self._send([(packet, written)])
            self._queued -= 1

    def _send(self, packets: list[tuple[eio.SioPacket, Written | None]]) -> None:
        """To the client, each as the Engine.IO message that carries it: in one write to the
        websocket at once where it is free, nothing is buffered before them and no packet's
        answer is under way (most events: no trip through the writer's task); else into the
        Engine.IO buffer."""
        engine = self.engine
        ws = self._carried
        if (
            ws is not None
            and engine.drained
            and engine.closed is None
            and not self._answering()
            and ws.can_send_texts_now()
        ):
            messages: list[eio.Packet] = [
                eio.MessagePacket(eio.encode_sio(packet)) for packet, _ in packets
            ]
            self._write_now(ws, messages, [done for _, done in packets if done is not None])
            return
        for packet, written in packets:
            engine.send(eio.MessagePacket(eio.encode_sio(packet)), written)

    def _flush(self) -> None:
        """A packet's answer is complete: what it buffered (a message's `messageDelivered` and
        its ack) leaves in one write from the task that answered, where the websocket is free;
        else the writer is woken for it."""
        engine = self.engine
        ws = self._carried
        # Only a websocket's writer is ever held back (`_holding`), and never from the close,
        # which it writes and says when it has: elsewhere every wake-up has happened already.
        if ws is None or engine.drained or engine.closed is not None:
            return
        if ws.can_send_texts_now():
            packets, written = engine.take()
            self._write_now(ws, packets, written)
        else:
            self._wake()  # the socket is busy: the writer waits for it

    def _write_now(
        self, ws: SessionSocket, packets: list[eio.Packet], written: list[Written]
    ) -> None:
        ws.send_texts_now([_frame(packet) for packet in packets])
        for done in written:
            done()

    def _render_now(self, item: Outgoing) -> list[tuple[eio.SioPacket, Written | None]]:
        """The packets of an item; making them reads nothing."""
        match item:
            case (
                eio.ConnectPacket()
                | eio.DisconnectPacket()
                | eio.EventPacket()
                | eio.AckPacket()
                | eio.ConnectErrorPacket()
            ):
                return [(item, None)]
            case _:
                # Events for a socket whose CONNECT failed after it was attached: nobody's.
                return [] if self._socket is None else self._socket.render(item)

    def _direct(self, item: Outgoing) -> bool:
        """Write an item straight into the Engine.IO buffer if nothing is queued before it and
        there is room; whether it was written."""
        if self._queued or not self.engine.has_room:
            return False
        self._send(self._render_now(item))
        return True

    async def _emit(self, item: Outgoing) -> None:
        """The session's own answers: in order with the domain's events, and waiting for room
        in the outbox rather than dropping anything."""
        if self._direct(item):
            return
        self._queued += 1
        queued = False
        try:
            with self._stoppable():
                await self._outbox.send(item)
                queued = True
        finally:
            if not queued:
                self._queued -= 1

    # --- inbound Socket.IO packets -------------------------------------------------------------

    async def _on_message(self, data: str | bytes, nursery: trio.Nursery) -> None:
        if isinstance(data, bytes):
            self._malformed("binary messages are not supported; send JSON")
            return
        try:
            packet = eio.decode_sio(data)
        except ProtocolError as error:
            self._malformed(str(error))
            return
        socket = self._socket
        now = trio.current_time()
        event_name = (
            packet.name if isinstance(packet, eio.EventPacket) and socket is not None else None
        )
        allowed = (
            event_name == SEND_MESSAGE
            or (event_name in TYPING and self._typing_bucket.take(now))
            or self._bucket.take(now)
        )
        if not allowed:
            limit_hit("frame_rate", edge="socketio", session=self.sid)
            self._end("rate_limited", "too many packets; slow down and reconnect")
            return
        match packet:
            case eio.ConnectPacket(namespace, auth):
                with self._stoppable():
                    await self._connect(namespace, auth, nursery)
            case eio.DisconnectPacket(namespace):
                if namespace == eio.DEFAULT_NAMESPACE:
                    self._end_code = "client"
                    self.engine.close("the client disconnected")
            case eio.EventPacket(namespace=namespace):
                # Like the stock server: an event for a namespace not connected is ignored.
                if socket is not None and namespace == eio.DEFAULT_NAMESPACE:
                    ending = None
                    if event_name == SEND_MESSAGE:
                        # The common packet: no scope here (see `_waits`).
                        ending = await socket.on_sends(self._sends_behind(packet))
                    else:
                        with self._stoppable():
                            ending = await socket.on_event(packet)
                    if ending is not None:
                        self._end(ending.code, ending.message)
            case eio.AckPacket():
                pass  # this server never asks a client for an ack
            case _ as unreachable:
                assert_never(unreachable)

    async def _connect(
        self, namespace: str, auth: dict[str, Any] | None, nursery: trio.Nursery
    ) -> None:
        if namespace != eio.DEFAULT_NAMESPACE:
            await self._emit(eio.ConnectErrorPacket("Invalid namespace", namespace))
            return
        if self._socket is not None:
            return  # connected already; the stock server ignores a repeated CONNECT too
        try:
            principal, token = await self._authenticate(auth)
        except Unauthenticated as error:
            await self._emit(eio.ConnectErrorPacket(str(error)))
            return
        except CustomerCheckUnavailable as error:
            await self._emit(eio.ConnectErrorPacket(str(error), data={"code": CHECK_UNAVAILABLE}))
            return
        try:
            self._slot = self._caps.take(principal)
        except TooManyConnections as error:
            code = "too_many_connections"
            await self._emit(eio.ConnectErrorPacket(f"{code}: {error}", data={"code": code}))
            return
        session_id = new_id()
        socket = ChatSocket(
            self._found, principal, self._emit, self._limits.rooms_per_socket, session_id, nursery
        )
        session = Session(
            session_id, principal.user.id, self._offer, self._close, token_id(principal, token)
        )
        # Events flow from the moment of attaching (a waiting chat may be assigned at once):
        # the socket must be there to take them.
        self._socket, self._attached = socket, (session, principal.role)
        failure: str | None = None
        try:
            with trio.fail_after(ASK_SECONDS):
                await self._found.system.connect(session, principal.role)
                # A sign-out between the handshake and now closed nothing: check again.
                await self._found.tokens.authenticate(token)
        except Unauthenticated as error:
            failure = str(error)
        except (trio.TooSlowError, StoreUnavailable, CustomerCheckUnavailable):
            failure = "the server is too busy; retry shortly"
        if failure is not None:
            await self._detach()
            self._socket = None
            self._release_slot()
            await self._emit(eio.ConnectErrorPacket(failure))
            return
        self._connected.set()
        self._settled()
        self._opened_at = trio.current_time()
        connection_opened(
            "socketio",
            principal.role.value,
            session=self.sid,
            principal=principal.user.id,
            client=self._client,
            transport=self.engine.transport.value,
        )
        await self._emit(eio.ConnectPacket(data={"sid": socket.sid}))
        nursery.start_soon(self._expire, principal.expires_at)

    async def _authenticate(self, auth: dict[str, Any] | None) -> tuple[Principal, str]:
        """The CONNECT's `auth.token`, else the handshake's bearer header, as a principal."""
        token = (auth or {}).get("token")
        if token is None and self._authorization is not None:
            try:
                token = bearer_token(self._authorization)
            except ApiError as error:
                raise Unauthenticated(error.message) from error
        if not isinstance(token, str) or not token:
            raise Unauthenticated(
                "missing token: connect with auth: {token} or an 'Authorization: Bearer' header"
            )
        try:
            with trio.fail_after(ASK_SECONDS):
                principal = await self._found.tokens.authenticate(token)
        except (StoreUnavailable, trio.TooSlowError) as error:
            raise Unauthenticated("cannot check the token right now; retry shortly") from error
        if principal.role not in CONNECT_ROLES:
            raise Unauthenticated(
                f"Socket.IO is for {', '.join(sorted(CONNECT_ROLES))}; "
                f"you are signed in as {principal.role}"
            )
        return principal, token

    async def _expire(self, expires_at: datetime) -> None:
        # The same leeway authentication allows.
        await trio.sleep(
            max(0.0, (expires_at - datetime.now(UTC)).total_seconds() + LEEWAY_SECONDS)
        )
        self._end("token_expired", "token expired; sign in again")

    # --- the domain's side: never blocks -------------------------------------------------------

    def _offer(self, event: Event) -> None:
        if self.engine.closed is not None:
            return  # closing: the client reloads what it missed after reconnecting
        if self._socket is not None and self._socket.intercept(event):
            return
        if self._direct(event):
            return
        self._outbox.send_nowait(event)  # full: the domain closes this slow reader
        self._queued += 1

    def _close(self, code: int, reason: str) -> None:
        # A slow reader may reconnect at once; a signed-out token must not.
        slow = code == CLOSE_SLOW_READER
        self._end("slow_reader" if slow else "signed_out", reason, disconnect=not slow)

    async def _detach(self) -> None:
        attached, self._attached = self._attached, None
        if attached is None:
            return
        session, role = attached
        with trio.move_on_after(ASK_SECONDS) as bound:
            bound.shield = True  # also when the session is being cancelled
            await self._found.system.disconnect(session, role)
        if bound.cancelled_caught:
            log.warning("disconnect of %s not told to the assignment actor in time", session.id)

    # --- ending --------------------------------------------------------------------------------

    def _log_close(self) -> None:
        """The close of a connected socket: why, in Socket.IO's terms (there is no code)."""
        if self._attached is None or self._opened_at is None:
            return
        session, role = self._attached
        connection_closed(
            "socketio",
            role.value,
            session=self.sid,
            principal=session.user_id,
            code=self._end_code,
            reason=self.engine.closed or "",
            seconds=trio.current_time() - self._opened_at,
        )

    def _malformed(self, reason: str) -> None:
        log.info("socket.io session %s sent a malformed packet: %s", self.sid, reason)
        self._end("invalid_packet", f"malformed packet: {reason}")

    def _end(self, code: str, message: str, *, disconnect: bool = True) -> None:
        """Tell the client why (when it has a socket to hear it), then close. Straight into the
        Engine.IO buffer: the outbox may be full, and nothing queued after this matters.
        With `disconnect` the client does not reconnect by itself."""
        if self.engine.closed is not None:
            return
        self._end_code = code
        if self._socket is not None:
            error = SioErrorOut(message=message, code=code).model_dump(
                by_alias=True, exclude_none=True
            )
            last: list[tuple[eio.SioPacket, Written | None]] = [
                (eio.EventPacket("error", (error,)), None)
            ]
            if disconnect:
                last.append((eio.DisconnectPacket(), None))
            self._send(last)  # in one write, where it is written at once
        self.engine.close(message)

    # --- the transports ------------------------------------------------------------------------

    def _strictly(self, step: Callable[[], T]) -> T:
        """A protocol step; a violation closes the session (telling the client why) and
        propagates, so the request that made it is answered 400. A stray request of the
        transport the session left behind is only answered 400, as by the stock server."""
        try:
            return step()
        except TransportMismatch:
            raise
        except ProtocolError as error:
            self._malformed(str(error))
            raise

    async def poll(self) -> str:
        """One long-poll: waits until something is buffered (a ping comes every pingInterval)."""
        self._strictly(self.engine.start_poll)
        try:
            await self._until(self.engine.ready)
        except BaseException:
            self.engine.cancel_poll()  # the request went away: keep the packets for the next
            raise
        packets, written = self.engine.finish_poll()
        for done in written:
            done()
        return eio.encode_payload(packets)

    async def post(self, body: bytes) -> None:
        self._strictly(self.engine.start_post)
        try:
            limit = self.engine.config.max_packets_per_request
            for packet in self._strictly(partial(_decode_body, body, limit)):
                data = self._strictly(partial(self.engine.receive, packet))
                if data is not None:
                    try:
                        await self._to_inbox(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                        raise ProtocolError("the session closed") from error
        finally:
            self.engine.finish_post()

    async def serve_websocket(self, ws: SessionSocket) -> None:
        """A session opened on a websocket: the handshake is its first frame."""
        self.engine.send(self.engine.config.handshake(self.sid, []))
        await self._carry(ws)

    async def upgrade(self, ws: SessionSocket, accept: Callable[[], Awaitable[None]]) -> None:
        """Probe, then carry the session on this websocket; on any failure, polling goes on."""
        try:
            await accept()
            with trio.fail_after(self._limits.upgrade_seconds):
                while self.engine.transport is Transport.POLLING:
                    reply = self.engine.probe(eio.decode_packet(await ws.receive()))
                    if reply is not None:
                        await ws.send(_frame(reply))
        except (ProtocolError, trio.TooSlowError) as error:
            log.info("upgrade of socket.io session %s abandoned: %s", self.sid, error)
            return
        finally:
            self.engine.abandon_upgrade()
        await self._carry(ws)

    async def _carry(self, ws: SessionSocket) -> None:
        written_all = trio.Event()
        handed: _HandedFrames | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_websocket, ws, written_all)
                self._carried = ws
                handed = _HandedFrames(self, nursery.cancel_scope)
                # The frames read meanwhile (behind the upgrade's probe), in order; nothing
                # yields between the last of them and the hand-over, so none can come between.
                while handed.reading and ws.frames_waiting():
                    frame = await ws.receive()
                    handed.reading = await self._read_frame(frame, bool(ws.frames_waiting()))
                ws.take_frames(handed)
                await self._closed.wait()
                with trio.move_on_after(self._limits.flush_seconds):
                    await written_all.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._carried = None
            if handed is not None:
                ws.give_back_frames()
                handed.stop()
            # The client went away or the session closed.
            self.engine.close("the websocket closed", tell_client=False)

    async def _read_frame(self, frame: str | bytes | None, more: bool) -> bool:
        """One frame from the websocket (`more`: others follow it at once); False once the
        session reads no more from it."""
        if frame is None:  # how Quart hands over an empty binary frame
            frame = b""
        try:
            data = self._strictly(partial(_receive_frame, self.engine, frame))
        except ProtocolError:
            return False
        if data is None:
            return True
        if self._tasks is not None and self._idle() and not more:
            # Handled by the reader: a task switch and the inbox's hand-over less per packet.
            # With frames behind it, the dispatcher takes them together (a run of sends is
            # stored in one write).
            try:
                await self._take_turn(data, self._tasks)
            except Exception:
                # As a crash of the dispatcher ends its session (api/_sio_hub.py).
                log.exception("socket.io session %s crashed", self.sid)
                self.engine.close("internal error; reconnect")
                return False
            return True
        try:
            await self._to_inbox(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _take_turn(self, data: str | bytes, nursery: trio.Nursery) -> None:
        self._reading_turn = True
        try:
            await self._on_message(data, nursery)
        finally:
            self._reading_turn = False
            self._flush()
            over, self._turn_over = self._turn_over, None
            if over is not None:
                over.set()

    async def _write_websocket(self, ws: WebSocket, written_all: trio.Event) -> None:
        while True:
            while not self.engine.ready():
                self._writable = trio.Event()
                await self._writable.wait()
            packets, written = self.engine.take()
            # In one write to the socket: a message's `messageDelivered` and its ack together.
            await send_together(ws, [_frame(packet) for packet in packets])
            for done in written:
                done()
            if self.engine.closed is not None:
                written_all.set()
                return


class _HandedFrames:
    """The frames of the websocket a session is carried on, each handled in the server's reader
    task as it is read (api/_hypercorn's `take_frames`): a reader task of the session's own cost
    one more task step for every frame in. The session's task stays, carrying the writer.
    A frame enters no cancel scope of its own: what its handling waits for ends with the
    session (`SioSession._stop_waits`)."""

    __slots__ = ("_carrying", "_session", "reading")

    def __init__(self, session: SioSession, carrying: trio.CancelScope) -> None:
        self._session = session
        self._carrying = carrying  # what the session's task carries the websocket in
        self.reading = True  # False once the session reads no more (a malformed frame)

    async def frame(self, data: str | bytes | None, more: bool) -> None:
        # What follows a frame that ended the session is not read.
        if self.reading and not await self._session._read_frame(data, more):
            self.reading = False

    def gone(self) -> None:
        """The peer is gone: the session's task stops carrying the websocket, and the session
        closes (`_carry`)."""
        self._carrying.cancel()
        self.stop()

    def stop(self) -> None:
        """Read no more: what a frame being handled waits for is cancelled."""
        self.reading = False
        self._session._stop_waits()


def _decoded(data: str) -> eio.SioPacket | None:
    """A Socket.IO packet, or None when it is malformed (handled, and refused, in its turn)."""
    try:
        return eio.decode_sio(data)
    except ProtocolError:
        return None


def _receive_frame(engine: EngineSession, frame: str | bytes) -> str | bytes | None:
    return engine.receive(eio.decode_packet(frame))


def _decode_body(body: bytes, max_packets: int) -> list[eio.Packet]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError("the body is not UTF-8 text") from error
    return eio.decode_payload(text, max_packets=max_packets)


def _frame(packet: eio.Packet) -> str:
    frame = eio.encode_packet(packet)
    assert isinstance(frame, str), "this server sends no binary data"
    return frame
