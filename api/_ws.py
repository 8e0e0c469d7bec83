"""The /ws endpoint: authentication before accept, then the JSON edge around the connection core.

Before accepting, a connection must show a token: `Authorization: Bearer <token>` (non-browser
clients), or for browsers, which cannot set headers on a websocket, the subprotocols
`bearer, <token>` (`new WebSocket(url, ["bearer", token])`); the server then accepts with the
subprotocol `bearer`, as RFC 6455 requires it to echo one the client offered (never the token).
A browser `Origin` must be listed in `allowed_origins`; no Origin means a non-browser client.
Refusals are plain HTTP answers (401, 403, 503) with the common error body, so nothing that is
not authenticated ever gets a socket.

After accept, one `JsonEdge` per connection attaches it; then the server's reader task hands it
each frame (frames -> core -> replies, written from that task once the frame is answered). The
writer of pushed events (the connection's bounded outbox -> JSON text frames) and the delivery
receipts get a task only while they have something to do, the token's expiry is a deadline on
the run's shared clock (api/_deadlines) and the server's stop a callback, so an idle connection
keeps no task of its own. Domain events come in through `Session.offer`, a `send_nowait` into
the same outbox: when it is full the reader is too slow, and the domain closes the connection
with 1013 instead of waiting for it. Everything the server says goes through the outbox, so
frames leave in the order they were produced.

About 800 lines: the handshake's checks and what serves the connection (its frames, its writer,
its end), which share the connection's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, assert_never

import pydantic_core
import trio
from pydantic import ValidationError
from quart import Blueprint, Response, websocket

from actors import (
    AgentStatusEvent,
    ChatAssigned,
    ChatStatusEvent,
    ChatUnassigned,
    Event,
    FloorUpdate,
    MessageAdded,
    QueuePosition,
    ReadEvent,
    Session,
    System,
    TypingEvent,
)
from api._auth import LEEWAY_SECONDS, Principal, Unauthenticated
from api._client import current_client
from api._connection_caps import Slot, TooManyConnections, connection_caps
from api._cors import origin_allowed
from api._deadlines import Entry, deadlines
from api._errors import ASK_SECONDS, ApiError, error_response
from api._frames import (
    MAX_CHAT_ID_CHARS,
    MAX_CONTENT_CHARS,
    AgentStatusOut,
    ChatAssignedOut,
    ChatOpenedOut,
    ChatStatusOut,
    ChatUnassignedOut,
    ErrorFrameOut,
    FloorOut,
    MessageFrameOut,
    PongOut,
    QueuePositionOut,
    ReadOut,
    ResumedOut,
    ServerFrame,
    TypingFrameOut,
    client_frame,
)
from api._guard import bearer_token
from api._hypercorn import BATCH_KEY, CANCEL_KEY, CLOSE_KEY, FrameHandler
from api._quart_websocket import DirectWebsocket, serve_after_handshake
from api._schemas import ChatMessageOut
from api._services import Services, services
from api._shapes import chat_shape
from api._shop_profile import CHECK_UNAVAILABLE, CustomerCheckUnavailable
from api._stopping import CLOSE_GOING_AWAY, GOING_AWAY, Stopping, stopping
from api._ws_core import (
    CLOSE_INTERNAL,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    CONNECT_ROLES,
    Ack,
    ChatOpened,
    Close,
    Connection,
    EdgeEffect,
    Error,
    Inbound,
    Malformed,
    NotRecovered,
    Outbound,
    Peer,
    Pong,
    PostMessage,
    Resume,
    Resumed,
)
from store import StoreUnavailable, new_id
from telemetry import connection_closed, connection_opened, limit_hit

log = logging.getLogger("api.ws")

ws = Blueprint("ws", __name__)

BEARER_SUBPROTOCOL = "bearer"
# How long a closing connection may take to write the frame that explains the close.
FLUSH_SECONDS = 2.0
# At most this many queued frames leave in one write to the socket.
WRITE_BATCH = 64


class WebSocket(Protocol):
    """What the edge needs of a websocket; Quart's `websocket` is one."""

    async def receive(self) -> str | bytes: ...
    async def send(self, data: str) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


