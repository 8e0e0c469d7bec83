"""The Socket.IO events' payloads, as pydantic models: the original backend's event names and
camelCase shapes (a message is `ChatMessageOut`, with `content`), validated like every other
frame that crosses the wire.

Client -> server, the original's: `joinNotification [userId]`, `authenticate {userId}`,
`joinChat {chatId, userType}`, `sendMessage {chatId, message, clientMsgId?}`; and what its
front ends also emit, which it ignored and which mean something here: `joinRoom [userId]` (as
joinNotification), `leaveChat {chatId}`, `startTyping`/`stopTyping [chatId]`,
`fetchNotifications`, `markNotificationRead {notificationId}`, `markAllNotificationsRead`.
Server -> client: `messageDelivered {message}`, `messageReceived {message}`, `notification`,
`chatCreated` (a chat), `chatNotified` (a notification about a chat the socket joined),
`authenticated {userId, role}`, `userNotifications`, `typingStarted`/`typingStopped`, `error
{message, code, error?}`. The original emitted raw documents, read by `_id`: every message,
chat and notification carries `_id` beside `id`. An event's ack, when the client asks for one,
is one object: the success payload, or `{"error": {"code", "message"}}` (the REST error shape).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError

from api._frames import MAX_CONTENT_CHARS, ChatId
from api._pages import Limit
from api._paths import ID_PATTERN
from api._schemas import ChatMessageOut, ChatOut, ClientMsgId, WireModel
from store import Message, Notification, Role, new_id, utcnow

# --- client -> server ----------------------------------------------------------------------------

UserId = Annotated[str, Field(min_length=1, max_length=64)]


class JoinChatIn(WireModel):
    chat_id: ChatId
    # The original trusted this; here it must match the token's role when given.
    user_type: Literal["agent", "customer"] | None = None


class SendMessageIn(WireModel):
    chat_id: ChatId
    message: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]
    # Optional: a client that resends after a reconnect passes the same id to store it once.
    client_msg_id: ClientMsgId | None = None


class UserRoomIn(WireModel):
    """`authenticate {userId}`; `joinNotification` and `joinRoom` also accept the bare id the
    original's dashboard sends (`socket.emit("joinNotification", agentId)`)."""

    user_id: UserId


class ChatRefIn(WireModel):
    """`leaveChat {chatId}`; `startTyping` and `stopTyping` also accept the bare id the
    original's widget sends (`socket.emit("startTyping", chatId)`)."""

    chat_id: ChatId


class NotificationRefIn(WireModel):
    notification_id: Annotated[str, Field(pattern=ID_PATTERN)]


class FetchNotificationsIn(WireModel):
    limit: Limit = 20
    offset: Annotated[int, Field(ge=0, le=10**9)] = 0


M = TypeVar("M", bound=WireModel)


class InvalidPayload(Exception):
    """An event's arguments do not match its schema; the message lists what is wrong."""


def parse(model: type[M], args: tuple[Any, ...]) -> M:
    """An event's first argument as `model`."""
    if not args:
        raise InvalidPayload(f"missing the payload object {_fields(model)}")
    try:
        return model.model_validate(args[0])
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        raise InvalidPayload(
            "; ".join(
                f"{'.'.join(str(part) for part in problem['loc']) or 'payload'}: {problem['msg']}"
                for problem in problems
            )
        ) from error


def claimed_user(args: tuple[Any, ...]) -> str | None:
    """The user id a room event names: none, a bare string, or `{userId}`."""
    if not args or args[0] is None:
        return None
    if isinstance(args[0], str):
        return parse(UserRoomIn, ({"userId": args[0]},)).user_id
    return parse(UserRoomIn, args).user_id


def named_chat(args: tuple[Any, ...]) -> str:
    """The chat id an event names: a bare string or `{chatId}`."""
    if args and isinstance(args[0], str):
        return parse(ChatRefIn, ({"chatId": args[0]},)).chat_id
    return parse(ChatRefIn, args).chat_id


