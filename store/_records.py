"""The records the store keeps: frozen, slotted, plain data. No behaviour beyond small helpers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Role(StrEnum):
    USER = "user"
    AGENT = "agent"
    ADMIN = "admin"
    CUSTOMER = "customer"


class AgentStatus(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"


class ChatStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class MessageStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    SEEN = "seen"


class ActivityKind(StrEnum):
    AGENT_STATUS = "agent_status"
    CHAT_STATUS = "chat_status"
    ASSIGNMENT = "assignment"


class ActedBy(StrEnum):
    """Who caused an activity-log entry."""

    SELF = "self"
    SYSTEM = "system"
    ADMIN = "admin"


ACTIVE_CHAT_STATUSES = frozenset({ChatStatus.NEW, ChatStatus.OPEN, ChatStatus.PENDING})


def utcnow() -> datetime:
    return datetime.now(UTC)


_process_random = os.urandom(4)
_id_lock = threading.Lock()
_last_micros = 0


def new_id() -> str:
    """A 24-hex id: 8 bytes of microseconds (strictly increasing in a process), 4 random bytes.

    Ids made later in one process sort after earlier ones, which gives every list a stable order
    and a cheap cursor; across processes they sort by creation time to the microsecond.
    """
    global _last_micros
    with _id_lock:
        _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
        micros = _last_micros
    return (micros.to_bytes(8, "big") + _process_random).hex()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    role: Role
    password_hash: str | None = None
    phone: str | None = None
    avatar: str | None = None
    status: AgentStatus = AgentStatus.AWAY
    max_load: int = 3
    external_id: str | None = None  # customers: the shop's own customer id
    email_verified_at: datetime | None = None
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    updated_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    # Tokens carry the generation they were issued in; `set_password` moves it on, which
    # revokes every token issued before but `kept_token_id` (the token that changed the
    # password, whose holder stays signed in; None after a reset).
    token_generation: int = 0
    kept_token_id: str | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    customer_id: str
    title: str
    description: str = ""
    status: ChatStatus = ChatStatus.NEW
    priority: Priority = Priority.MEDIUM
    agent_id: str | None = None
    customer_unread_count: int = 0
    agent_unread_count: int = 0
    last_message_id: str | None = None
    last_seq: int = 0
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    updated_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    queued_at: datetime | None = None  # when it last started waiting for an agent
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    chat_id: str
    seq: int
    client_msg_id: str
    sender_id: str
    sender_role: Role
    content: str
    receiver_id: str | None = None
    status: MessageStatus = MessageStatus.SENT
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    user_id: str
    kind: str
    title: str
    body: str
    chat_id: str | None = None
    read: bool = False
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Activity:
    """One append-only activity-log entry.

    agent_status: agent_id, from_value -> to_value. chat_status: chat_id, from_value -> to_value.
    assignment: chat_id, from_value (previous agent or None) -> to_value (new agent or None).
    """

    id: str
    kind: ActivityKind
    actor: ActedBy
    reason: str
    at: datetime
    agent_id: str | None = None
    chat_id: str | None = None
    from_value: str | None = None
    to_value: str | None = None
    actor_id: str | None = None


# accounts by email: one-time codes and the mail outbox


class CodePurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


@dataclass(frozen=True, slots=True)
class OneTimeCode:
    """A user's live code for one purpose, as stored: its digest only, never the code."""

    user_id: str
    purpose: CodePurpose
    digest: str
    expires_at: datetime
    wrong_tries: int = 0


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail in the outbox, kept until the SMTP server accepted it (then `sent_at`)."""

    id: str
    recipient: str
    subject: str
    text: str
    html: str
    reply_to: str | None = None
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    attempts: int = 0
    next_attempt_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    sent_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


async def pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[list[T]]:
    """Every page of a cursor-paged list: `fetch(cursor)` is one list call (None first)."""
    cursor = None
    while True:
        page = await fetch(cursor)
        yield page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
