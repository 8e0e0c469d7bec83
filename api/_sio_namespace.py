"""The default namespace: the original's events on the connection core, and the domain's events
rendered as the original's.

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

A little over 500 lines: one class, ChatSocket, a handler per original event and the rendering of
each domain event; both halves read the socket's rooms.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias, assert_never

import trio

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
    TypingEvent,
)
from api import _engineio as eio
from api._auth import Principal
from api._engineio import (
    RawJson,
    Written,
)
from api._errors import ASK_SECONDS
from api._schemas import WireModel
from api._services import Services
from api._shapes import chat_shape
from api._sio_events import (
    AckError,
    AuthenticatedOut,
    ErrorBody,
    FetchNotificationsIn,
    InvalidPayload,
    JoinChatIn,
    JoinedOut,
    NotificationPagination,
    NotificationRefIn,
    NotificationType,
    SendMessageIn,
    SioChat,
    SioCountOut,
    SioErrorOut,
    SioMessage,
    SioMessageOut,
    SioNotificationOut,
    SioTypingOut,
    UserNotificationsOut,
    UserRoomIn,
    claimed_user,
    named_chat,
    optional,
    parse,
)
from api._visibility import NOT_FOUND, may_see, not_found_message
from api._ws_core import (
    Ack,
    Close,
    Connection,
    Error,
    Peer,
    PostMessage,
    SetTyping,
)
from store import Chat, Message, Role, StoreUnavailable

log = logging.getLogger("api.socketio")

SEND_MESSAGE = "sendMessage"
TYPING = ("startTyping", "stopTyping")
# At most this many `sendMessage` events already waiting go to the core together (a
# conversation stores up to 64 sends in one write).
SEND_RUN = 64
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


# What the pump writes: Socket.IO packets made by the dispatcher, and the domain's events.
Outgoing: TypeAlias = eio.SioPacket | Event


@dataclass(frozen=True, slots=True)
class Ending:
    """The socket must end: the `error` event's code and message."""

    code: str
    message: str


# Enough for the messages written in one pass of the scheduler: with many chats busy, other
# messages' events come between a message's `messageDelivered` and its `messageReceived`.
MESSAGE_JSONS = 256
_message_jsons: dict[int, tuple[Message, RawJson]] = {}  # by id(message); trio's thread only