async def send_together(transport: WebSocket, frames: list[str]) -> None:
    """Send `frames` in order, in one write to the socket where the server allows it."""
    send_texts = getattr(transport, "send_texts", None)
    if send_texts is not None and await send_texts(frames):
        return
    batch = getattr(transport, "scope", {}).get(BATCH_KEY)
    if batch is None or len(frames) == 1:
        for frame in frames:
            await transport.send(frame)
        return
    async with batch:
        for frame in frames:
            await transport.send(frame)


@ws.websocket("/ws")
async def socket() -> Response | None:
    # The handshake: refusals are HTTP answers, logged by the request log as any request.
    found = services()
    origin = websocket.headers.get("Origin")
    if not origin_allowed(origin, found.settings.allowed_origins, websocket.headers.get("Host")):
        return error_response(
            403, "origin_not_allowed", f"origin {origin!r} may not open this websocket"
        )
    try:
        token, subprotocol = credentials(
            websocket.headers.get("Authorization"), websocket.requested_subprotocols
        )
        with trio.fail_after(ASK_SECONDS):
            principal = await found.tokens.authenticate(token)
    except ApiError as error:
        return error_response(error.status, error.code, error.message)
    except Unauthenticated as error:
        return error_response(401, "unauthorized", str(error))
    except CustomerCheckUnavailable as error:
        return error_response(503, CHECK_UNAVAILABLE, str(error))
    except (StoreUnavailable, trio.TooSlowError):
        return error_response(503, "unavailable", "cannot check the token right now; retry")
    if principal.role not in CONNECT_ROLES:
        return error_response(
            403,
            "forbidden",
            f"the websocket is for {', '.join(sorted(CONNECT_ROLES))}; "
            f"you are signed in as {principal.role}",
        )
    try:
        slot = connection_caps().take(principal)
    except TooManyConnections as error:
        refused = error_response(429, "too_many_connections", str(error))
        refused.headers["Retry-After"] = str(math.ceil(error.retry_after))
        return refused
    try:
        await websocket.accept(subprotocol=subprotocol)
        edge = JsonEdge(found, principal, token, stopping(), slot, current_client())
    except BaseException:
        slot.release()
        raise
    # Served once Quart's dispatch has returned: nothing of Quart's stays for the connection,
    # nor the principal (its user record) or the services, which only the edge's making needed.
    serve_after_handshake(AcceptedSocket(edge))
    return None


@dataclass(frozen=True, slots=True)
class AcceptedSocket:
    """An accepted /ws connection, served outside Quart by its edge."""

    edge: JsonEdge

    async def serve(self, transport: DirectWebsocket) -> None:
        await self.edge.run(transport)

    def abandon(self) -> None:
        self.edge.abandon()


def _hand_over(transport: WebSocket, scope: trio.CancelScope) -> None:
    """Have the peer's end cancel `scope` (the connection's), not one of the handshake's kept
    around it for the connection's life (api/_hypercorn's `CANCEL_KEY`)."""
    cancels = getattr(transport, "scope", {}).get(CANCEL_KEY)
    if cancels is not None:
        cancels.hand_over(scope)


def _how_closed(ours: Close | None, noted: object) -> tuple[int | str, str]:
    """The close code and why: ours with its reason, else what the HTTP server saw go out."""
    if ours is not None:
        return ours.code, ours.reason
    match noted:
        case ("server", int(code)):
            return code, "closed by the HTTP server (a frame over the size limit is 1009)"
        case ("client", int(code)):
            return code, "closed by the client"
        case _:
            return "gone", "the client went away without a close"


def credentials(authorization: str | None, subprotocols: list[str]) -> tuple[str, str | None]:
    """The token and the subprotocol to accept with (`bearer` whenever the client offered it)."""
    offered = BEARER_SUBPROTOCOL in subprotocols
    echo = BEARER_SUBPROTOCOL if offered else None
    if authorization is not None:
        return bearer_token(authorization), echo
    if offered:
        at = subprotocols.index(BEARER_SUBPROTOCOL)
        if at + 1 < len(subprotocols) and subprotocols[at + 1]:
            return subprotocols[at + 1], echo
    raise ApiError(
        401,
        "unauthorized",
        "missing token: send 'Authorization: Bearer <token>', or the subprotocols "
        "'bearer, <token>'",
    )


