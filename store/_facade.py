"""The Store's async methods, written once for every backend whose operations are synchronous
(SQLite, MongoDB): each checks its arguments, then hands the operation to the backend's `_call`
(writes) or `_read` (reads), which decide how it reaches a thread.

A backend implements `Operations` (the same operations, synchronous, positional) and `_call`;
`_read` goes through `_call` unless the backend reads another way (SQLite reads on a connection
of their own, beside the writer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from store import _rules
from store._protocol import ActivityFilter, AgentRouting, ChatFilter, ChatRouting
from store._records import (
    Activity,
    Chat,
    CodePurpose,
    Mail,
    Message,
    MessageStatus,
    Notification,
    OneTimeCode,
    Page,
    Role,
    User,
)

R = TypeVar("R")


class Operations(Protocol):
    """What a backend runs in its thread: the Store's operations, synchronous, with the arguments
    checked already and given by position."""

    def create_user(self, user: User) -> User: ...
    def get_user(self, user_id: str) -> User | None: ...
    def get_user_by_email(self, email: str) -> User | None: ...
    def get_customer_by_external_id(self, external_id: str) -> User | None: ...
    def find_or_create_customer(self, customer: User) -> User: ...
    def update_user(self, user: User) -> User: ...
    def delete_user(self, user_id: str) -> bool: ...
    def list_users(self, role: Role | None, limit: int, cursor: str | None) -> Page[User]: ...
    def count_users(self, role: Role | None) -> int: ...
    def revoke_token(self, jti: str, expires_at: datetime) -> None: ...
    def is_token_revoked(self, jti: str) -> bool: ...
    def add_login_failure(self, key: str, at: datetime) -> None: ...
    def count_login_failures(self, key: str, since: datetime) -> int: ...
    def login_failures(self, key: str, since: datetime) -> tuple[int, datetime | None]: ...
    def clear_login_failures(self, key: str) -> None: ...
    def create_chat(self, chat: Chat) -> Chat: ...
    def get_chat(self, chat_id: str) -> Chat | None: ...
    def set_chat_details(
        self, chat_id: str, title: str, description: str, at: datetime
    ) -> Chat | None: ...
    def delete_chat(self, chat_id: str) -> bool: ...
    def restore_chat(self, chat: Chat) -> Chat: ...
    def list_chats(
        self, chat_filter: ChatFilter, limit: int, cursor: str | None, newest_first: bool
    ) -> Page[Chat]: ...
    def count_chats(self, chat_filter: ChatFilter) -> int: ...
    def append_messages(self, messages: Sequence[Message]) -> list[Message]: ...
    def get_message(self, message_id: str) -> Message | None: ...
    def get_message_by_client_id(self, chat_id: str, client_msg_id: str) -> Message | None: ...
    def list_messages(self, chat_id: str, after_seq: int, limit: int) -> list[Message]: ...
    def mark_messages(
        self,
        chat_id: str,
        reader_id: str,
        after_seq: int,
        up_to_seq: int,
        status: MessageStatus,
    ) -> None: ...
    def add_notification(self, notification: Notification) -> Notification: ...
    def list_notifications(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[list[Notification], int]: ...
    def count_unread_notifications(self, user_id: str) -> int: ...
    def mark_notification_read(self, user_id: str, notification_id: str) -> bool: ...
    def mark_all_notifications_read(self, user_id: str) -> int: ...
    def delete_notification(self, user_id: str, notification_id: str) -> bool: ...
    def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        new_chats: Sequence[Chat],
        fence: int | None,
    ) -> None: ...
    def claim_routing(self, holder: str) -> int: ...
    def append_activity(self, entries: Sequence[Activity]) -> None: ...
    def list_activity(
        self, activity_filter: ActivityFilter, limit: int, cursor: str | None
    ) -> Page[Activity]: ...
    def set_password(
        self, user_id: str, password_hash: str, at: datetime, kept_token_id: str | None
    ) -> User: ...
    def mark_email_verified(self, user_id: str, email: str, at: datetime) -> User | None: ...
    def issue_code(self, code: OneTimeCode, mail: Mail) -> None: ...
    def use_code(
        self, user_id: str, purpose: CodePurpose, digest: str, now: datetime, max_wrong_tries: int
    ) -> bool: ...
    def queue_mail(self, mail: Mail) -> None: ...
    def due_mail(self, before: datetime, limit: int) -> list[Mail]: ...
    def claim_mail(self, mail_id: str, seen: datetime, until: datetime) -> bool: ...
    def mail_sent(self, mail_id: str, at: datetime) -> None: ...
    def mail_failed(self, mail_id: str, error: str, retry_at: datetime) -> None: ...
    def list_mail(self, limit: int, cursor: str | None) -> Page[Mail]: ...


class Facade(ABC):
    """The Store protocol over a backend's `Operations`."""

    @abstractmethod
    async def _call(self, run: Callable[[Operations], R]) -> R:
        """Run `run` on the backend's operations; returns only once a write in it is durable."""

    async def _read(self, run: Callable[[Operations], R]) -> R:
        """Run a read; through `_call` unless the backend reads another way."""
        return await self._call(run)

    # users

    async def create_user(self, user: User) -> User:
        return await self._call(lambda db: db.create_user(user))

    async def get_user(self, user_id: str) -> User | None:
        return await self._read(lambda db: db.get_user(user_id))

    async def get_user_by_email(self, email: str) -> User | None:
        return await self._read(lambda db: db.get_user_by_email(email))

    async def get_customer_by_external_id(self, external_id: str) -> User | None:
        return await self._read(lambda db: db.get_customer_by_external_id(external_id))

    async def find_or_create_customer(self, customer: User) -> User:
        return await self._call(lambda db: db.find_or_create_customer(customer))

    async def update_user(self, user: User) -> User:
        return await self._call(lambda db: db.update_user(user))

    async def delete_user(self, user_id: str) -> bool:
        return await self._call(lambda db: db.delete_user(user_id))

    async def list_users(
        self, *, role: Role | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[User]:
        _rules.check_page(limit)
        return await self._read(lambda db: db.list_users(role, limit, cursor))

    async def count_users(self, *, role: Role | None = None) -> int:
        return await self._read(lambda db: db.count_users(role))

    # tokens and login throttling

    async def revoke_token(self, jti: str, expires_at: datetime) -> None:
        await self._call(lambda db: db.revoke_token(jti, expires_at))

    async def is_token_revoked(self, jti: str) -> bool:
        return await self._read(lambda db: db.is_token_revoked(jti))

    async def add_login_failure(self, key: str, at: datetime) -> None:
        await self._call(lambda db: db.add_login_failure(key, at))

    async def count_login_failures(self, key: str, since: datetime) -> int:
        return await self._read(lambda db: db.count_login_failures(key, since))

    async def login_failures(self, key: str, since: datetime) -> tuple[int, datetime | None]:
        return await self._read(lambda db: db.login_failures(key, since))

    async def clear_login_failures(self, key: str) -> None:
        await self._call(lambda db: db.clear_login_failures(key))

    # chats

    async def create_chat(self, chat: Chat) -> Chat:
        return await self._call(lambda db: db.create_chat(chat))

    async def get_chat(self, chat_id: str) -> Chat | None:
        return await self._read(lambda db: db.get_chat(chat_id))

    async def set_chat_details(
        self, chat_id: str, *, title: str, description: str, at: datetime
    ) -> Chat | None:
        _rules.check_aware(at)
        return await self._call(lambda db: db.set_chat_details(chat_id, title, description, at))

    async def delete_chat(self, chat_id: str) -> bool:
        return await self._call(lambda db: db.delete_chat(chat_id))

    async def restore_chat(self, chat: Chat) -> Chat:
        return await self._call(lambda db: db.restore_chat(chat))

    async def list_chats(
        self,
        chat_filter: ChatFilter = _rules.ANY_CHAT,
        *,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[Chat]:
        _rules.check_page(limit)
        return await self._read(lambda db: db.list_chats(chat_filter, limit, cursor, newest_first))

    async def count_chats(self, chat_filter: ChatFilter = _rules.ANY_CHAT) -> int:
        return await self._read(lambda db: db.count_chats(chat_filter))

    # messages

    async def append_message(self, message: Message) -> Message:
        return (await self.append_messages([message]))[0]

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        return await self._call(lambda db: db.append_messages(messages))

    async def get_message(self, message_id: str) -> Message | None:
        return await self._read(lambda db: db.get_message(message_id))

    async def get_message_by_client_id(self, chat_id: str, client_msg_id: str) -> Message | None:
        return await self._read(lambda db: db.get_message_by_client_id(chat_id, client_msg_id))

    async def list_messages(
        self, chat_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[Message]:
        _rules.check_page(limit)
        return await self._read(lambda db: db.list_messages(chat_id, after_seq, limit))

    async def mark_messages(
        self,
        chat_id: str,
        *,
        reader_id: str,
        up_to_seq: int,
        status: MessageStatus,
        after_seq: int = 0,
    ) -> None:
        await self._call(
            lambda db: db.mark_messages(chat_id, reader_id, after_seq, up_to_seq, status)
        )

    # notifications

    async def add_notification(self, notification: Notification) -> Notification:
        return await self._call(lambda db: db.add_notification(notification))

    async def list_notifications(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> tuple[list[Notification], int]:
        _rules.check_page(limit, offset)
        return await self._read(lambda db: db.list_notifications(user_id, limit, offset))

    async def count_unread_notifications(self, user_id: str) -> int:
        return await self._read(lambda db: db.count_unread_notifications(user_id))

    async def mark_notification_read(self, user_id: str, notification_id: str) -> bool:
        return await self._call(lambda db: db.mark_notification_read(user_id, notification_id))

    async def mark_all_notifications_read(self, user_id: str) -> int:
        return await self._call(lambda db: db.mark_all_notifications_read(user_id))

    async def delete_notification(self, user_id: str, notification_id: str) -> bool:
        return await self._call(lambda db: db.delete_notification(user_id, notification_id))

    # activity log

    async def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        *,
        new_chats: Sequence[Chat] = (),
        fence: int | None = None,
    ) -> None:
        # copies: the caller may change theirs while the operation waits for its thread
        chats, agents, activity, new = list(chats), list(agents), list(activity), list(new_chats)
        await self._call(lambda db: db.record_routing(chats, agents, activity, new, fence))

    async def claim_routing(self, holder: str) -> int:
        return await self._call(lambda db: db.claim_routing(holder))

    async def append_activity(self, entries: Sequence[Activity]) -> None:
        entries = list(entries)  # the caller may change theirs while this waits in the queue
        await self._call(lambda db: db.append_activity(entries))

    async def list_activity(
        self, activity_filter: ActivityFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Activity]:
        _rules.check_page(limit)
        return await self._read(lambda db: db.list_activity(activity_filter, limit, cursor))

    # accounts by email: credentials, one-time codes and the mail outbox

    async def set_password(
        self, user_id: str, password_hash: str, at: datetime, kept_token_id: str | None = None
    ) -> User:
        _rules.check_aware(at)
        return await self._call(
            lambda db: db.set_password(user_id, password_hash, at, kept_token_id)
        )

    async def mark_email_verified(self, user_id: str, email: str, at: datetime) -> User | None:
        _rules.check_aware(at)
        return await self._call(lambda db: db.mark_email_verified(user_id, email, at))

    async def issue_code(self, code: OneTimeCode, mail: Mail) -> None:
        _rules.check_aware(code.expires_at)
        _rules.check_record_times(mail)
        await self._call(lambda db: db.issue_code(code, mail))

    async def use_code(
        self,
        user_id: str,
        purpose: CodePurpose,
        digest: str,
        *,
        now: datetime,
        max_wrong_tries: int,
    ) -> bool:
        _rules.check_aware(now)
        return await self._call(
            lambda db: db.use_code(user_id, purpose, digest, now, max_wrong_tries)
        )

    async def queue_mail(self, mail: Mail) -> None:
        _rules.check_record_times(mail)
        await self._call(lambda db: db.queue_mail(mail))

    async def due_mail(self, before: datetime, *, limit: int = 50) -> list[Mail]:
        _rules.check_aware(before)
        _rules.check_page(limit)
        return await self._read(lambda db: db.due_mail(before, limit))

    async def claim_mail(self, mail_id: str, seen: datetime, until: datetime) -> bool:
        _rules.check_aware(seen)
        _rules.check_aware(until)
        return await self._call(lambda db: db.claim_mail(mail_id, seen, until))

    async def mail_sent(self, mail_id: str, at: datetime) -> None:
        _rules.check_aware(at)
        await self._call(lambda db: db.mail_sent(mail_id, at))

    async def mail_failed(self, mail_id: str, error: str, retry_at: datetime) -> None:
        _rules.check_aware(retry_at)
        await self._call(lambda db: db.mail_failed(mail_id, error, retry_at))

    async def list_mail(self, *, limit: int = 50, cursor: str | None = None) -> Page[Mail]:
        _rules.check_page(limit)
        return await self._read(lambda db: db.list_mail(limit, cursor))
