"""Small rules every backend applies the same way, kept in one place so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from itertools import pairwise
from typing import Protocol

from store._protocol import ChatFilter, Fenced, StoreError
from store._records import (
    Activity,
    Chat,
    Mail,
    Message,
    MessageStatus,
    Notification,
    Role,
    User,
)


class HasId(Protocol):
    """Every stored record: lists are ordered and paged by this id."""

    @property
    def id(self) -> str: ...


ROUTING_USER_FIELDS = ("role", "status", "max_load")
"""What `update_user` leaves as stored: only the assignment actor writes these (`record_routing`),
so a profile edit racing an assignment decision (an approval or demotion too) cannot undo it."""

CREDENTIAL_USER_FIELDS = ("password_hash", "token_generation", "kept_token_id")
"""What `update_user` leaves as stored too: only `set_password` writes these, so a profile edit
made from a copy read before a password change cannot bring the old password back."""

KEPT_USER_FIELDS = ROUTING_USER_FIELDS + CREDENTIAL_USER_FIELDS

ANY_CHAT = ChatFilter()
"""The default chat filter: every chat matches."""

_MESSAGE_STATUS_RANK = {MessageStatus.SENT: 0, MessageStatus.DELIVERED: 1, MessageStatus.SEEN: 2}


def customer_key(customer: User) -> str:
    """The shop id `find_or_create_customer` finds a customer by; refuses a record that is not a
    customer's or has none."""
    if customer.role != Role.CUSTOMER or not customer.external_id:
        raise ValueError("find_or_create_customer takes a customer record with its shop id")
    return customer.external_id


def customer_exists(customer: User) -> StoreError:
    return StoreError(f"a customer with shop id {customer.external_id!r} exists already")


def normalise_email(email: str) -> str:
    """Emails are unique regardless of case, so they are stored lower-cased."""
    return email.lower()


def statuses_below(status: MessageStatus) -> frozenset[MessageStatus]:
    """The message statuses that `status` may replace (sent < delivered < seen)."""
    rank = _MESSAGE_STATUS_RANK[status]
    return frozenset(s for s, r in _MESSAGE_STATUS_RANK.items() if r < rank)


def check_page(limit: int, offset: int = 0) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")


def check_aware(value: datetime | None) -> None:
    # A naive datetime has no single meaning as an instant; refusing it beats guessing local time.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"datetimes given to the store must be timezone-aware, got {value!r}")


def check_record_times(record: User | Chat | Message | Notification | Activity | Mail) -> None:
    for field in fields(record):
        value = getattr(record, field.name)
        if isinstance(value, datetime):
            check_aware(value)


def check_run(messages: Sequence[Message]) -> None:
    """What `append_messages` takes: messages of one chat, in ascending seq."""
    for before, after in pairwise(messages):
        if after.chat_id != before.chat_id:
            raise ValueError(
                f"append_messages takes one chat's messages, got {before.chat_id} and "
                f"{after.chat_id}"
            )
        if after.seq <= before.seq:
            raise ValueError(
                f"append_messages takes messages in ascending seq, got {after.seq} after "
                f"{before.seq}"
            )
    for message in messages:
        check_record_times(message)


def unread_added(messages: Sequence[Message]) -> tuple[int, int]:
    """How much a run of messages adds to the chat's (agent, customer) unread counts: a
    customer's message is unread for the agent, anyone else's for the customer."""
    from_customer = sum(message.sender_role == Role.CUSTOMER for message in messages)
    return from_customer, len(messages) - from_customer


def check_fence(fence: int | None, current: int) -> None:
    """Refuse a fenced routing decision whose token is not the latest claim's."""
    if fence is not None and fence != current:
        raise Fenced(
            f"routing token {fence} was replaced by {current}: another node arbitrates now"
        )
