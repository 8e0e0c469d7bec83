"""The /socket.io/ endpoint: Engine.IO v4 and Socket.IO v5 on Quart-Trio, so the original
backend's front ends (the stock `socket.io-client`) connect unchanged, beside /ws.

One routing core, two edges: the events map onto the same connection core as /ws
(api/_ws_core.py: roles, rate limit, every domain call bounded) and the same `Session`s in the
domain's presence registry. What differs is only the framing and the rooms.

Transports. `GET /socket.io/?EIO=4&transport=polling` opens a session (the Engine.IO handshake);
`GET ...&sid=S` long-polls what is buffered for it, `POST ...&sid=S` hands it packets. A websocket
to `...&transport=websocket&sid=S` upgrades S (2probe/3probe, then 5); a websocket without a sid
is a fresh session. The protocol rules (codecs, the polling/upgrade state machine, heartbeats)
are plain code in api/_engineio.py; here are the tasks and sockets around them.

One session runs one task (in the app's nursery) owning four others: the heartbeat, the
dispatcher (inbound Socket.IO packets, in order, from an `inbox` that POSTs and the websocket
reader fill), the pump (the `outbox` of replies and pushed domain events, rendered into the
Engine.IO buffer) and, once connected, the core's delivery receipts. Bounds: sessions in number
(`max_sessions`), the inbox and outbox in packets, the Engine.IO buffer in characters. A client
that stops polling or reading fills its outbox, and the domain closes it (its `offer` raises
WouldBlock, as on /ws); one that stops answering pings is closed after pingTimeout. Neither
slows anyone else. A malformed packet gets an `error` event and a DISCONNECT, and its session
closes; the server carries on.

Authentication as the original: `auth: {token}` in the Socket.IO CONNECT, else an
`Authorization: Bearer` header on the handshake; staff and shop (customer) tokens. A refusal is
a CONNECT_ERROR `{message}`. A session that has not connected within `socketio_connect_seconds`
closes, and one client address may have at most `socketio_pending_per_address` sessions waiting
for their CONNECT, so nobody without a token holds the session slots.

Rooms. The original joined sockets to rooms by ids the client sent; here a socket joins only
its own user's room (`joinNotification`, `authenticate`) and chats its user is in (`joinChat`),
and the domain only ever delivers a user's own events to it, so rooms merely filter: a chat's
messages reach a socket that joined it (`messageReceived`); while it has not, and it is in its
user room, a `notification`. `sendMessage` maps to the core's `message.send`: the sender gets
`messageDelivered` (and the ack) once the message is durable. Its idempotency key is the
client's `clientMsgId` when given, else `sio:<socket id>:<ack id>` (or a per-socket counter
without an ack): unique per emit, so only a resend with the same `clientMsgId` is stored once.

The original's front ends also emit events it never handled. Those that mean something here are
mapped (`joinRoom` as `joinNotification`, `leaveChat`, `startTyping`/`stopTyping` onto the core's
typing, the notification reads onto the notification routes' actions); any other unknown event is
ignored, as the original did. Typing has an allowance of its own beside the flood limit, and only
a change of typing state reaches the domain, so the widget's `startTyping` per keystroke costs
nothing and never cuts a fast typist.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from functools import partial
from typing import Any, TypeAlias, TypeVar, assert_never

import trio
from quart import Blueprint, Response, current_app, request, websocket
from quart_schema import hide
from werkzeug.datastructures import MultiDict

from actors import (
    CLOSE_SLOW_READER,
    AgentStatusEvent,
    ChatAssigned,
    ChatStatusEvent,
    ChatUnassigned,
    FloorUpdate,
    MessageAdded,
    QueuePosition,
    ReadEvent,
    Session,
    TypingEvent,
)
from actors import Event as DomainEvent
from api import _engineio as eio
from api._auth import LEEWAY_SECONDS, Principal, Unauthenticated
from api._client import current_client
from api._connection_caps import ConnectionCaps, Slot, TooManyConnections, connection_caps
from api._cors import origin_allowed
from api._engineio import (
    EngineConfig,
    EngineSession,
    ProtocolError,
    RawJson,
    Transport,
    TransportMismatch,
    Written,
)
from api._errors import ASK_SECONDS, ApiError, error_response
from api._guard import bearer_token
from api._schemas import WireModel
from api._services import Services, services
from api._shapes import chat_out
from api._shop_profile import CHECK_UNAVAILABLE, CustomerCheckUnavailable
from api._sio_events import (
    AckError,
    AuthenticatedOut,
    CountOut,
    ErrorBody,
    ErrorOut,
    FetchNotificationsIn,
    InvalidPayload,
    JoinChatIn,
    JoinedOut,
    MessageOut,
    NotificationOut,
    NotificationPagination,
    NotificationRefIn,
    NotificationType,
    SendMessageIn,
    SioChat,
    SioMessage,
    TypingOut,
    UserNotificationsOut,
    UserRoomIn,
    claimed_user,
    named_chat,
    optional,
    parse,
)
from api._stopping import GOING_AWAY, stopping
from api._visibility import NOT_FOUND, may_see, not_found_message
from api._ws import Transport as WebSocket
from api._ws import token_id
from api._ws_core import (
    CONNECT_ROLES,
    Ack,
    Close,
    Connection,
    Error,
    Peer,
    SendMessage,
    SetTyping,
    TokenBucket,
)
from store import Chat, Message, Role, StoreUnavailable, new_id
from telemetry import connection_closed, connection_opened, limit_hit

log = logging.getLogger("api.socketio")

T = TypeVar("T")

socketio = Blueprint("socketio", __name__)

PATH = "/socket.io/"
HUB_KEY = "switchboard.socketio"
SEND_MESSAGE = "sendMessage"
TYPING = ("startTyping", "stopTyping")
# The events the original handled; a refusal of one of them without an ack is its `error` event,
# with its summary as `message` (the agent dashboard stays quiet on "Failed to join chat").
FAILED = {
    "authenticate": "Authentication failed",
    "joinChat": "Failed to join chat",
    "joinNotification": "Failed to join notification room",
    SEND_MESSAGE: "Failed to send message",
}
EVENTS = (
    *sorted(FAILED),
    "fetchNotifications",
    "joinRoom",
    "leaveChat",
    "markAllNotificationsRead",
    "markNotificationRead",
    *TYPING,
)
NOTIFICATION_PREVIEW_CHARS = 140
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


class EngineIoCode(IntEnum):
    """Engine.IO's own error codes, given in `details` beside ours."""

    TRANSPORT_UNKNOWN = 0
    SESSION_UNKNOWN = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5


