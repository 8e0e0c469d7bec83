"""The wire's shared base (`WireModel`: camelCase outside, snake_case inside) and the shapes of
auth, profiles, users, chats and messages, as pydantic models.

The other shapes live beside their concern, on the same base: `_payloads.py` (the bodies
and queries of the chat, message, notification, dashboard, user and admin routes),
`_account_schemas.py` (accounts by email), `_frames.py` (/ws frames), `_sio_events.py`
(Socket.IO events) and `_pages.py` (the paging query).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from store import AgentStatus, ChatStatus, Message, MessageStatus, Priority, Role, User

# ASCII only: a character class means the same to every regex engine (Python's, the Rust one
# pydantic uses, and the ECMA one JSON Schema names), where `\s` and friends differ.
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}$"
_EMAIL = re.compile(EMAIL_PATTERN)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address like name@example.com")
    return value.lower()


def refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("cannot be null; leave the field out to keep its value")
    return value


# The schema states the pattern, so that clients (and schemathesis) know what is accepted; it is
# checked here with Python's regex, which is how their generators read it, and a plain message.
Email = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN}),
    AfterValidator(_email),
]
Name = Annotated[str, Field(min_length=1, max_length=120)]
# A name to change: may be left out (None here), never sent as null.
NameChange = Annotated[Name | SkipJsonSchema[None], AfterValidator(refuse_null)]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Phone = Annotated[str, Field(max_length=40)]
Url = Annotated[str, Field(max_length=2000)]
# A sender's key for one message, the same on every path (REST's clientMsgId and Idempotency-Key,
# the /ws frame's and Socket.IO's clientMsgId): printable ASCII, so it fits in a header.
ClientMsgId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")]


class WireModel(BaseModel):
    """camelCase on the wire; unknown fields refused so typos do not pass silently."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RegisterBody(WireModel):
    name: Name
    email: Email
    password: Password
    confirmed_password: str

    @model_validator(mode="after")
    def _passwords_match(self) -> RegisterBody:
        if self.password != self.confirmed_password:
            raise ValueError("password and confirmedPassword differ")
        return self


class LoginBody(WireModel):
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=256)]


class ProfileUpdate(WireModel):
    """Fields left out stay as they are; phone and avatar are cleared with null."""

    name: NameChange = None
    phone: Phone | None = None
    avatar: Url | None = None


class UserOut(WireModel):
    """An account. `image` is `avatar` again, under the original's name; `status` is an agent's
    availability (users and admins, who take no chats, show away, as the original's did)."""

    id: str
    name: str
    email: str
    role: Role
    phone: str | None
    avatar: str | None
    image: str | None
    status: AgentStatus | None
    max_load: int | None
    email_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        agent = user.role is Role.AGENT
        status = user.status if agent else None if user.role is Role.CUSTOMER else AgentStatus.AWAY
        return cls(
            id=user.id,
            name=user.name,
            email=user.email,
            role=user.role,
            phone=user.phone,
            avatar=user.avatar,
            image=user.avatar,
            status=status,
            max_load=user.max_load if agent else None,
            email_verified_at=user.email_verified_at,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class AuthOut(WireModel):
    user: UserOut
    token: str


class MessageOut(WireModel):
    message: str


class CustomerTokenBody(WireModel):
    customer_id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Name | None = None


class TokenOut(WireModel):
    token: str


class ChatMessageOut(WireModel):
    """A chat message as the original backend sent it, plus its per-chat `seq`."""

    id: str
    chat_id: str
    seq: int
    sender_id: str
    receiver_id: str | None
    content: str
    status: MessageStatus
    sender_role: Role
    created_at: datetime

    @classmethod
    def of(cls, message: Message) -> ChatMessageOut:
        return cls(**cls.fields(message))

    @staticmethod
    def fields(message: Message) -> dict[str, Any]:
        """The fields of `message`'s shape, for a subclass that adds its own."""
        return {
            "id": message.id,
            "chat_id": message.chat_id,
            "seq": message.seq,
            "sender_id": message.sender_id,
            "receiver_id": message.receiver_id,
            "content": message.content,
            "status": message.status,
            "sender_role": message.sender_role,
            "created_at": message.created_at,
        }


class AgentRef(WireModel):
    """A chat's agent as the original embedded it: `{"_id", "name", "email"}`."""

    id: str = Field(alias="_id")
    name: str
    email: str


class ChatOut(WireModel):
    """A chat in the original backend's shape: `customer` is the customer's id, `agent` the
    embedded agent or null, `lastMessage` the latest message or null."""

    id: str
    title: str
    description: str
    status: ChatStatus
    priority: Priority
    customer_unread_count: int
    agent_unread_count: int
    created_at: datetime
    updated_at: datetime
    last_seq: int
    last_message: ChatMessageOut | None
    customer: str
    agent: AgentRef | None
