"""Everything that crosses the wire, as pydantic models: camelCase outside, snake_case inside."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from store import AgentStatus, ChatStatus, Message, MessageStatus, Priority, Role, User

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("must be an email address like name@example.com")
    return value


Email = Annotated[str, AfterValidator(_email)]
Name = Annotated[str, Field(min_length=1, max_length=120)]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Phone = Annotated[str, Field(max_length=40)]
Url = Annotated[str, Field(max_length=2000)]


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
    name: Name | None = None
    phone: Phone | None = None
    avatar: Url | None = None


class UserOut(WireModel):
    id: str
    name: str
    email: str
    role: Role
    phone: str | None
    avatar: str | None
    status: AgentStatus | None
    max_load: int | None
    email_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        staff_agent = user.role is Role.AGENT
        return cls(
            id=user.id,
            name=user.name,
            email=user.email,
            role=user.role,
            phone=user.phone,
            avatar=user.avatar,
            status=user.status if staff_agent else None,
            max_load=user.max_load if staff_agent else None,
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
        return cls(
            id=message.id,
            chat_id=message.chat_id,
            seq=message.seq,
            sender_id=message.sender_id,
            receiver_id=message.receiver_id,
            content=message.content,
            status=message.status,
            sender_role=message.sender_role,
            created_at=message.created_at,
        )


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