class Crowded(Exception):
    """No room for another session."""


class TooManyPending(Exception):
    """The client's address has as many sessions waiting for their CONNECT as it may."""


# What the pump writes: Socket.IO packets made by the dispatcher, and the domain's events.
Outgoing: TypeAlias = eio.SioPacket | DomainEvent


@dataclass(frozen=True, slots=True)
class Ending:
    """The socket must end: the `error` event's code and message."""

    code: str
    message: str


# --- the routes ----------------------------------------------------------------------------------


# Its CORS headers and preflights are the app's (api/_cors.py), as for every HTTP answer.
@socketio.route(PATH, methods=["GET", "POST"], provide_automatic_options=False)
@hide  # a transport with its own handshake, not a REST operation: out of /openapi.json, as /ws
async def polling() -> Response:
    found = services()
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, found.settings.allowed_origins):
        return _refuse(
            403, "origin_not_allowed", f"origin {origin!r} may not connect", EngineIoCode.FORBIDDEN
        )
    refused = _check_query(request.args, Transport.POLLING)
    if refused is not None:
        return refused
    sid = request.args.get("sid")
    the_hub = hub()
    if sid is None:
        if request.method != "GET":
            return _refuse(
                400,
                "bad_handshake",
                "a session starts with a GET without sid",
                EngineIoCode.BAD_HANDSHAKE_METHOD,
            )
        try:
            session = await the_hub.open(
                found, Transport.POLLING, request.headers.get("Authorization"), current_client()
            )
        except Crowded:
            return _crowded()
        except TooManyPending:
            return _too_many_pending(the_hub.limits)
        handshake = session.engine.config.handshake(session.sid, [Transport.WEBSOCKET.value])
        return _text(eio.encode_payload([handshake]))
    known = the_hub.get(sid)
    if known is None:
        return _unknown_session(sid)
    try:
        if request.method == "GET":
            return _text(await known.poll())
        await known.post(await request.get_data(cache=False, as_text=False, parse_form_data=False))
    except ProtocolError as error:
        return _refuse(400, "bad_request", str(error), EngineIoCode.BAD_REQUEST)
    return _text("ok")


