"""Record builders for the store tests: valid records with every field overridable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from store import (
    ActedBy,
    Activity,
    ActivityKind,
    Chat,
    Message,
    Notification,
    Role,
    User,
    new_id,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def user(**fields: Any) -> User:
    user_id = new_id()
    defaults: dict[str, Any] = {
        "id": user_id,
        "email": f"{user_id}@example.com",
        "name": "Ada",
        "role": Role.USER,
        "created_at": T0,
        "updated_at": T0,
    }
    return User(**(defaults | fields))


def chat(**fields: Any) -> Chat:
    defaults: dict[str, Any] = {
        "id": new_id(),
        "customer_id": new_id(),
        "title": "Where is my parcel?",
        "created_at": T0,
        "updated_at": T0,
    }
    return Chat(**(defaults | fields))


def message(chat: Chat, seq: int, **fields: Any) -> Message:
    defaults: dict[str, Any] = {
        "id": new_id(),
        "chat_id": chat.id,
        "seq": seq,
        "client_msg_id": f"client-{seq}",
        "sender_id": chat.customer_id,
        "sender_role": Role.CUSTOMER,
        "content": f"message {seq}",
        "created_at": at(seq),
    }
    return Message(**(defaults | fields))


def notification(user_id: str, **fields: Any) -> Notification:
    defaults: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "kind": "chat.assigned",
        "title": "New chat",
        "body": "A chat was assigned to you",
        "created_at": T0,
    }
    return Notification(**(defaults | fields))


def activity(**fields: Any) -> Activity:
    defaults: dict[str, Any] = {
        "id": new_id(),
        "kind": ActivityKind.CHAT_STATUS,
        "actor": ActedBy.SYSTEM,
        "reason": "assigned",
        "at": T0,
    }
    return Activity(**(defaults | fields))
