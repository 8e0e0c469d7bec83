"""The websocket connection core: what one client connection may do and what it answers, without
sockets and without JSON.

It follows hypercorn's ws_stream.py split: an edge reads frames off its transport, turns each
into a `Command` (or a `Malformed` when it could not), and calls `handle`, which talks to the
domain (`actors.System`) and returns the effects: replies for that client and, at most once, a
`Close`. The edge writes replies and pushed domain events (`actors.Event`) through the
connection's outbox and tells the core what it wrote (`written`), so delivery receipts follow
real deliveries. The /ws endpoint (api/_ws.py) is one edge; a Socket.IO edge can map its events
onto the same commands.

Rules kept here:
- every command kind has an explicit set of roles allowed to send it (`ALLOWED_ROLES`);
- a connection's frames, garbage included, pass a token bucket on the trio clock; over it, the
  client gets `rate_limited` and the connection closes with 1008;
- bad input and refusals become an `Error` and change nothing; the connection stays usable;
- every call into the domain is bounded by `ASK_SECONDS`.

A little over 500 lines: every command's rules behind one `handle`, so the roles and bounds of each
are read in one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, TypeAlias, assert_never

import trio

from actors import AgentCard, AgentStatusEvent, Event, MessageAdded, Speaker, System
from api._errors import ASK_SECONDS
from api._visibility import NOT_FOUND, NOT_YOURS, may_see, not_found_message
from router import Refused, RouterError
from store import (
    ActedBy,
    AgentStatus,
    Chat,
    Message,
    MessageStatus,
    Priority,
    Role,
    StoreUnavailable,
)
from telemetry import limit_hit, message_acknowledged, message_delivered

log = logging.getLogger("api.ws")

# Close codes the edge uses (RFC 6455 and our own 4401).
CLOSE_POLICY = 1008  # flood
CLOSE_TOO_BIG = 1009  # frame over the size limit
CLOSE_INTERNAL = 1011  # a bug on our side; the client reconnects and resumes
CLOSE_TRY_AGAIN = 1013  # slow reader, or the server cannot serve the connection right now
CLOSE_UNAUTHORIZED = 4401  # token expired, revoked (sign-out), account demoted or deleted

# A resume answers at most this many missed messages; a larger gap is reloaded over REST.
RESUME_MAX_MESSAGES = 500
# Delivery receipts wait this long to gather the messages written meanwhile into one store write
# per chat: a busy chat would otherwise pay a second write per message for a tick nobody can
# tell apart from one shown this much later.
RECEIPT_BATCH_SECONDS = 0.2

# --- what a client asks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostMessage:
    kind: ClassVar[str] = "message.send"
    chat_id: str
    client_msg_id: str
    content: str


@dataclass(frozen=True, slots=True)
class SetTyping:
    kind: ClassVar[str] = "typing"
    chat_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class MarkSeen:
    kind: ClassVar[str] = "read"
    chat_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class SetStatus:
    kind: ClassVar[str] = "status.set"
    status: AgentStatus


@dataclass(frozen=True, slots=True)
class Resume:
    kind: ClassVar[str] = "resume"
    chat_id: str
    after_seq: int


@dataclass(frozen=True, slots=True)
class StartChat:
    kind: ClassVar[str] = "chat.open"
    title: str
    description: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class Ping:
    kind: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True)
class FollowFloor:
    kind: ClassVar[str] = "floor.watch"
    on: bool


Command: TypeAlias = (
    PostMessage | SetTyping | MarkSeen | SetStatus | Resume | StartChat | Ping | FollowFloor
)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame the edge could not turn into a command; `ref` is what the client can match."""

    code: str
    message: str
    ref: str | None


Inbound: TypeAlias = Command | Malformed

_CHATTERS = frozenset({Role.CUSTOMER, Role.AGENT})
_EVERYONE = frozenset({Role.CUSTOMER, Role.AGENT, Role.ADMIN})

# Who may send what. Admins watch (resume, read); only participants write.
ALLOWED_ROLES: Mapping[type[Command], frozenset[Role]] = {
    PostMessage: _CHATTERS,
    SetTyping: _CHATTERS,
    MarkSeen: _EVERYONE,
    SetStatus: frozenset({Role.AGENT}),
    Resume: _EVERYONE,
    StartChat: frozenset({Role.CUSTOMER}),
    Ping: _EVERYONE,
    FollowFloor: frozenset({Role.ADMIN}),
}
# Who may open a connection at all: a plain `user` has nothing to do on it.
CONNECT_ROLES = _EVERYONE