@socketio.websocket(PATH)
async def websocket_transport() -> Response | None:
    found = services()
    origin = websocket.headers.get("Origin")
    if not origin_allowed(origin, found.settings.allowed_origins):
        return _refuse(
            403, "origin_not_allowed", f"origin {origin!r} may not connect", EngineIoCode.FORBIDDEN
        )
    refused = _check_query(websocket.args, Transport.WEBSOCKET)
    if refused is not None:
        return refused
    sid = websocket.args.get("sid")
    if sid is None:
        the_hub = hub()
        try:
            session = await the_hub.open(
                found,
                Transport.WEBSOCKET,
                websocket.headers.get("Authorization"),
                current_client(),
            )
        except Crowded:
            return _crowded()
        except TooManyPending:
            return _too_many_pending(the_hub.limits)
        await websocket.accept()
        await session.serve_websocket(websocket)
        return None
    upgrading = hub().get(sid)
    if upgrading is None:
        return _unknown_session(sid)
    try:
        upgrading.engine.start_upgrade()
    except ProtocolError as error:
        return _refuse(400, "bad_request", str(error), EngineIoCode.BAD_REQUEST)
    await upgrading.upgrade(websocket, websocket.accept)
    return None


def hub() -> Hub:
    """The app's Socket.IO sessions (one registry per app, made on first use)."""
    found: Hub | None = current_app.extensions.get(HUB_KEY)
    if found is None:
        found = current_app.extensions[HUB_KEY] = Hub(services(), connection_caps(), stopping())
    return found