def token_id(principal: Principal, token: str) -> str:
    """What signing out with this token closes connections by: its jti, else a digest of it
    (a shop's customer tokens need not carry a jti)."""
    return principal.jti or hashlib.sha256(token.encode()).hexdigest()


def decode(data: str | bytes) -> Inbound:
    """One client frame as a core command, or what is wrong with it."""
    if isinstance(data, bytes):
        return Malformed("invalid_frame", "frames are JSON text, not binary", None)
    try:
        raw = pydantic_core.from_json(data)
    except ValueError:
        return Malformed("invalid_json", "the frame is not valid JSON", None)
    if not isinstance(raw, dict):
        return Malformed("invalid_frame", 'a frame is a JSON object: {"type": ...}', None)
    send = _plain_send(raw)
    if send is not None:
        return send
    ref = _raw_ref(raw)
    try:
        frame = client_frame.validate_python(raw)
    except ValidationError as error:
        return _invalid(error, raw, ref)
    return frame.command()


_SEND_KEYS = frozenset(("type", "chatId", "clientMsgId", "content"))
_CLIENT_MSG_ID = re.compile(r"[!-~]{1,128}")  # as api._schemas.ClientMsgId


def _plain_send(raw: dict[str, object]) -> PostMessage | None:
    """A `message.send` frame (most frames) in its plain form, checked as `MessageSendIn` checks
    it without building the model; None for anything else, which the models validate."""
    if raw.keys() != _SEND_KEYS or raw["type"] != "message.send":
        return None
    chat_id, client_msg_id, content = raw["chatId"], raw["clientMsgId"], raw["content"]
    if (
        type(chat_id) is str
        and 0 < len(chat_id) <= MAX_CHAT_ID_CHARS
        and type(client_msg_id) is str
        and _CLIENT_MSG_ID.fullmatch(client_msg_id)
        and type(content) is str
        and 0 < len(content) <= MAX_CONTENT_CHARS
    ):
        return PostMessage(chat_id, client_msg_id, content)
    return None


_KNOWN_TYPES = ", ".join(sorted(client_frame.json_schema()["discriminator"]["mapping"]))
# A ref longer than any valid clientMsgId or type is not echoed back.
_MAX_REF_CHARS = 128


def _raw_ref(raw: dict[str, object]) -> str | None:
    for key in ("clientMsgId", "type"):
        value = raw.get(key)
        if isinstance(value, str) and len(value) <= _MAX_REF_CHARS:
            return value
    return None


def _invalid(error: ValidationError, raw: dict[str, object], ref: str | None) -> Malformed:
    problems = error.errors(include_url=False, include_input=False)
    kinds = {problem["type"] for problem in problems}
    if "union_tag_invalid" in kinds:
        return Malformed(
            "unknown_type", f"unknown frame type {raw.get('type')!r}; known: {_KNOWN_TYPES}", ref
        )
    if "union_tag_not_found" in kinds:
        return Malformed("invalid_frame", 'a frame needs a "type"', ref)
    detail = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'frame'}: {problem['msg']}"
        for problem in problems
    )
    return Malformed("invalid_frame", detail, ref)


def too_big(data: str | bytes, limit: int) -> bool:
    """Over `limit` bytes as UTF-8 (hypercorn's own cap counts characters)."""
    if len(data) > limit:
        return True
    # Only text of more than a quarter of the limit in characters can exceed it in bytes.
    return isinstance(data, str) and len(data) * 4 > limit and len(data.encode()) > limit