def optional(model: type[M], args: tuple[Any, ...]) -> M:
    """An event's optional payload object: its defaults when there is none."""
    if not args or args[0] is None:
        return model()
    return parse(model, args)


def _fields(model: type[WireModel]) -> str:
    names = [field.alias or name for name, field in model.model_fields.items()]
    return "{" + ", ".join(names) + "}"


# --- server -> client ----------------------------------------------------------------------------


class SioMessage(ChatMessageOut):
    """A message as REST answers it, with the original's `_id` beside `id`."""

    doc_id: str = Field(alias="_id")

    @classmethod
    def of(cls, message: Message) -> SioMessage:
        # Validated once: building the REST shape first and copying it cost two.
        return cls(**ChatMessageOut.fields(message), doc_id=message.id)


class SioMessageOut(WireModel):
    """`messageDelivered`, `messageReceived` and the ack of `sendMessage`."""

    message: SioMessage


class SioChat(ChatOut):
    """`chatCreated`: a chat as REST answers it, with the original's `_id` beside `id`."""

    doc_id: str = Field(alias="_id")

    @classmethod
    def of(cls, chat: ChatOut) -> SioChat:
        return cls(**dict(chat), doc_id=chat.id)


NotificationType = Literal["message", "chat_assignment", "status_change"]


class Reference(WireModel):
    """What a notification is about: always a chat here, so a click opens it. (`model` is the
    original's name for the kind of record; `type` says the same.)"""

    model: Literal["Chat"] = "Chat"
    type: Literal["chat"] = "chat"
    id: str


class SioNotificationOut(WireModel):
    """The original's notification document: its front ends read `_id`, `title`, `content`,
    `type`, `read`, `createdAt` and `reference.id`. Pushed live (`notification`,
    `chatNotified`), and listed from the store (`userNotifications`)."""

    doc_id: str = Field(alias="_id")
    id: str
    user_id: str
    type: NotificationType
    title: str
    content: str
    read: bool = False
    reference: Reference
    created_at: datetime

    @classmethod
    def about(
        cls, user_id: str, chat_id: str, kind: NotificationType, title: str, content: str
    ) -> SioNotificationOut:
        made = new_id()
        return cls(
            doc_id=made,
            id=made,
            user_id=user_id,
            type=kind,
            title=title,
            content=content,
            reference=Reference(id=chat_id),
            created_at=utcnow(),
        )

    @classmethod
    def stored(cls, notification: Notification) -> SioNotificationOut:
        return cls(
            doc_id=notification.id,
            id=notification.id,
            user_id=notification.user_id,
            # The only stored kind: a message that found its reader offline.
            type="message",
            title=notification.title,
            content=notification.body,
            read=notification.read,
            reference=Reference(id=notification.chat_id or ""),
            created_at=notification.created_at,
        )


class NotificationPagination(WireModel):
    total: int
    limit: int
    offset: int
    has_more: bool


class UserNotificationsOut(WireModel):
    """`userNotifications`, the answer to `fetchNotifications`: the stored ones, newest first."""

    notifications: list[SioNotificationOut]
    pagination: NotificationPagination
    unread_count: int


class SioCountOut(WireModel):
    """The ack of `markAllNotificationsRead`: how many were marked."""

    count: int


class SioTypingOut(WireModel):
    """`typingStarted` / `typingStopped`: the other participant of a chat the socket joined."""

    chat_id: str
    user_id: str


class AuthenticatedOut(WireModel):
    user_id: str
    role: Role


class JoinedOut(WireModel):
    """The ack of `joinChat`, `joinNotification`, `joinRoom` and `authenticate`: which room the
    socket is in now; of `leaveChat`, which room it left."""

    room: str


class SioErrorOut(WireModel):
    """The `error` event: the original's `{message}` (for a refused event, its summary, e.g.
    "Failed to join chat", with the reason in `error` as its `sendMessage` had it), plus a
    stable `code`."""

    message: str
    code: str
    error: str | None = None


class ErrorBody(WireModel):
    code: str
    message: str


class AckError(WireModel):
    """An event's ack when it was refused: the REST error shape."""

    error: ErrorBody