def _check_query(args: MultiDict[str, str], transport: Transport) -> Response | None:
    if args.get("EIO") != "4":
        return _refuse(
            400,
            "unsupported_protocol_version",
            f"this server speaks Engine.IO 4 (socket.io-client 3 and 4); EIO={args.get('EIO')!r}",
            EngineIoCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    if args.get("transport") != transport.value:
        return _refuse(
            400,
            "transport_unknown",
            f"transport {args.get('transport')!r} here; use {transport.value}",
            EngineIoCode.TRANSPORT_UNKNOWN,
        )
    return None


def _refuse(status: int, code: str, message: str, engine_io_code: EngineIoCode) -> Response:
    return error_response(status, code, message, {"engineIoCode": int(engine_io_code)})


def _unknown_session(sid: str) -> Response:
    return _refuse(
        400,
        "session_unknown",
        f"no session {sid[:40]!r}: it closed or never existed; reconnect",
        EngineIoCode.SESSION_UNKNOWN,
    )


def _crowded() -> Response:
    return error_response(503, "unavailable", "too many Socket.IO sessions; retry shortly")


def _too_many_pending(limits: SocketIOLimits) -> Response:
    response = error_response(
        429,
        "too_many_pending_sessions",
        f"this address has {limits.pending_per_address} Socket.IO sessions that have not sent "
        "their CONNECT; connect them (CONNECT with a token) or let them close",
    )
    response.headers["Retry-After"] = str(math.ceil(limits.connect_seconds))
    return response


def _text(body: str) -> Response:
    return Response(body, 200, content_type="text/plain; charset=UTF-8")


# --- the sessions --------------------------------------------------------------------------------


class Hub:
    """Every live session by sid, bounded in number."""

    def __init__(
        self,
        found: Services,
        caps: ConnectionCaps,
        going_away: trio.Event,
        limits: SocketIOLimits | None = None,
    ) -> None:
        settings = found.settings
        self._caps = caps
        self._going_away = going_away
        self.limits = limits or SocketIOLimits(
            connect_seconds=settings.socketio_connect_seconds,
            pending_per_address=settings.socketio_pending_per_address,
        )
        max_payload = min(settings.max_body_bytes, settings.ws_max_frame_bytes)
        # The same heartbeat as /ws (Engine.IO's own defaults are 25 s and 20 s).
        self.config = EngineConfig(
            ping_interval=settings.ws_ping_interval_seconds,
            ping_timeout=settings.ws_ping_timeout_seconds,
            max_payload=max_payload,
            max_buffered=4 * max_payload,
        )
        self._sessions: dict[str, SioSession] = {}
        # Sessions without a CONNECT yet, by client address.
        self._pending: Counter[str] = Counter()

    def get(self, sid: str) -> SioSession | None:
        return self._sessions.get(sid)

    async def open(
        self,
        found: Services,
        transport: Transport,
        authorization: str | None,
        address: str,
    ) -> SioSession:
        """A new session, running in the app's nursery until it closes."""
        if len(self._sessions) >= self.limits.max_sessions:
            limit_hit("socketio_sessions", sessions=len(self._sessions))
            raise Crowded
        if self._pending[address] >= self.limits.pending_per_address:
            limit_hit("socketio_pending", client=address)
            raise TooManyPending
        self._pending[address] += 1
        session = SioSession(
            found,
            self.limits,
            self.config,
            transport,
            authorization,
            client=address,
            settle=partial(self._settle, address),
            caps=self._caps,
            going_away=self._going_away,
        )
        self._sessions[session.sid] = session
        nursery: trio.Nursery = current_app.nursery  # type: ignore[attr-defined]
        await nursery.start(self._run, session)
        return session

    async def _run(
        self, session: SioSession, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await session.run(task_status=task_status)
        except Exception:
            # A bug in one session ends that session, never the app's nursery (the server).
            log.exception("socket.io session %s crashed", session.sid)
        finally:
            del self._sessions[session.sid]

    def _settle(self, address: str) -> None:
        """A session of `address` connected or closed: one fewer waiting for its CONNECT."""
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]


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
        going_away: trio.Event,
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
        self.engine = EngineSession(
            secrets.token_urlsafe(15), transport, config, clock=trio.current_time, wake=self._wake
        )
        self._inbox, self._inbound = trio.open_memory_channel[str | bytes](limits.inbox_packets)
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
        self._changed.set()
        self._changed = trio.Event()
        if self.engine.closed is not None:
            self._closed.set()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._changed.wait()

    # --- the session's task --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._pump)
                nursery.start_soon(self._dispatch, nursery)
                nursery.start_soon(self._await_connect)
                nursery.start_soon(self._go_away)
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

    async def _go_away(self) -> None:
        """The server is stopping: the close packet, without a DISCONNECT, so the client
        reconnects by itself (to the server that takes over)."""
        await self._going_away.wait()
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
        async for data in self._inbound:
            await self._on_message(data, nursery)

    async def _pump(self) -> None:
        async for item in self._outgoing:
            try:
                packets = self._render_now(item)
                if packets is None:
                    assert self._socket is not None
                    assert isinstance(item, ChatAssigned)
                    packets = await self._socket.render_assigned(item)
            except (StoreUnavailable, trio.TooSlowError):
                self._end("store_unavailable", "the database cannot be reached; reconnect shortly")
                return
            for packet, written in packets:
                # A client that does not collect what is buffered stops the pump here; its
                # outbox then fills and the domain closes it as a slow reader.
                await self._until(lambda: self.engine.has_room)
                self._send(packet, written)
            self._queued -= 1

    def _send(self, packet: eio.SioPacket, written: Written | None = None) -> None:
        """Into the Engine.IO buffer, as the message that carries it."""
        self.engine.send(eio.Message(eio.encode_sio(packet)), written)

    def _render_now(self, item: Outgoing) -> list[tuple[eio.SioPacket, Written | None]] | None:
        """The packets of an item, or None when making them needs the store (`chatCreated`)."""
        match item:
            case eio.Connect() | eio.Disconnect() | eio.Event() | eio.Ack() | eio.ConnectError():
                return [(item, None)]
            case _:
                # Events for a socket whose CONNECT failed after it was attached: nobody's.
                return [] if self._socket is None else self._socket.render(item)

    def _direct(self, item: Outgoing) -> bool:
        """Write an item straight into the Engine.IO buffer if nothing is queued before it,
        there is room, and it needs no store read; whether it was written."""
        if self._queued or not self.engine.has_room:
            return False
        packets = self._render_now(item)
        if packets is None:
            return False
        for packet, written in packets:
            self._send(packet, written)
        return True

    async def _emit(self, item: Outgoing) -> None:
        """The session's own answers: in order with the domain's events, and waiting for room
        in the outbox rather than dropping anything."""
        if self._direct(item):
            return
        self._queued += 1
        try:
            await self._outbox.send(item)
        except BaseException:
            self._queued -= 1
            raise

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
        event_name = packet.name if isinstance(packet, eio.Event) and socket is not None else None
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
            case eio.Connect(namespace, auth):
                await self._connect(namespace, auth, nursery)
            case eio.Disconnect(namespace):
                if namespace == eio.DEFAULT_NAMESPACE:
                    self._end_code = "client"
                    self.engine.close("the client disconnected")
            case eio.Event(namespace=namespace):
                # Like the stock server: an event for a namespace not connected is ignored.
                if socket is not None and namespace == eio.DEFAULT_NAMESPACE:
                    ending = await socket.on_event(packet)
                    if ending is not None:
                        self._end(ending.code, ending.message)
            case eio.Ack():
                pass  # this server never asks a client for an ack
            case _ as unreachable:
                assert_never(unreachable)

    async def _connect(
        self, namespace: str, auth: dict[str, Any] | None, nursery: trio.Nursery
    ) -> None:
        if namespace != eio.DEFAULT_NAMESPACE:
            await self._emit(eio.ConnectError("Invalid namespace", namespace))
            return
        if self._socket is not None:
            return  # connected already; the stock server ignores a repeated CONNECT too
        try:
            principal, token = await self._authenticate(auth)
        except Unauthenticated as error:
            await self._emit(eio.ConnectError(str(error)))
            return
        except CustomerCheckUnavailable as error:
            await self._emit(eio.ConnectError(str(error), data={"code": CHECK_UNAVAILABLE}))
            return
        try:
            self._slot = self._caps.take(principal)
        except TooManyConnections as error:
            code = "too_many_connections"
            await self._emit(eio.ConnectError(f"{code}: {error}", data={"code": code}))
            return
        session_id = new_id()
        socket = ChatSocket(
            self._found, principal, self._emit, self._limits.rooms_per_socket, session_id
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
            await self._emit(eio.ConnectError(failure))
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
        await self._emit(eio.Connect(data={"sid": socket.sid}))
        nursery.start_soon(socket.core.send_receipts)
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

    def _offer(self, event: DomainEvent) -> None:
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
            log.warning("disconnect of %s not told to the supervisor in time", session.id)

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
            error = ErrorOut(message=message, code=code).model_dump(
                by_alias=True, exclude_none=True
            )
            self._send(eio.Event("error", (error,)))
            if disconnect:
                self._send(eio.Disconnect())
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
                        await self._inbox.send(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                        raise ProtocolError("the session closed") from error
        finally:
            self.engine.finish_post()

    async def serve_websocket(self, ws: WebSocket) -> None:
        """A session opened on a websocket: the handshake is its first frame."""
        self.engine.send(self.engine.config.handshake(self.sid, []))
        await self._carry(ws)

    async def upgrade(self, ws: WebSocket, accept: Callable[[], Awaitable[None]]) -> None:
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

    async def _carry(self, ws: WebSocket) -> None:
        written_all = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_websocket, ws)
                nursery.start_soon(self._write_websocket, ws, written_all)
                await self._closed.wait()
                with trio.move_on_after(self._limits.flush_seconds):
                    await written_all.wait()
                nursery.cancel_scope.cancel()
        finally:
            # The client went away (the handler is cancelled) or the session closed.
            self.engine.close("the websocket closed", tell_client=False)

    async def _read_websocket(self, ws: WebSocket) -> None:
        while True:
            frame = await ws.receive()
            if frame is None:  # how Quart hands over an empty binary frame
                frame = b""
            try:
                data = self._strictly(partial(_receive_frame, self.engine, frame))
            except ProtocolError:
                return
            if data is not None:
                try:
                    await self._inbox.send(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    async def _write_websocket(self, ws: WebSocket, written_all: trio.Event) -> None:
        while True:
            await self._until(self.engine.ready)
            packets, written = self.engine.take()
            for packet in packets:
                await ws.send(_frame(packet))
            for done in written:
                done()
            if self.engine.closed is not None:
                written_all.set()
                return


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


# --- the default namespace: the original's events on the connection core -----------------------


_last_message_json: tuple[Message, RawJson] | None = None


def message_json(message: Message) -> RawJson:
    """`{message}` as the original's events carry it. The sender's `messageDelivered` and the
    receiver's `messageReceived` carry the same stored message moments apart: the last one made
    is kept, so it is made once for both."""
    global _last_message_json  # one entry, used only on trio's thread
    if _last_message_json is not None and _last_message_json[0] is message:
        return _last_message_json[1]
    made = RawJson(MessageOut(message=SioMessage.of(message)).model_dump_json(by_alias=True))
    _last_message_json = (message, made)
    return made


class ChatSocket:
    """One connected socket: its rooms, its events mapped onto the core, its pushed events."""

    def __init__(
        self,
        found: Services,
        principal: Principal,
        emit: Callable[[Outgoing], Awaitable[None]],
        rooms_limit: int,
        session_id: str,
    ) -> None:
        settings = found.settings
        self.sid = secrets.token_urlsafe(15)
        self.user_id = principal.user.id
        self.role = principal.role
        # The ids a room event may name for this user: the record's, and a customer's shop id.
        self._own_ids = {self.user_id, principal.user.external_id} - {None}
        self._store = found.store
        self._emit = emit
        self.core = Connection(
            found.system,
            Peer(self.user_id, self.role, session_id),
            found.store.get_chat,
            frames_per_second=settings.ws_max_frames_per_second,
            burst=settings.ws_frame_burst,
            edge="socketio",
        )
        self.chats: set[str] = set()
        self.user_room = False
        # Chats this socket last said it is typing in: repeats change nothing and cost nothing.
        self._typing: set[str] = set()
        # (chat, user) whose typing this socket was last told of: their next message ends it,
        # since a sender that says a message stops typing without saying so.
        self._shown_typing: set[tuple[str, str]] = set()
        self._rooms_limit = rooms_limit
        self._unacked = itertools.count(1)
        # Keys of this socket's sends in flight -> the stored message, once the domain fans it
        # out (before the core's ack returns): the sender's `messageDelivered` carries it.
        self._sending: dict[str, Message | None] = {}

    # --- client -> server ----------------------------------------------------------------------

    async def on_event(self, event: eio.Event) -> Ending | None:
        try:
            match event.name:
                case "sendMessage":
                    return await self._send_message(event)
                case "joinChat":
                    await self._join_chat(event)
                case "leaveChat":
                    await self._leave_chat(event)
                case "joinNotification" | "joinRoom":
                    await self._join_user_room(event, claimed_user(event.args))
                case "authenticate":
                    claimed = parse(UserRoomIn, event.args).user_id
                    if await self._join_user_room(event, claimed):
                        authenticated = AuthenticatedOut(user_id=claimed, role=self.role)
                        await self._push("authenticated", authenticated)
                case "startTyping" | "stopTyping":
                    return await self._set_typing(event, on=event.name == "startTyping")
                case "fetchNotifications":
                    await self._fetch_notifications(event)
                case "markNotificationRead":
                    await self._mark_notification_read(event)
                case "markAllNotificationsRead":
                    await self._mark_all_notifications_read(event)
                case name:
                    # As the original: what it does not handle, it ignores. Asked for an ack, the
                    # client gets one rather than a timeout.
                    log.debug("socket.io %s: unknown event %r ignored", self.sid, name[:64])
                    await self._refuse(
                        event,
                        "unknown_event",
                        f"unknown event {name[:64]!r}; known: {', '.join(EVENTS)}",
                    )
        except InvalidPayload as invalid:
            await self._refuse(event, "invalid_payload", f"{event.name}: {invalid}")
        except (StoreUnavailable, trio.TooSlowError):
            await self._refuse(event, "unavailable", "the database cannot be reached; retry")
        return None

    async def _send_message(self, event: eio.Event) -> Ending | None:
        data = parse(SendMessageIn, event.args)
        key = data.client_msg_id or (
            f"sio:{self.sid}:{event.ack_id}"
            if event.ack_id is not None
            else f"sio:{self.sid}:n{next(self._unacked)}"
        )
        self._sending[key] = None
        try:
            effects = await self.core.handle(SendMessage(data.chat_id, key, data.message))
        finally:
            fanned_out = self._sending.pop(key)
        closing = any(isinstance(effect, Close) for effect in effects)
        for effect in effects:
            match effect:
                case Ack(message_id=message_id):
                    # The message is said: the sender is not typing in the chat any more.
                    self._typing.discard(data.chat_id)
                    stored = fanned_out or await self._stored(message_id)
                    if stored is None:
                        await self._refuse(
                            event, "unavailable", "stored; reload the chat to see it"
                        )
                        continue
                    payload = message_json(stored)
                    await self._emit(eio.Event("messageDelivered", (payload,)))
                    if event.ack_id is not None:
                        await self._emit(eio.Ack(event.ack_id, (payload,)))
                case Error(code, message) if closing:
                    return Ending(code, message)
                case Error(code, message):
                    await self._refuse(event, code, message)
        return None

    async def _stored(self, message_id: str) -> Message | None:
        """A resent message (the domain did not fan it out again) read back from the store."""
        try:
            with trio.fail_after(ASK_SECONDS):
                return await self._store.get_message(message_id)
        except (StoreUnavailable, trio.TooSlowError):
            return None

    async def _join_chat(self, event: eio.Event) -> None:
        data = parse(JoinChatIn, event.args)
        if self.role is Role.ADMIN:
            await self._refuse(
                event,
                "forbidden",
                "chat rooms are for a chat's customer and agent; admins watch over /ws or REST",
            )
            return
        if data.user_type is not None and Role(data.user_type) is not self.role:
            await self._refuse(
                event,
                "forbidden",
                f"userType {data.user_type} does not match your token ({self.role})",
            )
            return
        if len(self.chats) >= self._rooms_limit and data.chat_id not in self.chats:
            await self._refuse(
                event, "too_many_rooms", f"a socket joins at most {self._rooms_limit} chats"
            )
            return
        with trio.fail_after(ASK_SECONDS):
            chat = await self._store.get_chat(data.chat_id)
        # Whatever id was sent: only a chat of this socket's own user.
        if chat is None or not may_see(self.user_id, self.role, chat):
            await self._refuse(event, NOT_FOUND, not_found_message(data.chat_id))
            return
        self.chats.add(chat.id)
        await self._answer(event, JoinedOut(room=chat.id))

    async def _leave_chat(self, event: eio.Event) -> None:
        """Out of the chat's room: its messages then come as `notification`s to the user room."""
        chat_id = named_chat(event.args)
        self.chats.discard(chat_id)
        await self._answer(event, JoinedOut(room=chat_id))

    async def _join_user_room(self, event: eio.Event, claimed: str | None) -> bool:
        if claimed is not None and claimed not in self._own_ids:
            await self._refuse(
                event, "forbidden", "that is another user's room; join your own (your token's user)"
            )
            return False
        self.user_room = True
        await self._answer(event, JoinedOut(room=self.user_id))
        return True

    async def _set_typing(self, event: eio.Event, *, on: bool) -> Ending | None:
        """Only a change reaches the chat's other side (the widget says `startTyping` on every
        keystroke); the change passes the core's rules as /ws's `typing` does."""
        chat_id = named_chat(event.args)
        if (chat_id in self._typing) == on:
            await self._answer(event, JoinedOut(room=chat_id))
            return None
        effects = await self.core.handle(SetTyping(chat_id, on))
        closing = any(isinstance(effect, Close) for effect in effects)
        for effect in effects:
            match effect:
                case Error(code, message) if closing:
                    return Ending(code, message)
                case Error(code, message):
                    await self._refuse(event, code, message)
                    return None
        if on:
            self._typing.add(chat_id)
        else:
            self._typing.discard(chat_id)
        await self._answer(event, JoinedOut(room=chat_id))
        return None

    async def _fetch_notifications(self, event: eio.Event) -> None:
        """The stored notifications, newest first, as the `userNotifications` event."""
        wanted = optional(FetchNotificationsIn, event.args)
        with trio.fail_after(ASK_SECONDS):
            items, total = await self._store.list_notifications(
                self.user_id, limit=wanted.limit, offset=wanted.offset
            )
            unread = await self._store.count_unread_notifications(self.user_id)
        page = UserNotificationsOut(
            notifications=[NotificationOut.stored(item) for item in items],
            pagination=NotificationPagination(
                total=total,
                limit=wanted.limit,
                offset=wanted.offset,
                has_more=wanted.offset + len(items) < total,
            ),
            unread_count=unread,
        )
        await self._push("userNotifications", page)
        await self._answer(event, page)

    async def _mark_notification_read(self, event: eio.Event) -> None:
        """As `PUT /notification/{id}/read`; a live notice (never stored) is not found."""
        notification_id = parse(NotificationRefIn, event.args).notification_id
        with trio.fail_after(ASK_SECONDS):
            marked = await self._store.mark_notification_read(self.user_id, notification_id)
        if not marked:
            await self._refuse(
                event,
                "notification_not_found",
                f"no stored notification {notification_id} of yours",
            )
            return
        await self._answer(event, CountOut(count=1))

    async def _mark_all_notifications_read(self, event: eio.Event) -> None:
        """As `PUT /notification/read-all`."""
        with trio.fail_after(ASK_SECONDS):
            count = await self._store.mark_all_notifications_read(self.user_id)
        await self._answer(event, CountOut(count=count))

    async def _push(self, name: str, payload: WireModel) -> None:
        body = RawJson(payload.model_dump_json(by_alias=True))
        await self._emit(eio.Event(name, (body,)))

    async def _answer(self, event: eio.Event, payload: WireModel) -> None:
        if event.ack_id is not None:
            body = RawJson(payload.model_dump_json(by_alias=True))
            await self._emit(eio.Ack(event.ack_id, (body,)))

    async def _refuse(self, event: eio.Event, code: str, message: str) -> None:
        """Through the ack when the client asked for one; else, for an event the original
        handled, as its `error` event; else only logged (the original ignored those events)."""
        if event.ack_id is not None:
            refusal = AckError(error=ErrorBody(code=code, message=message))
            await self._emit(eio.Ack(event.ack_id, (refusal.model_dump(by_alias=True),)))
        elif event.name in FAILED:
            error = ErrorOut(message=FAILED[event.name], code=code, error=message)
            await self._emit(eio.Event("error", (error.model_dump(by_alias=True),)))
        else:
            log.debug("socket.io %s: %s refused (%s): %s", self.sid, event.name, code, message)

    # --- server -> client ----------------------------------------------------------------------

    def intercept(self, event: DomainEvent) -> bool:
        """Keep the fan-out of this socket's own send for its ack instead of pushing it."""
        if isinstance(event, MessageAdded) and event.message.client_msg_id in self._sending:
            self._sending[event.message.client_msg_id] = event.message
            return True
        return False

    def render(self, event: DomainEvent) -> list[tuple[eio.SioPacket, Written | None]] | None:
        """A domain event as this socket's events, filtered by its rooms; None when it makes
        a `chatCreated`, whose shape is read from the store (`render_assigned`)."""
        match event:
            case MessageAdded(message):
                if message.chat_id in self.chats:
                    received = eio.Event("messageReceived", (message_json(message),))
                    packets: list[tuple[eio.SioPacket, Written | None]] = [
                        (received, partial(self.core.written, event))
                    ]
                    typist = (message.chat_id, message.sender_id)
                    if typist in self._shown_typing:
                        # The widget shows "Typing..." until told otherwise.
                        self._shown_typing.discard(typist)
                        packets.append(
                            self._typing_packet(message.chat_id, message.sender_id, on=False)
                        )
                    return packets
                if self.user_room and message.sender_id != self.user_id:
                    preview = message.content[:NOTIFICATION_PREVIEW_CHARS]
                    title = f"New message from {message.sender_role}"  # the original's title
                    return [
                        self._notice("notification", message.chat_id, "message", title, preview)
                    ]
                return []
            case ChatAssigned(chat, reason):
                if self.user_room and chat.agent_id == self.user_id:
                    return None
                return self._assigned_notice(chat, reason)
            case ChatUnassigned(chat_id, reason):
                if chat_id not in self.chats:
                    return []
                return [
                    self._notice(
                        "chatNotified", chat_id, "chat_assignment", "Chat unassigned", reason
                    )
                ]
            case ChatStatusEvent(chat_id, status, _):
                if chat_id not in self.chats:
                    return []
                return [
                    self._notice(
                        "chatNotified",
                        chat_id,
                        "status_change",
                        "Chat status",
                        f"the chat is {status}",
                    )
                ]
            case TypingEvent(chat_id, user_id, on):
                if chat_id not in self.chats:
                    return []
                if on:
                    self._shown_typing.add((chat_id, user_id))
                else:
                    self._shown_typing.discard((chat_id, user_id))
                return [self._typing_packet(chat_id, user_id, on=on)]
            case QueuePosition() | AgentStatusEvent() | ReadEvent():
                return []  # the original had no such events; /ws carries them
            case FloorUpdate():
                return []  # only /ws can watch the floor
            case _ as unreachable:
                assert_never(unreachable)

    async def render_assigned(
        self, event: ChatAssigned
    ) -> list[tuple[eio.SioPacket, Written | None]]:
        """`chatCreated` for the agent's own room, then what `render` makes of it."""
        with trio.fail_after(ASK_SECONDS):
            shape = SioChat.of(await chat_out(self._store, event.chat))
        created = eio.Event("chatCreated", (RawJson(shape.model_dump_json(by_alias=True)),))
        return [(created, None), *self._assigned_notice(event.chat, event.reason)]

    @staticmethod
    def _typing_packet(
        chat_id: str, user_id: str, *, on: bool
    ) -> tuple[eio.SioPacket, Written | None]:
        typing = TypingOut(chat_id=chat_id, user_id=user_id)
        name = "typingStarted" if on else "typingStopped"  # what the widget listens to
        return eio.Event(name, (RawJson(typing.model_dump_json(by_alias=True)),)), None

    def _assigned_notice(
        self, chat: Chat, reason: str
    ) -> list[tuple[eio.SioPacket, Written | None]]:
        if chat.id not in self.chats:
            return []
        # The routing reason names other agents and their loads: staff only.
        said = reason if self.role is Role.AGENT else "an agent is handling your chat"
        return [self._notice("chatNotified", chat.id, "chat_assignment", "Chat assigned", said)]

    def _notice(
        self, name: str, chat_id: str, kind: NotificationType, title: str, content: str
    ) -> tuple[eio.SioPacket, Written | None]:
        notice = NotificationOut.about(self.user_id, chat_id, kind, title, content)
        return eio.Event(name, (RawJson(notice.model_dump_json(by_alias=True)),)), None
