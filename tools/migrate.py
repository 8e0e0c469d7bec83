"""`switchboard migrate`: copy every record from one store into another (SQLite <-> MongoDB).

Idempotent: records already in the target (by id) are skipped, so a second run copies nothing
and an interrupted one can be finished by running it again.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from store import (
    ActivityFilter,
    DuplicateEmail,
    Message,
    MigrationTarget,
    Notification,
    Store,
    User,
    open_store,
    pages,
)
from tools._errors import sole_error

T = TypeVar("T")

MIGRATE_PAGE = 200
"""Records read per call while migrating."""


@dataclass(slots=True)
class _Tally:
    """Records of one kind a migration copied, and those the target had already."""

    copied: int = 0
    existing: int = 0

    def line(self, kind: str) -> str:
        return f"{kind}: {self.copied} copied, {self.existing} already there"


async def _messages_of(store: Store, chat_id: str) -> AsyncIterator[list[Message]]:
    after = 0
    while batch := await store.list_messages(chat_id, after_seq=after, limit=MIGRATE_PAGE):
        yield batch
        after = batch[-1].seq


async def _notifications_of(store: Store, user_id: str) -> AsyncIterator[list[Notification]]:
    offset = 0
    while True:
        batch, _ = await store.list_notifications(user_id, limit=MIGRATE_PAGE, offset=offset)
        if not batch:
            return
        yield batch
        offset += len(batch)


def _all_users(store: Store) -> AsyncIterator[list[User]]:
    return pages(lambda cursor: store.list_users(limit=MIGRATE_PAGE, cursor=cursor))


async def _copy_users(source: Store, target: Store) -> tuple[_Tally, list[User]]:
    """Copy the users the target lacks, except those whose email another user of the target
    has: those are returned for a person to sort out."""
    tally, clashes = _Tally(), []
    async for users in _all_users(source):
        for user in users:
            if await target.get_user(user.id) is not None:
                tally.existing += 1
                continue
            try:
                await target.create_user(user)
            except DuplicateEmail:
                clashes.append(user)
                continue
            tally.copied += 1
    return tally, clashes


async def _copy_chats(source: Store, target: MigrationTarget) -> tuple[_Tally, _Tally]:
    """Copy the chats and messages the target lacks; a chat that gained messages ends with the
    source's record, since appending moves the counters (unread, last message) on the way."""
    chats, messages = _Tally(), _Tally()
    async for page in pages(lambda cursor: source.list_chats(limit=MIGRATE_PAGE, cursor=cursor)):
        for chat in page:
            if await target.get_chat(chat.id) is None:
                await target.create_chat(chat)
                chats.copied += 1
            else:
                chats.existing += 1
            there = {m.id async for batch in _messages_of(target, chat.id) for m in batch}
            appended = 0
            async for batch in _messages_of(source, chat.id):
                for message in batch:
                    if message.id in there:
                        messages.existing += 1
                        continue
                    await target.append_message(message)
                    appended += 1
            messages.copied += appended
            if appended:
                await target.restore_chat(chat)
    return chats, messages


async def _copy_notifications(source: Store, target: Store) -> _Tally:
    """Copy the notifications of the source's users that the target lacks."""
    tally = _Tally()
    async for users in _all_users(source):
        for user in users:
            there = {n.id async for batch in _notifications_of(target, user.id) for n in batch}
            async for batch in _notifications_of(source, user.id):
                for notification in batch:
                    if notification.id in there:
                        tally.existing += 1
                    else:
                        await target.add_notification(notification)
                        tally.copied += 1
    return tally


async def _copy_activity(source: Store, target: Store) -> _Tally:
    """Copy the activity-log entries the target lacks, a page per append."""
    tally = _Tally()
    there: set[str] = set()
    async for entries in pages(
        lambda cursor: target.list_activity(ActivityFilter(), limit=MIGRATE_PAGE, cursor=cursor)
    ):
        there.update(entry.id for entry in entries)
    async for entries in pages(
        lambda cursor: source.list_activity(ActivityFilter(), limit=MIGRATE_PAGE, cursor=cursor)
    ):
        missing = [entry for entry in entries if entry.id not in there]
        await target.append_activity(missing)
        tally.copied += len(missing)
        tally.existing += len(entries) - len(missing)
    return tally


async def migrate(source_url: str, target_url: str) -> int:
    if source_url == target_url:
        raise ValueError("--from and --to name the same store")
    try:
        clashes = await _copy_everything(source_url, target_url)
    except BaseExceptionGroup as group:
        # Errors of the inner store cross the outer one's nursery; report them as themselves.
        raise sole_error(group) from None
    # The protocol cannot list them, and both only matter for a token's lifetime.
    print("not copied: token revocations and login-failure counts")
    if clashes:
        emails = ", ".join(user.email for user in clashes)
        print(
            f"switchboard: error: {len(clashes)} users not copied, their emails belong to other"
            f" users in the target: {emails}",
            file=sys.stderr,
        )
        return 1
    return 0


async def _copy_everything(source_url: str, target_url: str) -> list[User]:
    """Copy, printing a line per kind of record; returns the users left out for their email."""
    # The source must be there already: opening a store creates it, and a mistyped --from
    # would be copied from an empty new store ("0 copied") and left behind.
    async with open_store(source_url, existing=True) as source, open_store(target_url) as target:
        assert isinstance(target, MigrationTarget)  # every backend is one
        users, clashes = await _copy_users(source, target)
        print(users.line("users"), flush=True)
        chats, messages = await _copy_chats(source, target)
        print(chats.line("chats"), flush=True)
        print(messages.line("messages"), flush=True)
        print((await _copy_notifications(source, target)).line("notifications"), flush=True)
        print((await _copy_activity(source, target)).line("activity"), flush=True)
    return clashes