# --- what it answers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """The message is durable (sent only after the store confirmed it)."""

    client_msg_id: str
    chat_id: str
    seq: int
    message_id: str


@dataclass(frozen=True, slots=True)
class Resumed:
    """Every message after the client's seq was sent before this, in order."""

    chat_id: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class NotRecovered:
    """Resume cannot be answered from here; the client reloads the chat over REST."""

    chat_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChatOpened:
    chat: Chat
    created: bool
    agent: AgentCard | None
    last_message: Message | None


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Error:
    code: str
    message: str
    ref: str | None


FrameReply: TypeAlias = Ack | Resumed | NotRecovered | ChatOpened | Pong | Error
# Everything that goes out through a connection's outbox: replies and pushed domain events.
Outbound: TypeAlias = FrameReply | Event


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


EdgeEffect: TypeAlias = FrameReply | AgentStatusEvent | MessageAdded | Close


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as authenticated before the connection was accepted, and the
    id of the connection's `Session` (what the floor feed addresses its updates to)."""

    user_id: str
    role: Role
    session_id: str


class TokenBucket:
    """`rate` frames a second on average, `burst` at once, on whatever clock `now` comes from."""

    # Slotted, as every per-connection object: no dict for each of ten thousand connections.
    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Connection:
    """One client connection's rules; the edge owns the transport and the outbox."""

    __slots__ = (
        "_asking",
        "_bucket",
        "_chats",
        "_clock",
        "_delivered",
        "_edge",
        "_sending_receipts",
        "_speaker",
        "_stopped",
        "_system",
        "peer",
    )

    def __init__(
        self,
        system: System,
        peer: Peer,
        chats: Callable[[str], Awaitable[Chat | None]],
        *,
        frames_per_second: float,
        burst: int,
        clock: Callable[[], float] = trio.current_time,
        edge: str = "ws",
    ) -> None:
        self.peer = peer
        self._edge = edge  # for the metrics: "ws" or "socketio"
        self._system = system
        self._chats = chats  # the store's chat by id
        self._speaker = Speaker(peer.user_id, peer.role)
        self._clock = clock
        self._bucket = TokenBucket(frames_per_second, burst, clock())
        # Delivery receipts to send: chat -> highest seq written to this client. Coalesced, so a
        # burst of messages costs one receipt per chat, sent by `send_receipts`.
        self._delivered: dict[str, int] = {}
        self._sending_receipts = False  # a `send_receipts` is under way
        # The bound of the frame being answered: `stop` cancels it. The edge's frame needs no
        # scope of its own for that (a trio cancel scope is about thirty calls: 5 to 6 µs to
        # enter and leave, README, Performance).
        self._asking: trio.CancelScope | None = None
        self._stopped = False

    def stop(self) -> None:
        """The connection is ending: the frame being answered is cancelled, and any later one
        starts cancelled. Each is answered as too slow, to nobody."""
        self._stopped = True
        if self._asking is not None:
            self._asking.cancel()

    def _bound(self) -> trio.CancelScope:
        """The scope a frame's asks run in: the ask deadline, cancelled by `stop`."""
        scope = trio.CancelScope(deadline=trio.current_time() + ASK_SECONDS)
        if self._stopped:
            scope.cancel()
        return scope

    # --- frames --------------------------------------------------------------------------------

    async def handle(self, inbound: Inbound) -> list[EdgeEffect]:
        """Answer one frame. Never raises for anything a client can send."""
        refused = self._admit(inbound)
        if refused is not None:
            return refused
        assert not isinstance(inbound, Malformed)
        if isinstance(inbound, PostMessage):
            # Most frames: `_send_run` bounds its ask and answers its failures itself, so a send
            # enters one cancel scope, not two (a scope is about thirty calls).
            return (await self._send_run([inbound]))[0]
        try:
            # A bare scope, not `fail_after` (a generator around one): this runs for every frame.
            with self._bound() as self._asking:
                return await self._perform(inbound)
        except Exception as error:
            return [_failure(inbound, error)]
        finally:
            self._asking = None
        return [_failure(inbound, trio.TooSlowError())]  # the deadline or `stop` cancelled it

    async def handle_sends(self, sends: Sequence[PostMessage]) -> list[list[EdgeEffect]]:
        """`handle` for each of a connection's consecutive sends, answered in order (up to a
        `Close`, which ends the list). Consecutive sends to one chat are asked of its
        conversation together, so they are stored in one write."""
        answers: list[list[EdgeEffect] | None] = []
        for send in sends:
            refused = self._admit(send)
            answers.append(refused)
            if refused is not None and any(isinstance(effect, Close) for effect in refused):
                break
        start = 0
        while start < len(answers):
            if answers[start] is not None:
                start += 1
                continue
            end = start + 1
            chat_id = sends[start].chat_id
            while end < len(answers) and answers[end] is None and sends[end].chat_id == chat_id:
                end += 1
            answers[start:end] = await self._send_run(sends[start:end])
            start = end
        return [answer for answer in answers if answer is not None]

    def _admit(self, inbound: Inbound) -> list[EdgeEffect] | None:
        """The answer to a frame refused before it reaches the domain (flood, malformed, a
        command not for the peer's role); None to go ahead."""
        if not self._bucket.take(self._clock()):
            limit_hit("frame_rate", edge=self._edge, principal=self.peer.user_id)
            return [
                Error("rate_limited", "too many frames; slow down and reconnect", _ref(inbound)),
                Close(CLOSE_POLICY, "too many frames"),
            ]
        if isinstance(inbound, Malformed):
            return [Error(inbound.code, inbound.message, inbound.ref)]
        allowed = ALLOWED_ROLES[type(inbound)]
        if self.peer.role not in allowed:
            return [
                Error(
                    "forbidden",
                    f"{inbound.kind} is for {', '.join(sorted(allowed))}; "
                    f"you are connected as {self.peer.role}",
                    _ref(inbound),
                )
            ]
        return None

    async def _send_run(self, run: Sequence[PostMessage]) -> list[list[EdgeEffect]]:
        """Admitted sends to one chat, asked together; each one's answer, in order."""
        arrived = time.perf_counter()
        chat_id = run[0].chat_id
        try:
            with self._bound() as self._asking:
                await self._check_visible(chat_id)
                outcomes = await self._system.send_messages(
                    chat_id, self._speaker, [(send.client_msg_id, send.content) for send in run]
                )
            if self._asking.cancelled_caught:
                raise trio.TooSlowError
        except Exception as error:
            return [[_failure(send, error)] for send in run]
        finally:
            self._asking = None
        answers: list[list[EdgeEffect]] = []
        for send, outcome in zip(run, outcomes, strict=True):
            if isinstance(outcome, Exception):
                answers.append([_failure(send, outcome)])
                continue
            message_acknowledged(self._edge, time.perf_counter() - arrived)
            message = outcome.message
            answers.append([Ack(send.client_msg_id, chat_id, message.seq, message.id)])
        return answers

    async def _perform(self, command: Command) -> list[EdgeEffect]:
        system, me = self._system, self._speaker
        match command:
            case PostMessage():
                return (await self._send_run([command]))[0]
            case SetTyping(chat_id, on):
                await self._check_visible(chat_id)
                route = system.route(chat_id)
                if route is None:
                    raise Refused("chat_not_active", f"chat {chat_id} is unknown or resolved")
                if not route.participant(me.user_id):
                    raise Refused("not_a_participant", f"you are not taking part in chat {chat_id}")
                await system.typing(chat_id, me, on=on)
                return []
            case MarkSeen(chat_id, seq):
                await self._check_visible(chat_id)
                await system.mark_read(chat_id, me, seq=seq, status=MessageStatus.SEEN)
                return []
            case SetStatus(status):
                view = await system.set_agent_status(
                    me.user_id, status, by=ActedBy.SELF, actor_id=me.user_id
                )
                return [AgentStatusEvent(me.user_id, view.status, "status.set")]
            case Resume(chat_id, after_seq):
                return await self._resume(chat_id, after_seq)
            case StartChat(title, description, priority):
                opened = await system.open_chat(
                    me.user_id, title=title, description=description, priority=priority
                )
                return [ChatOpened(opened.chat, opened.created, opened.agent, opened.last_message)]
            case Ping():
                return [Pong()]
            case FollowFloor(on):
                if on:
                    await system.watch_floor(self.peer.user_id, self.peer.session_id)
                else:
                    await system.unwatch_floor(self.peer.session_id)
                return []
            case _ as unreachable:
                assert_never(unreachable)

    async def _check_visible(self, chat_id: str) -> None:
        """Refuses a chat the peer may not see exactly like one that does not exist. A chat the
        peer takes part in now is known without I/O; any other costs one store read, whether it
        exists or not, and never wakes its conversation."""
        route = self._system.route(chat_id)
        if route is not None and route.participant(self.peer.user_id):
            return
        chat = await self._chats(chat_id)
        if chat is None or not may_see(self.peer.user_id, self.peer.role, chat):
            raise Refused(NOT_FOUND, not_found_message(chat_id))

    async def _resume(self, chat_id: str, after_seq: int) -> list[EdgeEffect]:
        try:
            await self._check_visible(chat_id)
            history = await self._system.history(
                chat_id, self._speaker, after_seq=after_seq, limit=RESUME_MAX_MESSAGES
            )
        except Refused as refusal:
            if refusal.code == NOT_FOUND or refusal.code in NOT_YOURS:
                return [NotRecovered(chat_id, NOT_FOUND)]
            raise
        if not history.complete:
            return [NotRecovered(chat_id, "gap_too_large")]
        effects: list[EdgeEffect] = [MessageAdded(message) for message in history.messages]
        effects.append(Resumed(chat_id, history.last_seq))
        return effects

    # --- delivery receipts ---------------------------------------------------------------------

    def written(self, item: Outbound) -> bool:
        """The edge wrote `item` to the client: a message from the other side is delivered.
        True when this made receipts due and no `send_receipts` is under way: the edge starts
        one (an idle connection keeps no task for its receipts)."""
        if not isinstance(item, MessageAdded) or self.peer.role not in _CHATTERS:
            return False
        message = item.message
        if message.sender_id == self.peer.user_id or message.status != MessageStatus.SENT:
            return False
        message_delivered(self._edge, (datetime.now(UTC) - message.created_at).total_seconds())
        if message.seq <= self._delivered.get(message.chat_id, 0):
            return False
        self._delivered[message.chat_id] = message.seq
        if self._sending_receipts:
            return False
        self._sending_receipts = True
        return True

    async def send_receipts(self) -> None:
        """Mark what was written as delivered, chat by chat, after `RECEIPT_BATCH_SECONDS`,
        until nothing more is due.

        Best effort, off the write path: a receipt that cannot be recorded now (chat resolved,
        component restarting) is dropped; the next `read` or delivery covers it."""
        try:
            while self._delivered:
                await trio.sleep(RECEIPT_BATCH_SECONDS)
                due, self._delivered = self._delivered, {}
                for chat_id, seq in due.items():
                    try:
                        with trio.fail_after(ASK_SECONDS):
                            await self._system.mark_read(
                                chat_id, self._speaker, seq=seq, status=MessageStatus.DELIVERED
                            )
                    except (RouterError, StoreUnavailable, trio.TooSlowError) as error:
                        log.info(
                            "delivery receipt for %s up to %d dropped: %s", chat_id, seq, error
                        )
        finally:
            self._sending_receipts = False


