"""The Socket.IO events' payloads, as pydantic models: the original backend's event names and
camelCase shapes (a message is `ChatMessageOut`, with `content`), validated like every other
frame that crosses the wire.

Client -> server: `joinNotification [userId]`, `authenticate {userId}`, `joinChat {chatId,
userType}`, `sendMessage {chatId, message, clientMsgId?}`. Server -> client: `messageDelivered
{message}`, `messageReceived {message}`, `notification`, `chatCreated` (a chat), `chatNotified`
(a notification about a chat the socket joined), `authenticated {userId, role}`, `error
{message, code}`. An event's ack, when the client asks for one, is one object: the success
payload, or `{"error": {"code", "message"}}` (the REST error shape).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError

from api._frames import MAX_CONTENT_CHARS, ChatId, ClientMsgId
from api._schemas import ChatMessageOut, WireModel
from store import Role, new_id, utcnow

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
    """`authenticate {userId}`; `joinNotification` also accepts the bare id the original's
    dashboard sends (`socket.emit("joinNotification", agentId)`)."""

    user_id: UserId


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


def _fields(model: type[WireModel]) -> str:
    names = [field.alias or name for name, field in model.model_fields.items()]
    return "{" + ", ".join(names) + "}"


# --- server -> client ----------------------------------------------------------------------------


class MessageOut(WireModel):
    """`messageDelivered`, `messageReceived` and the ack of `sendMessage`."""

    message: ChatMessageOut


class Reference(WireModel):
    type: Literal["chat"] = "chat"
    id: str


class NotificationOut(WireModel):
    """The original's notification document: its dashboard reads `title`, `content`, `type`
    and `reference.id`. Pushed live; the stored ones are listed over REST."""

    id: str
    type: Literal["message", "chat_assignment", "status_change"]
    title: str
    content: str
    read: bool = False
    reference: Reference
    created_at: datetime

    @classmethod
    def about(
        cls,
        chat_id: str,
        kind: Literal["message", "chat_assignment", "status_change"],
        title: str,
        content: str,
    ) -> NotificationOut:
        return cls(
            id=new_id(),
            type=kind,
            title=title,
            content=content,
            reference=Reference(id=chat_id),
            created_at=utcnow(),
        )


class AuthenticatedOut(WireModel):
    user_id: str
    role: Role


class JoinedOut(WireModel):
    """The ack of `joinChat` and `joinNotification`: which room the socket is in now."""

    room: str


class ErrorOut(WireModel):
    """The `error` event: the original's `{message}`, plus a stable `code`."""

    message: str
    code: str


class ErrorBody(WireModel):
    code: str
    message: str


class AckError(WireModel):
    """An event's ack when it was refused: the REST error shape."""

    error: ErrorBody
