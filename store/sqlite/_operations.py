"""The SQL of every store operation, synchronous (`store._facade.Operations`): run in a write
batch's transaction (writes), or on the reading connection (reads), one call at a time.

A little over 500 lines: one class, as the Operations protocol is one, each operation its SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TypeVar

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
from store.sqlite._schema import (
    _ACTIVITY,
    _CHATS,
    _MAIL,
    _MESSAGES,
    _NOTIFICATIONS,
    _USERS,
    _decode_optional_time,
    _encode,
    _encode_time,
    _Table,
)

RecordT = TypeVar("RecordT", bound=_rules.HasId)


def _refusal(
    exc: sqlite3.IntegrityError, what: str, on_unique: StoreError | None = None
) -> StoreError:
    match exc.sqlite_errorname:
        case "SQLITE_CONSTRAINT_PRIMARYKEY":
            return StoreError(f"{what} id already exists")
        case "SQLITE_CONSTRAINT_UNIQUE" if on_unique is not None:
            return on_unique
        case _:
            return StoreError(f"{what} refused: {exc}")


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _role_conditions(role: Role | None) -> tuple[list[str], list[object]]:
    return (["role = ?"], [role.value]) if role is not None else ([], [])


def _chat_conditions(chat_filter: ChatFilter) -> tuple[list[str], list[object]]:
    f = chat_filter
    conditions: list[str] = []
    params: list[object] = []
    for column, value in (
        ("status", f.status),
        ("agent_id", f.agent_id),
        ("customer_id", f.customer_id),
        ("priority", f.priority),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(_encode(value))
    if f.statuses is not None:
        conditions.append(f"status IN ({', '.join('?' * len(f.statuses))})" if f.statuses else "0")
        params.extend(s.value for s in sorted(f.statuses))
    if f.created_from is not None:
        conditions.append("created_at >= ?")
        params.append(_encode_time(f.created_from))
    if f.created_to is not None:
        conditions.append("created_at < ?")
        params.append(_encode_time(f.created_to))
    return conditions, params


def _activity_conditions(activity_filter: ActivityFilter) -> tuple[list[str], list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    for column, value in (
        ("chat_id", activity_filter.chat_id),
        ("agent_id", activity_filter.agent_id),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    return conditions, params


def mark_statement(statuses: int) -> str:
    """`mark_messages`' update of the statuses, replacing any of `statuses` statuses: a range of
    the (chat_id, seq) key, so the rows it reads are the seqs in (after_seq, up_to_seq], not
    every message of the chat before up_to_seq."""
    return (
        "UPDATE messages SET status = ?"
        " WHERE chat_id = ? AND seq > ? AND seq <= ? AND sender_id != ?"
        f" AND status IN ({', '.join('?' * statuses)})"
    )


class _Database:
    """The SQL of every store operation, synchronous; run only by the writer, one call at a time."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def _one(self, table: _Table[RecordT], where: str, params: Sequence[object]) -> RecordT | None:
        row = self._db.execute(f"{table.select} WHERE {where}", params).fetchone()
        return None if row is None else table.decode(row)

    def _insert(
        self,
        table: _Table[RecordT],
        record: RecordT,
        what: str,
        on_unique: Callable[[], StoreError],
    ) -> None:
        try:
            self._db.execute(table.insert, table.encode(record))
        except sqlite3.IntegrityError as exc:
            # SQLite names another unique key before the primary key; asking only once refused
            # (no extra read per insert) makes a reused id a StoreError here as in every
            # backend, whatever else clashes too.
            if self._count(table.name, ["id = ?"], [record.id]):
                raise StoreError(f"{table.name} id {record.id} already exists") from exc
            raise _refusal(exc, what, on_unique()) from exc

    def _count(self, table: str, conditions: list[str], params: Sequence[object]) -> int:
        row = self._db.execute(f"SELECT count(*) FROM {table}{_where(conditions)}", params)
        count: int = row.fetchone()[0]
        return count

    def _page(
        self,
        table: _Table[RecordT],
        conditions: list[str],
        params: list[object],
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool = False,
    ) -> Page[RecordT]:
        if cursor is not None:
            conditions = [*conditions, "id < ?" if newest_first else "id > ?"]
            params = [*params, cursor]
        order = "DESC" if newest_first else "ASC"
        rows = self._db.execute(
            f"{table.select}{_where(conditions)} ORDER BY id {order} LIMIT ?", [*params, limit + 1]
        ).fetchall()
        items = [table.decode(row) for row in rows[:limit]]
        return Page(items=items, next_cursor=items[-1].id if len(rows) > limit else None)

    # users

    def create_user(self, user: User) -> User:
        user = replace(user, email=_rules.normalise_email(user.email))

        def clash() -> StoreError:
            if self._count("users", ["email = ?"], [user.email]):
                return DuplicateEmail(user.email)
            return _rules.customer_exists(user)

        self._insert(_USERS, user, "user", clash)
        return user

    def get_user(self, user_id: str) -> User | None:
        return self._one(_USERS, "id = ?", [user_id])

    def get_user_by_email(self, email: str) -> User | None:
        return self._one(_USERS, "email = ?", [_rules.normalise_email(email)])

    def get_customer_by_external_id(self, external_id: str) -> User | None:
        return self._one(_USERS, "role = 'customer' AND external_id = ?", [external_id])

    def find_or_create_customer(self, customer: User) -> User:
        # One operation of the single writer: nothing runs between the look-up and the insert.
        existing = self.get_customer_by_external_id(_rules.customer_key(customer))
        return existing if existing is not None else self.create_user(customer)

    def update_user(self, user: User) -> User:
        user = replace(user, email=_rules.normalise_email(user.email))
        try:
            updated = self._db.execute(_USERS.update, _USERS.encode_for_update(user)).rowcount
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "user", DuplicateEmail(user.email)) from exc
        stored = self._one(_USERS, "id = ?", [user.id]) if updated else None
        if stored is None:
            raise NotFound(f"user {user.id}")
        return stored

    def delete_user(self, user_id: str) -> bool:
        return self._db.execute("DELETE FROM users WHERE id = ?", [user_id]).rowcount > 0

    def list_users(self, role: Role | None, limit: int, cursor: str | None) -> Page[User]:
        conditions, params = _role_conditions(role)
        return self._page(_USERS, conditions, params, limit=limit, cursor=cursor)

    def count_users(self, role: Role | None) -> int:
        return self._count("users", *_role_conditions(role))

    # tokens and login throttling

    def revoke_token(self, jti: str, expires_at: datetime) -> None:
        self._db.execute(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)"
            " ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at",
            [jti, _encode_time(expires_at)],
        )

    def is_token_revoked(self, jti: str) -> bool:
        return self._count("revoked_tokens", ["jti = ?"], [jti]) > 0

    def prune_revoked_tokens(self, now: datetime) -> None:
        self._db.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", [_encode_time(now)])

    def add_login_failure(self, key: str, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO login_failures (key, at) VALUES (?, ?)", [key, _encode_time(at)]
        )

    def count_login_failures(self, key: str, since: datetime) -> int:
        return self._count("login_failures", ["key = ?", "at >= ?"], [key, _encode_time(since)])

    def login_failures(self, key: str, since: datetime) -> tuple[int, datetime | None]:
        count, latest = self._db.execute(
            "SELECT count(*), max(at) FROM login_failures WHERE key = ? AND at >= ?",
            [key, _encode_time(since)],
        ).fetchone()
        return count, _decode_optional_time(latest)

    def clear_login_failures(self, key: str) -> None:
        self._db.execute("DELETE FROM login_failures WHERE key = ?", [key])

    # chats

    def create_chat(self, chat: Chat) -> Chat:
        try:
            self._db.execute(_CHATS.insert, _CHATS.encode(chat))
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "chat") from exc
        return chat

    def get_chat(self, chat_id: str) -> Chat | None:
        return self._one(_CHATS, "id = ?", [chat_id])

    def restore_chat(self, chat: Chat) -> Chat:
        if not self._db.execute(_CHATS.update, _CHATS.encode_for_update(chat)).rowcount:
            raise NotFound(f"chat {chat.id}")
        return chat

    def set_chat_details(
        self, chat_id: str, title: str, description: str, at: datetime
    ) -> Chat | None:
        self._db.execute(
            "UPDATE chats SET title = ?, description = ?, updated_at = ? WHERE id = ?",
            [title, description, _encode_time(at), chat_id],
        )
        return self.get_chat(chat_id)

    def delete_chat(self, chat_id: str) -> bool:
        # messages go with it (ON DELETE CASCADE)
        return self._db.execute("DELETE FROM chats WHERE id = ?", [chat_id]).rowcount > 0

    def list_chats(
        self, chat_filter: ChatFilter, limit: int, cursor: str | None, newest_first: bool
    ) -> Page[Chat]:
        conditions, params = _chat_conditions(chat_filter)
        return self._page(
            _CHATS, conditions, params, limit=limit, cursor=cursor, newest_first=newest_first
        )

    def count_chats(self, chat_filter: ChatFilter) -> int:
        return self._count("chats", *_chat_conditions(chat_filter))

    # messages

    def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        _rules.check_run(messages)
        if not messages:
            return []
        last = messages[-1]
        for_agent, for_customer = _rules.unread_added(messages)
        # The chat first: a missing chat is NotFound, and if an insert below is refused the
        # operation's savepoint (or, alone, its transaction) rolls this update and the other
        # inserts back with it.
        updated = self._db.execute(
            "UPDATE chats SET last_message_id = ?, last_seq = ?, updated_at = ?,"
            " agent_unread_count = agent_unread_count + ?,"
            " customer_unread_count = customer_unread_count + ?"
            " WHERE id = ?",
            [
                last.id,
                last.seq,
                _encode_time(last.created_at),
                for_agent,
                for_customer,
                last.chat_id,
            ],
        ).rowcount
        if not updated:
            raise NotFound(f"chat {last.chat_id}")
        for message in messages:
            self._insert(_MESSAGES, message, "message", partial(_duplicate, message))
        return list(messages)

    def get_message(self, message_id: str) -> Message | None:
        return self._one(_MESSAGES, "id = ?", [message_id])

    def get_message_by_client_id(self, chat_id: str, client_msg_id: str) -> Message | None:
        return self._one(_MESSAGES, "chat_id = ? AND client_msg_id = ?", [chat_id, client_msg_id])

    def list_messages(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        rows = self._db.execute(
            f"{_MESSAGES.select} WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            [chat_id, after_seq, limit],
        )
        return [_MESSAGES.decode(row) for row in rows]

    def mark_messages(
        self,
        chat_id: str,
        reader_id: str,
        after_seq: int,
        up_to_seq: int,
        status: MessageStatus,
    ) -> None:
        row = self._db.execute("SELECT customer_id FROM chats WHERE id = ?", [chat_id]).fetchone()
        if row is None:
            raise NotFound(f"chat {chat_id}")
        replaceable = sorted(_rules.statuses_below(status))
        if replaceable:
            self._db.execute(
                mark_statement(len(replaceable)),
                [
                    status.value,
                    chat_id,
                    after_seq,
                    up_to_seq,
                    reader_id,
                    *(s.value for s in replaceable),
                ],
            )
        if status == MessageStatus.SEEN:
            side = "customer" if reader_id == row[0] else "agent"
            self._db.execute(f"UPDATE chats SET {side}_unread_count = 0 WHERE id = ?", [chat_id])

    # notifications

    def add_notification(self, notification: Notification) -> Notification:
        try:
            self._db.execute(_NOTIFICATIONS.insert, _NOTIFICATIONS.encode(notification))
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "notification") from exc
        return notification

    def list_notifications(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[list[Notification], int]:
        rows = self._db.execute(
            f"{_NOTIFICATIONS.select} WHERE user_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            [user_id, limit, offset],
        )
        items = [_NOTIFICATIONS.decode(row) for row in rows]
        return items, self._count("notifications", ["user_id = ?"], [user_id])

    def count_unread_notifications(self, user_id: str) -> int:
        return self._count("notifications", ["user_id = ?", "read = 0"], [user_id])

    def mark_notification_read(self, user_id: str, notification_id: str) -> bool:
        return (
            self._db.execute(
                "UPDATE notifications SET read = 1 WHERE id = ? AND user_id = ?",
                [notification_id, user_id],
            ).rowcount
            > 0
        )

    def mark_all_notifications_read(self, user_id: str) -> int:
        return self._db.execute(
            "UPDATE notifications SET read = 1 WHERE user_id = ? AND read = 0", [user_id]
        ).rowcount

    def delete_notification(self, user_id: str, notification_id: str) -> bool:
        return (
            self._db.execute(
                "DELETE FROM notifications WHERE id = ? AND user_id = ?",
                [notification_id, user_id],
            ).rowcount
            > 0
        )

    # routing

    def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        new_chats: Sequence[Chat],
        fence: int | None,
    ) -> None:
        if fence is not None:
            _rules.check_fence(fence, self._routing_token())
        try:
            self._db.executemany(_CHATS.insert, [_CHATS.encode(chat) for chat in new_chats])
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "chat") from exc
        self._db.executemany(
            "UPDATE chats SET status = ?, agent_id = ?, queued_at = ?, resolved_at = ?,"
            " updated_at = ? WHERE id = ?",
            [
                (
                    c.status.value,
                    c.agent_id,
                    _encode(c.queued_at),
                    _encode(c.resolved_at),
                    _encode_time(c.updated_at),
                    c.chat_id,
                )
                for c in chats
            ],
        )
        self._db.executemany(
            "UPDATE users SET status = ?, max_load = ?, updated_at = ?, role = COALESCE(?, role)"
            " WHERE id = ?",
            [
                (
                    a.status.value,
                    a.max_load,
                    _encode_time(a.updated_at),
                    None if a.role is None else a.role.value,
                    a.agent_id,
                )
                for a in agents
            ],
        )
        self.append_activity(activity)

    def claim_routing(self, holder: str) -> int:
        self._db.execute(
            "INSERT INTO fences (name, token, holder) VALUES ('routing', 1, ?)"
            " ON CONFLICT (name) DO UPDATE SET token = token + 1, holder = excluded.holder",
            [holder],
        )
        return self._routing_token()

    def _routing_token(self) -> int:
        row = self._db.execute("SELECT token FROM fences WHERE name = 'routing'").fetchone()
        return 0 if row is None else int(row[0])

    # activity log

    def append_activity(self, entries: Sequence[Activity]) -> None:
        try:
            self._db.executemany(_ACTIVITY.insert, [_ACTIVITY.encode(e) for e in entries])
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "activity") from exc

    def list_activity(
        self, activity_filter: ActivityFilter, limit: int, cursor: str | None
    ) -> Page[Activity]:
        conditions, params = _activity_conditions(activity_filter)
        return self._page(_ACTIVITY, conditions, params, limit=limit, cursor=cursor)

    # accounts by email: credentials, one-time codes and the mail outbox

    def set_password(
        self, user_id: str, password_hash: str, at: datetime, kept_token_id: str | None
    ) -> User:
        self._db.execute(
            "UPDATE users SET password_hash = ?, token_generation = token_generation + 1,"
            " kept_token_id = ?, updated_at = ? WHERE id = ?",
            [password_hash, kept_token_id, _encode_time(at), user_id],
        )
        user = self.get_user(user_id)
        if user is None:
            raise NotFound(f"user {user_id}")
        return user

    def mark_email_verified(self, user_id: str, email: str, at: datetime) -> User | None:
        self._db.execute(
            "UPDATE users SET email_verified_at = ?, updated_at = ?"
            " WHERE id = ? AND email = ? AND email_verified_at IS NULL",
            [_encode_time(at), _encode_time(at), user_id, _rules.normalise_email(email)],
        )
        user = self.get_user(user_id)
        return user if user is not None and user.email == _rules.normalise_email(email) else None

    def issue_code(self, code: OneTimeCode, mail: Mail) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO one_time_codes"
            " (user_id, purpose, digest, expires_at, wrong_tries) VALUES (?, ?, ?, ?, ?)",
            [
                code.user_id,
                code.purpose.value,
                code.digest,
                _encode_time(code.expires_at),
                code.wrong_tries,
            ],
        )
        self.queue_mail(mail)

    def use_code(
        self, user_id: str, purpose: CodePurpose, digest: str, now: datetime, max_wrong_tries: int
    ) -> bool:
        live = ["user_id = ?", "purpose = ?", "expires_at > ?", "wrong_tries < ?"]
        params = [user_id, purpose.value, _encode_time(now), max_wrong_tries]
        used = self._db.execute(
            f"DELETE FROM one_time_codes{_where([*live, 'digest = ?'])}", [*params, digest]
        ).rowcount
        if used:
            return True
        self._db.execute(
            f"UPDATE one_time_codes SET wrong_tries = wrong_tries + 1{_where(live)}", params
        )
        return False

    def queue_mail(self, mail: Mail) -> None:
        try:
            self._db.execute(_MAIL.insert, _MAIL.encode(mail))
        except sqlite3.IntegrityError as exc:
            raise _refusal(exc, "mail") from exc

    def due_mail(self, before: datetime, limit: int) -> list[Mail]:
        rows = self._db.execute(
            f"{_MAIL.select} WHERE sent_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            [_encode_time(before), limit],
        )
        return [_MAIL.decode(row) for row in rows]

    def claim_mail(self, mail_id: str, seen: datetime, until: datetime) -> bool:
        claimed = self._db.execute(
            "UPDATE mail SET next_attempt_at = ?"
            " WHERE id = ? AND sent_at IS NULL AND next_attempt_at = ?",
            [_encode_time(until), mail_id, _encode_time(seen)],
        )
        return claimed.rowcount == 1

    def mail_sent(self, mail_id: str, at: datetime) -> None:
        self._db.execute(
            "UPDATE mail SET sent_at = ?, text = '', html = '' WHERE id = ?",
            [_encode_time(at), mail_id],
        )

    def mail_failed(self, mail_id: str, error: str, retry_at: datetime) -> None:
        self._db.execute(
            "UPDATE mail SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            [error, _encode_time(retry_at), mail_id],
        )

    def list_mail(self, limit: int, cursor: str | None) -> Page[Mail]:
        return self._page(_MAIL, [], [], limit=limit, cursor=cursor, newest_first=True)


def _duplicate(message: Message) -> DuplicateMessage:
    return DuplicateMessage(
        f"chat {message.chat_id} already has seq {message.seq}"
        f" or client_msg_id {message.client_msg_id!r}"
    )