def _failure(inbound: Command, error: Exception) -> Error:
    """What a client is told when the domain could not answer its frame."""
    match error:
        case Refused():
            return _refusal(inbound, error)
        case RouterError():
            log.warning("actor unavailable for %s: %s", inbound.kind, error)
            return Error("unavailable", "a component is restarting; retry", _ref(inbound))
        case StoreUnavailable():
            log.warning("store unavailable for %s: %s", inbound.kind, error)
            return Error(
                "store_unavailable", "the database cannot be reached; retry shortly", _ref(inbound)
            )
        case trio.TooSlowError():
            return Error("overloaded", "the service is too busy to answer; retry", _ref(inbound))
        case _:
            log.error("unexpected error handling %s", inbound.kind, exc_info=error)
            return Error(
                "internal", "an internal error occurred; it has been logged", _ref(inbound)
            )


def _refusal(inbound: Inbound, refusal: Refused) -> Error:
    """The domain's refusal as an error frame; one that says the chat is not the peer's (it
    changed hands since the check) or gone reads as a chat that never was."""
    match inbound:
        case (
            PostMessage(chat_id=chat_id)
            | SetTyping(chat_id=chat_id)
            | MarkSeen(chat_id=chat_id)
            | Resume(chat_id=chat_id)
        ) if refusal.code == NOT_FOUND or refusal.code in NOT_YOURS:
            return Error(NOT_FOUND, not_found_message(chat_id), _ref(inbound))
        case _:
            return Error(refusal.code, refusal.message, _ref(inbound))


def _ref(inbound: Inbound) -> str | None:
    """What the client can match an error with: its message id, else the frame's type."""
    match inbound:
        case PostMessage(client_msg_id=client_msg_id):
            return client_msg_id
        case Malformed(ref=ref):
            return ref
        case _:
            return inbound.kind