def message_json(message: Message) -> RawJson:
    """`{message}` as the original's events carry it. The sender's `messageDelivered` and the
    receiver's `messageReceived` carry the same stored message moments apart: the last
    `MESSAGE_JSONS` made are kept, each with its message (an id is never taken for another
    message's while it is here), so each is made once for both."""
    found = _message_jsons.get(id(message))
    if found is not None and found[0] is message:
        return found[1]
    made = RawJson(SioMessageOut(message=SioMessage.of(message)).model_dump_json(by_alias=True))
    if len(_message_jsons) >= MESSAGE_JSONS:
        del _message_jsons[next(iter(_message_jsons))]  # the oldest
    _message_jsons[id(message)] = (message, made)
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
        nursery: trio.Nursery,
    ) -> None:
        settings = found.settings
        self._nursery = nursery  # the session's: runs the receipts when some are due
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

    async def on_event(self, event: eio.EventPacket) -> Ending | None:
        try:
            match event.name:
                case "sendMessage":
                    return await self.on_sends([event])
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

    async def on_sends(self, events: Sequence[eio.EventPacket]) -> Ending | None:
        """Consecutive `sendMessage` events, answered in order; the valid ones between two
        invalid ones go to the core together, so a chat's are stored in one write."""
        run: list[tuple[eio.EventPacket, PostMessage]] = []
        for event in events:
            try:
                data = parse(SendMessageIn, event.args)
            except InvalidPayload as invalid:
                ending = await self._send_run(run)
                if ending is not None:
                    return ending
                run = []
                await self._refuse(event, "invalid_payload", f"{event.name}: {invalid}")
                continue
            key = data.client_msg_id or (
                f"sio:{self.sid}:{event.ack_id}"
                if event.ack_id is not None
                else f"sio:{self.sid}:n{next(self._unacked)}"
            )
            run.append((event, PostMessage(data.chat_id, key, data.message)))
        return await self._send_run(run)

    async def _send_run(self, run: Sequence[tuple[eio.EventPacket, PostMessage]]) -> Ending | None:
        if not run:
            return None
        for _, send in run:
            self._sending[send.client_msg_id] = None
        try:
            answers = await self.core.handle_sends([send for _, send in run])
        finally:
            # A client id repeated in the run is answered as a resend of the same message.
            fanned_out: dict[str, Message | None] = {}
            for _, send in run:
                if send.client_msg_id not in fanned_out:
                    fanned_out[send.client_msg_id] = self._sending.pop(send.client_msg_id)
        for (event, send), effects in zip(run, answers, strict=False):
            closing = any(isinstance(effect, Close) for effect in effects)
            for effect in effects:
                match effect:
                    case Ack(message_id=message_id):
                        # The message is said: the sender is not typing in the chat any more.
                        self._typing.discard(send.chat_id)
                        stored = fanned_out[send.client_msg_id] or await self._stored(message_id)
                        if stored is None:
                            await self._refuse(
                                event, "unavailable", "stored; reload the chat to see it"
                            )
                            continue
                        payload = message_json(stored)
                        await self._emit(eio.EventPacket("messageDelivered", (payload,)))
                        if event.ack_id is not None:
                            await self._emit(eio.AckPacket(event.ack_id, (payload,)))
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

    async def _join_chat(self, event: eio.EventPacket) -> None:
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

    async def _leave_chat(self, event: eio.EventPacket) -> None:
        """Out of the chat's room: its messages then come as `notification`s to the user room."""
        chat_id = named_chat(event.args)
        self.chats.discard(chat_id)
        await self._answer(event, JoinedOut(room=chat_id))

    async def _join_user_room(self, event: eio.EventPacket, claimed: str | None) -> bool:
        if claimed is not None and claimed not in self._own_ids:
            await self._refuse(
                event, "forbidden", "that is another user's room; join your own (your token's user)"
            )
            return False
        self.user_room = True
        await self._answer(event, JoinedOut(room=self.user_id))
        return True

    async def _set_typing(self, event: eio.EventPacket, *, on: bool) -> Ending | None:
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

    async def _fetch_notifications(self, event: eio.EventPacket) -> None:
        """The stored notifications, newest first, as the `userNotifications` event."""
        wanted = optional(FetchNotificationsIn, event.args)
        with trio.fail_after(ASK_SECONDS):
            items, total = await self._store.list_notifications(
                self.user_id, limit=wanted.limit, offset=wanted.offset
            )
            unread = await self._store.count_unread_notifications(self.user_id)
        page = UserNotificationsOut(
            notifications=[SioNotificationOut.stored(item) for item in items],
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

    async def _mark_notification_read(self, event: eio.EventPacket) -> None:
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
        await self._answer(event, SioCountOut(count=1))

    async def _mark_all_notifications_read(self, event: eio.EventPacket) -> None:
        """As `PUT /notification/read-all`."""
        with trio.fail_after(ASK_SECONDS):
            count = await self._store.mark_all_notifications_read(self.user_id)
        await self._answer(event, SioCountOut(count=count))

    async def _push(self, name: str, payload: WireModel) -> None:
        body = RawJson(payload.model_dump_json(by_alias=True))
        await self._emit(eio.EventPacket(name, (body,)))

    async def _answer(self, event: eio.EventPacket, payload: WireModel) -> None:
        if event.ack_id is not None:
            body = RawJson(payload.model_dump_json(by_alias=True))
            await self._emit(eio.AckPacket(event.ack_id, (body,)))

    async def _refuse(self, event: eio.EventPacket, code: str, message: str) -> None:
        """Through the ack when the client asked for one; else, for an event the original
        handled, as its `error` event; else only logged (the original ignored those events)."""
        if event.ack_id is not None:
            refusal = AckError(error=ErrorBody(code=code, message=message))
            await self._emit(eio.AckPacket(event.ack_id, (refusal.model_dump(by_alias=True),)))
        elif event.name in FAILED:
            error = SioErrorOut(message=FAILED[event.name], code=code, error=message)
            await self._emit(eio.EventPacket("error", (error.model_dump(by_alias=True),)))
        else:
            log.debug("socket.io %s: %s refused (%s): %s", self.sid, event.name, code, message)

    # --- server -> client ----------------------------------------------------------------------

    def _written(self, event: MessageAdded) -> None:
        if self.core.written(event):
            # Refused once the session has ended (a last poll takes what was buffered):
            # receipts are best effort, and the reader's next read covers these.
            with suppress(RuntimeError):
                self._nursery.start_soon(self.core.send_receipts)

    def intercept(self, event: Event) -> bool:
        """Keep the fan-out of this socket's own send for its ack instead of pushing it."""
        if isinstance(event, MessageAdded) and event.message.client_msg_id in self._sending:
            self._sending[event.message.client_msg_id] = event.message
            return True
        return False

    def render(self, event: Event) -> list[tuple[eio.SioPacket, Written | None]]:
        """A domain event as this socket's events, filtered by its rooms; reads nothing."""
        match event:
            case MessageAdded(message):
                if message.chat_id in self.chats:
                    received = eio.EventPacket("messageReceived", (message_json(message),))
                    packets: list[tuple[eio.SioPacket, Written | None]] = [
                        (received, partial(self._written, event))
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
            case ChatAssigned(chat, reason, agent, last):
                notice = self._assigned_notice(chat, reason)
                if not (self.user_room and chat.agent_id == self.user_id):
                    return notice
                # `chatCreated` for the agent's own room, from what the event carries.
                shape = SioChat.of(chat_shape(chat, agent, last))
                created = eio.EventPacket(
                    "chatCreated", (RawJson(shape.model_dump_json(by_alias=True)),)
                )
                return [(created, None), *notice]
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

    @staticmethod
    def _typing_packet(
        chat_id: str, user_id: str, *, on: bool
    ) -> tuple[eio.SioPacket, Written | None]:
        typing = SioTypingOut(chat_id=chat_id, user_id=user_id)
        name = "typingStarted" if on else "typingStopped"  # what the widget listens to
        return eio.EventPacket(name, (RawJson(typing.model_dump_json(by_alias=True)),)), None

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
        notice = SioNotificationOut.about(self.user_id, chat_id, kind, title, content)
        return eio.EventPacket(name, (RawJson(notice.model_dump_json(by_alias=True)),)), None
