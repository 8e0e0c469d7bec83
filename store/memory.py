"""`MemoryStore`: the Store kept in dicts, for fast tests. Same rules as every other backend.

Each method does all its work between two checkpoints, so every operation is atomic with respect
to other tasks, which is what a transaction gives the durable backends.

Over 500 lines because it is one class implementing the whole Backend in memory, as each durable
backend's operations are one class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

import trio

from store import _rules
from store._protocol import (
    ActivityFilter,
    AgentRouting,
    ChatFilter,
    ChatRouting,
    DuplicateEmail,
    DuplicateMessage,
    NotFound,
    StoreError,
)
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

R = TypeVar("R", bound=_rules.HasId)


def _page(
    records: Iterable[R], *, limit: int, cursor: str | None, newest_first: bool = False
) -> Page[R]:
    ordered = sorted(records, key=lambda r: r.id, reverse=newest_first)
    if cursor is not None:
        ordered = [r for r in ordered if (r.id < cursor if newest_first else r.id > cursor)]
    items = ordered[:limit]
    return Page(items=items, next_cursor=items[-1].id if len(ordered) > limit else None)


def _chat_predicate(chat_filter: ChatFilter) -> Callable[[Chat], bool]:
    _rules.check_aware(chat_filter.created_from)
    _rules.check_aware(chat_filter.created_to)

    def matches(chat: Chat) -> bool:
        f = chat_filter
        return (
            (f.status is None or chat.status == f.status)
            and (f.statuses is None or chat.status in f.statuses)
            and (f.agent_id is None or chat.agent_id == f.agent_id)
            and (f.customer_id is None or chat.customer_id == f.customer_id)
            and (f.priority is None or chat.priority == f.priority)
            and (f.created_from is None or chat.created_at >= f.created_from)
            and (f.created_to is None or chat.created_at < f.created_to)
        )

    return matches


def _activity_predicate(activity_filter: ActivityFilter) -> Callable[[Activity], bool]:
    def matches(entry: Activity) -> bool:
        f = activity_filter
        return (f.chat_id is None or entry.chat_id == f.chat_id) and (
            f.agent_id is None or entry.agent_id == f.agent_id
        )

    return matches


class MemoryStore:
    """The Store protocol over plain dicts; nothing survives the object."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._user_ids_by_email: dict[str, str] = {}
        self._revoked_tokens: dict[str, datetime] = {}
        self._login_failures: dict[str, list[datetime]] = {}
        self._chats: dict[str, Chat] = {}
        self._messages: dict[str, Message] = {}
        # per chat: seq -> message id, and client_msg_id -> message id (the two unique keys)
        self._message_ids_by_seq: dict[str, dict[int, str]] = {}
        self._message_ids_by_client_id: dict[str, dict[str, str]] = {}
        self._notifications: dict[str, Notification] = {}
        self._activity: dict[str, Activity] = {}
        self._routing_token = 0
        self._codes: dict[tuple[str, CodePurpose], OneTimeCode] = {}
        self._mail: dict[str, Mail] = {}

    # users

    async def create_user(self, user: User) -> User:
        await trio.lowlevel.checkpoint()
        return self._insert_user(user)

    def _insert_user(self, user: User) -> User:
        _rules.check_record_times(user)
        user = replace(user, email=_rules.normalise_email(user.email))
        if user.id in self._users:
            raise StoreError(f"user id {user.id} already exists")
        if user.email in self._user_ids_by_email:
            raise DuplicateEmail(user.email)
        customer_key = user.external_id if user.role == Role.CUSTOMER else None
        if customer_key is not None and self._customer(customer_key) is not None:
            raise _rules.customer_exists(user)
        self._users[user.id] = user
        self._user_ids_by_email[user.email] = user.id
        return user

    async def get_user(self, user_id: str) -> User | None:
        await trio.lowlevel.checkpoint()
        return self._users.get(user_id)

    async def get_user_by_email(self, email: str) -> User | None:
        await trio.lowlevel.checkpoint()
        user_id = self._user_ids_by_email.get(_rules.normalise_email(email))
        return None if user_id is None else self._users[user_id]

    async def get_customer_by_external_id(self, external_id: str) -> User | None:
        await trio.lowlevel.checkpoint()
        return self._customer(external_id)

    async def find_or_create_customer(self, customer: User) -> User:
        external_id = _rules.customer_key(customer)
        # No checkpoint between the look-up and the insert: one step, as the unique key is.
        await trio.lowlevel.checkpoint()
        return self._customer(external_id) or self._insert_user(customer)

    def _customer(self, external_id: str) -> User | None:
        matching = [
            u
            for u in self._users.values()
            if u.role == Role.CUSTOMER and u.external_id == external_id
        ]
        return min(matching, key=lambda u: u.id, default=None)

    async def update_user(self, user: User) -> User:
        await trio.lowlevel.checkpoint()
        _rules.check_record_times(user)
        user = replace(user, email=_rules.normalise_email(user.email))
        old = self._users.get(user.id)
        if old is None:
            raise NotFound(f"user {user.id}")
        if self._user_ids_by_email.get(user.email, user.id) != user.id:
            raise DuplicateEmail(user.email)
        del self._user_ids_by_email[old.email]
        user = replace(user, **{name: getattr(old, name) for name in _rules.KEPT_USER_FIELDS})
        self._users[user.id] = user
        self._user_ids_by_email[user.email] = user.id
        return user

    async def delete_user(self, user_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        user = self._users.pop(user_id, None)
        if user is None:
            return False
        del self._user_ids_by_email[user.email]
        return True

    async def list_users(
        self, *, role: Role | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[User]:
        await trio.lowlevel.checkpoint()
        _rules.check_page(limit)
        users = (u for u in self._users.values() if role is None or u.role == role)
        return _page(users, limit=limit, cursor=cursor)

    async def count_users(self, *, role: Role | None = None) -> int:
        await trio.lowlevel.checkpoint()
        return sum(1 for u in self._users.values() if role is None or u.role == role)

    # tokens and login throttling

    async def revoke_token(self, jti: str, expires_at: datetime) -> None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(expires_at)
        self._revoked_tokens[jti] = expires_at

    async def is_token_revoked(self, jti: str) -> bool:
        await trio.lowlevel.checkpoint()
        return jti in self._revoked_tokens

    async def add_login_failure(self, key: str, at: datetime) -> None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(at)
        self._login_failures.setdefault(key, []).append(at)

    async def count_login_failures(self, key: str, since: datetime) -> int:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(since)
        return sum(1 for at in self._login_failures.get(key, ()) if at >= since)

    async def login_failures(self, key: str, since: datetime) -> tuple[int, datetime | None]:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(since)
        times = [at for at in self._login_failures.get(key, ()) if at >= since]
        return len(times), max(times, default=None)

    async def clear_login_failures(self, key: str) -> None:
        await trio.lowlevel.checkpoint()
        self._login_failures.pop(key, None)

    # chats

    async def create_chat(self, chat: Chat) -> Chat:
        await trio.lowlevel.checkpoint()
        _rules.check_record_times(chat)
        if chat.id in self._chats:
            raise StoreError(f"chat id {chat.id} already exists")
        self._add_chat(chat)
        return chat

    def _add_chat(self, chat: Chat) -> None:
        self._chats[chat.id] = chat
        self._message_ids_by_seq[chat.id] = {}
        self._message_ids_by_client_id[chat.id] = {}

    async def get_chat(self, chat_id: str) -> Chat | None:
        await trio.lowlevel.checkpoint()
        return self._chats.get(chat_id)

    async def restore_chat(self, chat: Chat) -> Chat:
        await trio.lowlevel.checkpoint()
        _rules.check_record_times(chat)
        if chat.id not in self._chats:
            raise NotFound(f"chat {chat.id}")
        self._chats[chat.id] = chat
        return chat

    async def set_chat_details(
        self, chat_id: str, *, title: str, description: str, at: datetime
    ) -> Chat | None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(at)
        chat = self._chats.get(chat_id)
        if chat is None:
            return None
        chat = replace(chat, title=title, description=description, updated_at=at)
        self._chats[chat_id] = chat
        return chat

    async def delete_chat(self, chat_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        if self._chats.pop(chat_id, None) is None:
            return False
        for message_id in self._message_ids_by_seq.pop(chat_id).values():
            del self._messages[message_id]
        del self._message_ids_by_client_id[chat_id]
        return True

    async def list_chats(
        self,
        chat_filter: ChatFilter = _rules.ANY_CHAT,
        *,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[Chat]:
        await trio.lowlevel.checkpoint()
        _rules.check_page(limit)
        chats = filter(_chat_predicate(chat_filter), self._chats.values())
        return _page(chats, limit=limit, cursor=cursor, newest_first=newest_first)

    async def count_chats(self, chat_filter: ChatFilter = _rules.ANY_CHAT) -> int:
        await trio.lowlevel.checkpoint()
        return sum(1 for _ in filter(_chat_predicate(chat_filter), self._chats.values()))

    # messages

    async def append_message(self, message: Message) -> Message:
        await trio.lowlevel.checkpoint()
        self._append([message])
        return message

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        await trio.lowlevel.checkpoint()
        self._append(messages)
        return list(messages)

    def _append(self, messages: Sequence[Message]) -> None:
        """Every check first, then every change: all or none."""
        _rules.check_run(messages)
        if not messages:
            return
        chat = self._chats.get(messages[0].chat_id)
        if chat is None:
            raise NotFound(f"chat {messages[0].chat_id}")
        by_seq = self._message_ids_by_seq[chat.id]
        by_client_id = self._message_ids_by_client_id[chat.id]
        ids: set[str] = set()
        client_ids: set[str] = set()
        for message in messages:
            if message.id in self._messages or message.id in ids:
                raise StoreError(f"message id {message.id} already exists")
            if message.seq in by_seq:
                raise DuplicateMessage(f"chat {chat.id} already has seq {message.seq}")
            if message.client_msg_id in by_client_id or message.client_msg_id in client_ids:
                raise DuplicateMessage(
                    f"chat {chat.id} already has client_msg_id {message.client_msg_id!r}"
                )
            ids.add(message.id)
            client_ids.add(message.client_msg_id)
        last = messages[-1]
        for_agent, for_customer = _rules.unread_added(messages)
        self._chats[chat.id] = replace(
            chat,
            last_message_id=last.id,
            last_seq=last.seq,
            updated_at=last.created_at,
            agent_unread_count=chat.agent_unread_count + for_agent,
            customer_unread_count=chat.customer_unread_count + for_customer,
        )
        for message in messages:
            self._messages[message.id] = message
            by_seq[message.seq] = message.id
            by_client_id[message.client_msg_id] = message.id

    async def get_message(self, message_id: str) -> Message | None:
        await trio.lowlevel.checkpoint()
        return self._messages.get(message_id)

    async def get_message_by_client_id(self, chat_id: str, client_msg_id: str) -> Message | None:
        await trio.lowlevel.checkpoint()
        message_id = self._message_ids_by_client_id.get(chat_id, {}).get(client_msg_id)
        return None if message_id is None else self._messages[message_id]

    async def list_messages(
        self, chat_id: str, *, after_seq: int = 0, limit: int = 100
    ) -> list[Message]:
        await trio.lowlevel.checkpoint()
        _rules.check_page(limit)
        by_seq = self._message_ids_by_seq.get(chat_id, {})
        seqs = sorted(seq for seq in by_seq if seq > after_seq)[:limit]
        return [self._messages[by_seq[seq]] for seq in seqs]

    async def mark_messages(
        self,
        chat_id: str,
        *,
        reader_id: str,
        up_to_seq: int,
        status: MessageStatus,
        after_seq: int = 0,
    ) -> None:
        await trio.lowlevel.checkpoint()
        chat = self._chats.get(chat_id)
        if chat is None:
            raise NotFound(f"chat {chat_id}")
        replaceable = _rules.statuses_below(status)
        for seq, message_id in self._message_ids_by_seq[chat_id].items():
            message = self._messages[message_id]
            if (
                after_seq < seq <= up_to_seq
                and message.sender_id != reader_id
                and message.status in replaceable
            ):
                self._messages[message_id] = replace(message, status=status)
        if status == MessageStatus.SEEN:
            if reader_id == chat.customer_id:
                self._chats[chat_id] = replace(chat, customer_unread_count=0)
            else:
                self._chats[chat_id] = replace(chat, agent_unread_count=0)

    # notifications

    async def add_notification(self, notification: Notification) -> Notification:
        await trio.lowlevel.checkpoint()
        _rules.check_record_times(notification)
        if notification.id in self._notifications:
            raise StoreError(f"notification id {notification.id} already exists")
        self._notifications[notification.id] = notification
        return notification

    async def list_notifications(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> tuple[list[Notification], int]:
        await trio.lowlevel.checkpoint()
        _rules.check_page(limit, offset)
        theirs = sorted(
            (n for n in self._notifications.values() if n.user_id == user_id),
            key=lambda n: n.id,
            reverse=True,
        )
        return theirs[offset : offset + limit], len(theirs)

    async def count_unread_notifications(self, user_id: str) -> int:
        await trio.lowlevel.checkpoint()
        return sum(1 for n in self._notifications.values() if n.user_id == user_id and not n.read)

    async def mark_notification_read(self, user_id: str, notification_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        notification = self._notifications.get(notification_id)
        if notification is None or notification.user_id != user_id:
            return False
        self._notifications[notification_id] = replace(notification, read=True)
        return True

    async def mark_all_notifications_read(self, user_id: str) -> int:
        await trio.lowlevel.checkpoint()
        unread = [n for n in self._notifications.values() if n.user_id == user_id and not n.read]
        for notification in unread:
            self._notifications[notification.id] = replace(notification, read=True)
        return len(unread)

    async def delete_notification(self, user_id: str, notification_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        notification = self._notifications.get(notification_id)
        if notification is None or notification.user_id != user_id:
            return False
        del self._notifications[notification_id]
        return True

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
        await trio.lowlevel.checkpoint()
        _rules.check_fence(fence, self._routing_token)
        self._check_new_activity(activity)
        new_ids = [created.id for created in new_chats]
        for created in new_chats:
            _rules.check_record_times(created)
        if len(set(new_ids)) != len(new_ids) or any(i in self._chats for i in new_ids):
            raise StoreError("chat id already exists")
        for created in new_chats:
            self._add_chat(created)
        for change in chats:
            if (chat := self._chats.get(change.chat_id)) is not None:
                self._chats[chat.id] = replace(
                    chat,
                    status=change.status,
                    agent_id=change.agent_id,
                    queued_at=change.queued_at,
                    resolved_at=change.resolved_at,
                    updated_at=change.updated_at,
                )
        for agent_change in agents:
            if (user := self._users.get(agent_change.agent_id)) is not None:
                self._users[user.id] = replace(
                    user,
                    role=user.role if agent_change.role is None else agent_change.role,
                    status=agent_change.status,
                    max_load=agent_change.max_load,
                    updated_at=agent_change.updated_at,
                )
        self._activity.update((entry.id, entry) for entry in activity)

    async def claim_routing(self, holder: str) -> int:
        await trio.lowlevel.checkpoint()
        self._routing_token += 1
        return self._routing_token

    def _check_new_activity(self, entries: Sequence[Activity]) -> None:
        ids = [entry.id for entry in entries]
        for entry in entries:
            _rules.check_record_times(entry)
        if len(set(ids)) != len(ids) or any(i in self._activity for i in ids):
            raise StoreError("activity id already exists")

    async def append_activity(self, entries: Sequence[Activity]) -> None:
        await trio.lowlevel.checkpoint()
        self._check_new_activity(entries)
        self._activity.update((entry.id, entry) for entry in entries)

    async def list_activity(
        self, activity_filter: ActivityFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Activity]:
        await trio.lowlevel.checkpoint()
        _rules.check_page(limit)
        entries = filter(_activity_predicate(activity_filter), self._activity.values())
        return _page(entries, limit=limit, cursor=cursor)

    # accounts by email: credentials, one-time codes and the mail outbox

    async def set_password(
        self, user_id: str, password_hash: str, at: datetime, kept_token_id: str | None = None
    ) -> User:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(at)
        old = self._users.get(user_id)
        if old is None:
            raise NotFound(f"user {user_id}")
        user = self._users[user_id] = replace(
            old,
            password_hash=password_hash,
            token_generation=old.token_generation + 1,
            kept_token_id=kept_token_id,
            updated_at=at,
        )
        return user

    async def mark_email_verified(self, user_id: str, email: str, at: datetime) -> User | None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(at)
        old = self._users.get(user_id)
        if old is None or old.email != _rules.normalise_email(email):
            return None
        if old.email_verified_at is not None:
            return old
        user = self._users[user_id] = replace(old, email_verified_at=at, updated_at=at)
        return user

    async def issue_code(self, code: OneTimeCode, mail: Mail) -> None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(code.expires_at)
        self._check_new_mail(mail)
        self._codes[code.user_id, code.purpose] = code
        self._mail[mail.id] = mail

    async def use_code(
        self,
        user_id: str,
        purpose: CodePurpose,
        digest: str,
        *,
        now: datetime,
        max_wrong_tries: int,
    ) -> bool:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(now)
        code = self._codes.get((user_id, purpose))
        if code is None or code.expires_at <= now or code.wrong_tries >= max_wrong_tries:
            return False
        if code.digest == digest:
            del self._codes[user_id, purpose]
            return True
        self._codes[user_id, purpose] = replace(code, wrong_tries=code.wrong_tries + 1)
        return False

    def _check_new_mail(self, mail: Mail) -> None:
        _rules.check_record_times(mail)
        if mail.id in self._mail:
            raise StoreError(f"mail id {mail.id} already exists")

    async def queue_mail(self, mail: Mail) -> None:
        await trio.lowlevel.checkpoint()
        self._check_new_mail(mail)
        self._mail[mail.id] = mail

    async def due_mail(self, before: datetime, *, limit: int = 50) -> list[Mail]:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(before)
        _rules.check_page(limit)
        due = (m for m in self._mail.values() if m.sent_at is None and m.next_attempt_at <= before)
        return sorted(due, key=lambda m: (m.next_attempt_at, m.id))[:limit]

    async def claim_mail(self, mail_id: str, seen: datetime, until: datetime) -> bool:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(seen)
        _rules.check_aware(until)
        mail = self._mail.get(mail_id)
        if mail is None or mail.sent_at is not None or mail.next_attempt_at != seen:
            return False
        self._mail[mail_id] = replace(mail, next_attempt_at=until)
        return True

    async def mail_sent(self, mail_id: str, at: datetime) -> None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(at)
        if (mail := self._mail.get(mail_id)) is not None:
            self._mail[mail_id] = replace(mail, sent_at=at, text="", html="")

    async def mail_failed(self, mail_id: str, error: str, retry_at: datetime) -> None:
        await trio.lowlevel.checkpoint()
        _rules.check_aware(retry_at)
        if (mail := self._mail.get(mail_id)) is not None:
            self._mail[mail_id] = replace(
                mail, attempts=mail.attempts + 1, last_error=error, next_attempt_at=retry_at
            )

    async def list_mail(self, *, limit: int = 50, cursor: str | None = None) -> Page[Mail]:
        await trio.lowlevel.checkpoint()
        _rules.check_page(limit)
        return _page(self._mail.values(), limit=limit, cursor=cursor, newest_first=True)