class RenderedMessages:
    """The `message` frames rendered last, by event: a message is fanned out to every session of
    both participants as one `MessageAdded`, and rendered once for all of them. Each entry keeps
    its event, so an id is never taken for another event's while it is here."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._texts: dict[int, tuple[MessageAdded, str]] = {}

    def text(self, event: MessageAdded) -> str:
        found = self._texts.get(id(event))
        if found is not None and found[0] is event:
            return found[1]
        message = event.message
        text = MessageFrameOut(
            chat_id=message.chat_id, seq=message.seq, message=ChatMessageOut.of(message)
        ).model_dump_json(by_alias=True)
        if len(self._texts) >= self._size:
            del self._texts[next(iter(self._texts))]  # the oldest
        self._texts[id(event)] = (event, text)
        return text


# Enough for the fan-out of every message written in one pass of the scheduler.
RENDERED_MESSAGES = RenderedMessages(256)


def ack_json(ack: Ack) -> str:
    """`AckOut`'s JSON (every message has an ack): the same text, by the same serializer, without
    building and validating the model."""
    return pydantic_core.to_json(
        {
            "type": "ack",
            "clientMsgId": ack.client_msg_id,
            "chatId": ack.chat_id,
            "seq": ack.seq,
            "messageId": ack.message_id,
        }
    ).decode()


class Outbox:
    """A connection's frames waiting for its writer, in order, at most `capacity` of them.
    What a memory channel does here, keeping nothing while empty: a channel keeps its deque,
    two ordered dicts and two sets for as long as the connection lives (about 2 KiB)."""

    __slots__ = ("_capacity", "_items", "_room")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: deque[Outbound] | None = None
        self._room: trio.Event | None = None  # a reply waiting for room

    def __len__(self) -> int:
        return 0 if self._items is None else len(self._items)

    def full(self) -> bool:
        return len(self) >= self._capacity

    def put_nowait(self, item: Outbound) -> None:
        """Queue `item`; `trio.WouldBlock` when full."""
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self._capacity:
            raise trio.WouldBlock
        items.append(item)

    async def room(self) -> None:
        """Wait until the writer takes something (a full outbox has room again) or `wake`."""
        if self._room is None:
            self._room = trio.Event()
        await self._room.wait()

    def wake(self) -> None:
        """Wake a reply waiting for room: something was taken, or the connection is ending."""
        if self._room is not None:
            self._room.set()
            self._room = None

    def take(self, at_most: int) -> list[Outbound]:
        """Up to `at_most` of the oldest frames, in order (none when empty)."""
        items = self._items
        if items is None:
            return []
        taken = [items.popleft() for _ in range(min(at_most, len(items)))]
        if not items:
            self._items = None
        self.wake()
        return taken


class Served(WebSocket, Protocol):
    """What the edge needs of an accepted websocket served outside Quart (`DirectWebsocket`)."""

    @property
    def scope(self) -> Any: ...
    def frames_waiting(self) -> int | None: ...
    def can_send_texts_now(self) -> bool: ...
    def send_texts_now(self, texts: list[str]) -> None: ...
    def take_frames(self, handler: FrameHandler) -> None: ...
    def spawn(self, run: Callable[[], Awaitable[None]]) -> None: ...
    async def done(self) -> None: ...


class JsonEdge:
    """One accepted connection: JSON frames in and out around a `Connection` core.

    Once attached it keeps no task of its own: the server's reader task hands it each frame
    (`frame`), the writer and the delivery receipts get a task while they have something to do,
    the token's expiry and the server's stop are callbacks (the shared `deadlines` clock,
    `Stopping`), and its end runs in a task started for it. Each of those tasks runs in a
    cancel scope of its own, all of which a close or the peer's end cancels."""

    __slots__ = (
        "_answering",
        "_client",
        "_closing",
        "_core",
        "_deadline",
        "_drained",
        "_ended",
        "_expiry",
        "_handed",
        "_held",
        "_max_frame_bytes",
        "_opened",
        "_outbox",
        "_outbox_frames",
        "_peer",
        "_slot",
        "_stopping",
        "_system",
        "_token",
        "_tokens",
        "_transport",
        "_work",
        "_writing",
        "session",
    )

    def __init__(
        self,
        found: Services,
        principal: Principal,
        token: str,
        stopping: Stopping,
        slot: Slot,
        client: str,
    ) -> None:
        settings = found.settings
        self._system: System = found.system
        self._tokens = found.tokens
        # Checked again once attached, then let go: the session keeps what sign-out matches.
        self._token: str | None = token
        self._transport: Served | None = None  # given to `run`
        self._slot = slot
        self._client = client
        self._opened = 0.0
        self._max_frame_bytes = settings.ws_max_frame_bytes
        session_id = new_id()
        self._peer = Peer(principal.user.id, principal.role, session_id)
        self._core = Connection(
            found.system,
            self._peer,
            found.store.get_chat,
            frames_per_second=settings.ws_max_frames_per_second,
            burst=settings.ws_frame_burst,
        )
        self._outbox = Outbox(settings.ws_outbox_frames)
        # A writer runs while the outbox has frames (`_queue` starts it); a close waiting for
        # the frames queued before it to leave waits for `_drained` (made then).
        self._writing = False
        self._drained: trio.Event | None = None
        # While a frame is being answered, what is queued for the connection waits for the
        # answer, and leaves with it in one write (a message and its ack), from the task that
        # answered: no writer is started for it unless the outbox is half full.
        self._answering = False
        self._outbox_frames = settings.ws_outbox_frames
        # Live messages of a chat this connection is resuming, held until the resume's answer
        # is queued, so the answer stays contiguous and nothing in it comes twice (made by the
        # first resume).
        self._held: dict[str, list[MessageAdded]] | None = None
        # The token's expiry (with the same leeway authentication allows) ends the connection.
        remaining = (principal.expires_at - datetime.now(UTC)).total_seconds() + LEEWAY_SECONDS
        self._deadline = trio.current_time() + remaining
        self._expiry: Entry | None = None  # its turn on the `deadlines` clock, while it runs
        self._closing: Close | None = None
        self._stopping = stopping
        # The scopes of what runs for the connection now (made while anything does); once its
        # end has begun, each is cancelled and none starts.
        self._work: set[trio.CancelScope] | None = None
        self._ended = False
        self._handed = False  # the server's reader hands it the frames (from `take_frames` on)
        self.session = Session(
            session_id, self._peer.user_id, self._offer, self._close, token_id(principal, token)
        )

    async def run(self, transport: Served) -> None:
        """Attach the connection, then hand its frames to the server's reader task and return;
        a connection that ends before that ends here."""
        self._transport = transport
        self._opened = trio.current_time()
        connection_opened(
            "ws",
            self._peer.role.value,
            session=self.session.id,
            principal=self._peer.user_id,
            client=self._client,
            transport="websocket",
        )
        # Told when the server begins to stop and when the token expires, without a task (or a
        # scope) of its own waiting for either.
        self._stopping.tell(self._go_away)
        self._expiry = deadlines().call_at(self._deadline, self._expire)
        try:
            scope = self._begin_work()
            try:
                with scope:
                    _hand_over(transport, scope)
                    await self._attach()
                    # The frames read meanwhile, in order; nothing yields between the last of
                    # them and the hand-over, so none can come between.
                    while not self._ended and transport.frames_waiting():
                        await self._handle(await transport.receive())
                    if not self._ended:
                        # Handed first: a peer already gone is told at once (`gone`), and the
                        # end must then run in a task of its own, as it would later.
                        self._handed = True
                        transport.take_frames(self)
            finally:
                self._end_work(scope)
        finally:
            if not self._handed:
                self._ended = True
                await self._end()

    def abandon(self) -> None:
        """The connection ended before `run`: let go of its slot."""
        self._slot.release()

    # --- the domain's side: never blocks -------------------------------------------------------

    @property
    def closing(self) -> Close | None:
        """Why the server is ending the connection (None: it is not)."""
        return self._closing

    def _offer(self, event: Event) -> None:
        if self._closing is not None or self._ended:
            return  # closing: the client resumes what it missed after reconnecting
        if isinstance(event, MessageAdded) and self._held:
            held = self._held.get(event.message.chat_id)
            if held is not None:
                if len(held) >= self._outbox_frames:
                    raise trio.WouldBlock  # as full as the outbox could be: too slow
                held.append(event)
                return
        self._queue(event)

    def _close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = Close(code, reason)
        self._stop()

    def _go_away(self) -> None:
        self._close(CLOSE_GOING_AWAY, GOING_AWAY)

    def _expire(self) -> None:
        self._expiry = None  # fired
        self._close(CLOSE_UNAUTHORIZED, "token expired; sign in again")

    # --- the server's reader ------------------------------------------------------------------

    async def frame(self, data: str | bytes | None, more: bool) -> None:
        """One frame, handed over by the server's reader task (each is answered in turn, so
        whether `more` follow makes no difference here)."""
        if self._closing is not None or self._ended:
            return  # the close is under way: nothing more is read
        # No scope of its own: what a frame waits for ends with the connection (`_stop`): its
        # asks (the core's bound) and room in the outbox; its own write is the transport's,
        # bounded by the send timeout.
        await self._handle(data)

    def gone(self) -> None:
        """The peer is gone: the connection ends, closing nothing."""
        self._stop()

    # --- what runs for the connection ---------------------------------------------------------

    def _begin_work(self) -> trio.CancelScope:
        """A scope for something that runs for the connection, cancelled by its end."""
        scope = trio.CancelScope()
        if self._ended:
            scope.cancel()
        if self._work is None:
            self._work = set()
        self._work.add(scope)
        return scope

    def _end_work(self, scope: trio.CancelScope) -> None:
        work = self._work
        if work is not None:
            work.discard(scope)
            if not work:
                self._work = None

    def _stop(self) -> None:
        """End the connection: cancel what runs for it; the end itself runs in a task of its
        own once the server's reader has the frames, else in `run`'s."""
        if self._ended:
            return
        self._ended = True
        self._core.stop()
        self._outbox.wake()
        for scope in self._work or ():
            scope.cancel()
        if not self._handed:
            return
        assert self._transport is not None
        try:
            self._transport.spawn(self._end_handed)
        except RuntimeError:  # the connection's tasks are over: nothing may wait any more
            log.warning("websocket session %s ended without detaching", self.session.id)
            self._let_go()

    async def _end_handed(self) -> None:
        assert self._transport is not None
        try:
            await self._end()
        finally:
            await self._transport.done()

    async def _end(self) -> None:
        """Detach, close when the server ends the connection, log its end and let go."""
        assert self._transport is not None
        try:
            await self._detach()
            self._stopping.forget(self._go_away)
            if self._closing is not None:  # else the peer is gone: nothing to close
                await self._transport.close(self._closing.code, self._closing.reason)
        finally:
            self._let_go()

    def _let_go(self) -> None:
        self._stopping.forget(self._go_away)
        if self._expiry is not None:
            deadlines().drop(self._expiry)
            self._expiry = None
        assert self._transport is not None
        code, reason = _how_closed(self._closing, self._transport.scope.get(CLOSE_KEY))
        user_id = self._peer.user_id
        if code == CLOSE_TOO_BIG and self._closing is None:
            limit_hit("frame_size", edge="ws", principal=user_id)
        connection_closed(
            "ws",
            self._peer.role.value,
            session=self.session.id,
            principal=user_id,
            code=code,
            reason=reason,
            seconds=trio.current_time() - self._opened,
        )
        self._slot.release()

    async def _attach(self) -> None:
        token, self._token = self._token, None
        assert token is not None, "attached once"
        try:
            with trio.fail_after(ASK_SECONDS):
                await self._system.connect(self.session, self._peer.role)
                # A sign-out or demotion between the handshake and now closed nothing: check again.
                again = await self._tokens.authenticate(token)
            if again.role != self._peer.role:
                self._close(CLOSE_UNAUTHORIZED, "your role changed; sign in again")
        except Unauthenticated as error:
            self._close(CLOSE_UNAUTHORIZED, str(error))
        except (trio.TooSlowError, StoreUnavailable, CustomerCheckUnavailable):
            self._close(CLOSE_TRY_AGAIN, "the server is too busy; reconnect shortly")

    async def _detach(self) -> None:
        with trio.move_on_after(ASK_SECONDS) as bound:
            bound.shield = True  # also when the connection is being cancelled
            await self._system.disconnect(self.session, self._peer.role)
        if bound.cancelled_caught:
            log.warning(
                "disconnect of %s not told to the assignment actor in time", self.session.id
            )

    async def _handle(self, data: str | bytes | None) -> None:
        if data is None:  # Quart hands an empty binary frame over as None (b"" is falsy)
            data = b""
        if too_big(data, self._max_frame_bytes):
            limit_hit("frame_size", edge="ws", principal=self._peer.user_id)
            await self._finish(
                Close(CLOSE_TOO_BIG, f"frames are limited to {self._max_frame_bytes} bytes")
            )
            return
        inbound = decode(data)
        resuming = inbound.chat_id if isinstance(inbound, Resume) else None
        if resuming is not None:
            if self._held is None:
                self._held = {}
            self._held[resuming] = []
        self._answering = True
        try:
            effects = await self._core.handle(inbound)
            if self._ended:
                return  # ended meanwhile (its asks were cancelled): the answer goes nowhere
            for effect in effects:
                if isinstance(effect, Close):
                    await self._finish(effect)
                    return
                await self._reply(effect)
            if resuming is not None:
                self._release(resuming, effects)
            await self._flush()
        finally:
            self._answering = False

    def _release(self, chat_id: str, answer: list[EdgeEffect]) -> None:
        """Queue the live messages held during a resume that its answer did not contain."""
        assert self._held is not None
        held = self._held.pop(chat_id)
        answered = [effect.last_seq for effect in answer if isinstance(effect, Resumed)]
        for event in held:
            if answered and event.message.seq <= answered[0]:
                continue
            try:
                self._queue(event)
            except trio.WouldBlock:
                self._close(CLOSE_TRY_AGAIN, "too slow reading events; reconnect and resume")
                return

    async def _finish(self, close: Close) -> None:
        """Close once what is queued (the error that explains the close) has been written."""
        if self._closing is None:
            self._closing = close  # nothing is queued from now on
        with trio.move_on_after(FLUSH_SECONDS):
            if self._writing:
                self._drained = trio.Event()
                await self._drained.wait()
            else:
                await self._flush()
        self._stop()

    def _queue(self, item: Outbound) -> None:
        """Write `item` now where the socket is free and nothing is queued before it; else queue
        it for the writer, starting one unless one runs (it takes `item` too).
        `trio.WouldBlock` when the outbox is full."""
        transport = self._transport
        assert transport is not None, "queued only while running"
        if (
            not self._writing
            and not self._answering
            and not len(self._outbox)
            and transport.can_send_texts_now()
        ):
            # Most events find the socket free: the frame is written from the caller's step
            # (the actor's), with no task started for it and no trip through the scheduler.
            try:
                transport.send_texts_now([self._render(item)])
            except Exception:
                self._cannot_write()
                return
            self._written(item)
            return
        self._outbox.put_nowait(item)
        if self._writing:
            return
        if self._answering and len(self._outbox) < self._outbox_frames // 2:
            return  # the answer's `_flush` writes it, with the answer
        self._start_writer()

    def _start_writer(self) -> None:
        assert self._transport is not None
        self._writing = True
        self._transport.spawn(self._write)

    async def _reply(self, item: Outbound) -> None:
        """Queue a reply, waiting for room: a client that does not read only slows itself.
        What the frame's answer queued leaves once it is complete (`_flush`), unless a writer
        runs and takes it."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._outbox.full():
            if self._ended:
                return  # nothing more is written (`_stop` wakes a reply waiting for room)
            if not self._writing:
                self._start_writer()
            await self._outbox.room()
        self._outbox.put_nowait(item)

    async def _flush(self) -> None:
        """Write a frame's answer from the task that answered it (the server's reader), unless
        a writer runs: no task is started for it, and an answer without a wait (a pong) keeps
        nothing while other connections' frames are handled, so a burst of frames on many
        connections at once does not hold a task and a stack for each."""
        if self._writing or self._ended or not len(self._outbox):
            return
        self._writing = True
        await self._write_out(batching=False)

    async def _write(self) -> None:
        """The writer's task: what the outbox holds, until it is empty; then it ends (the next
        frame queued starts a writer again)."""
        scope = self._begin_work()
        try:
            with scope:
                await self._write_out(batching=True)
        finally:
            self._end_work(scope)

    async def _write_out(self, *, batching: bool) -> None:
        """Write what the outbox holds, in batches, until it is empty (`_writing` is set)."""
        transport = self._transport
        assert transport is not None, "queued only while running"
        try:
            while True:
                if batching:
                    # What the tasks woken with the first frame queue behind it (a message's ack
                    # behind the message) joins it: one write to the socket for all.
                    await trio.lowlevel.checkpoint()
                items = self._outbox.take(WRITE_BATCH)
                if not items:
                    return
                # Rendering reads nothing: the events carry what the frames show.
                frames = [self._render(each) for each in items]
                await send_together(transport, frames)
                for each in items:
                    self._written(each)
                if not len(self._outbox):
                    # Nothing was queued during the write (most writes do not yield): done,
                    # without a checkpoint only to find the outbox empty.
                    return
                batching = True  # more came: the others run before the next batch
        except Exception:
            self._cannot_write()
        finally:
            # Nothing between the empty outbox and here yields: a frame queued after it starts
            # the next writer.
            self._writing = False
            if self._drained is not None:
                self._drained.set()

    def _written(self, item: Outbound) -> None:
        """`item` has left for the socket: start the delivery receipts it calls for. Best
        effort: a connection whose tasks are over sends none (the next read covers them), and
        an actor writing from its step must not fail for it. The task group refuses with
        RuntimeError, or AttributeError once it has let go of its nursery."""
        if self._core.written(item):
            assert self._transport is not None
            with contextlib.suppress(RuntimeError, AttributeError):
                self._transport.spawn(self._receipts)

    def _cannot_write(self) -> None:
        """A frame could not be rendered or written: log why, and end the connection (the
        client resumes what it missed)."""
        log.exception("cannot write to websocket session %s", self.session.id)
        self._close(CLOSE_INTERNAL, "internal error; reconnect and resume")

    async def _receipts(self) -> None:
        scope = self._begin_work()
        try:
            with scope:
                await self._core.send_receipts()
        finally:
            self._end_work(scope)

    def _render(self, item: Outbound) -> str:
        frame: ServerFrame
        match item:
            case MessageAdded():
                return RENDERED_MESSAGES.text(item)
            case ChatAssigned(chat, reason, agent, last):
                frame = ChatAssignedOut(chat=chat_shape(chat, agent, last), reason=reason)
            case ChatUnassigned(chat_id, reason):
                frame = ChatUnassignedOut(chat_id=chat_id, reason=reason)
            case ChatStatusEvent(chat_id, status, agent_id):
                frame = ChatStatusOut(chat_id=chat_id, status=status, agent_id=agent_id)
            case QueuePosition(chat_id, position, eta_seconds):
                frame = QueuePositionOut(
                    chat_id=chat_id, position=position, eta_seconds=eta_seconds
                )
            case AgentStatusEvent(agent_id, status, reason):
                frame = AgentStatusOut(agent_id=agent_id, status=status, reason=reason)
            case TypingEvent(chat_id, user_id, on):
                frame = TypingFrameOut(chat_id=chat_id, user_id=user_id, on=on)
            case ReadEvent(chat_id, reader_id, seq, status):
                frame = ReadOut(chat_id=chat_id, reader_id=reader_id, seq=seq, status=status)
            case FloorUpdate():
                frame = FloorOut.of(item)
            case Ack():
                return ack_json(item)
            case Resumed(chat_id, last_seq):
                frame = ResumedOut(chat_id=chat_id, recovered=True, last_seq=last_seq)
            case NotRecovered(chat_id, reason):
                frame = ResumedOut(chat_id=chat_id, recovered=False, reason=reason)
            case ChatOpened(chat, created, agent, last):
                frame = ChatOpenedOut(chat=chat_shape(chat, agent, last), created=created)
            case Pong():
                frame = PongOut()
            case Error(code, message, ref):
                frame = ErrorFrameOut(code=code, message=message, ref=ref)
            case _ as unreachable:
                assert_never(unreachable)
        return frame.model_dump_json(by_alias=True)
