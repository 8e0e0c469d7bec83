"""The SQLite schema: its migrations (PRAGMA user_version), and how records become rows and
back (`_Table`: one field per column, named as the field).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar, get_type_hints

from store import _rules
from store._records import (
    Activity,
    Chat,
    Mail,
    Message,
    Notification,
    User,
)

RecordT = TypeVar("RecordT", bound=_rules.HasId)


# _MIGRATIONS[n] takes the schema from version n to n + 1; append, never edit a released one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            password_hash TEXT,
            phone TEXT,
            avatar TEXT,
            status TEXT NOT NULL,
            max_load INTEGER NOT NULL,
            external_id TEXT,
            email_verified_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX users_by_role ON users (role, id)",
        "CREATE INDEX customers_by_external_id ON users (external_id, id) WHERE role = 'customer'",
        """CREATE TABLE revoked_tokens (
            jti TEXT PRIMARY KEY,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at)",
        """CREATE TABLE login_failures (
            key TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX login_failures_by_key ON login_failures (key, at)",
        """CREATE TABLE chats (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT NOT NULL,
            status TEXT NOT NULL,
            priority TEXT NOT NULL,
            agent_id TEXT,
            customer_unread_count INTEGER NOT NULL,
            agent_unread_count INTEGER NOT NULL,
            last_message_id TEXT,
            last_seq INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            queued_at TEXT,
            resolved_at TEXT
        )""",
        "CREATE INDEX chats_by_status ON chats (status, id)",
        "CREATE INDEX chats_by_agent ON chats (agent_id, id)",
        "CREATE INDEX chats_by_customer ON chats (customer_id, id)",
        "CREATE INDEX chats_by_created_at ON chats (created_at)",
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            chat_id TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            client_msg_id TEXT NOT NULL,
            sender_id TEXT NOT NULL,
            sender_role TEXT NOT NULL,
            content TEXT NOT NULL,
            receiver_id TEXT,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (chat_id, seq),
            UNIQUE (chat_id, client_msg_id)
        )""",
        """CREATE TABLE notifications (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            chat_id TEXT,
            read INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX notifications_by_user ON notifications (user_id, id)",
        """CREATE TABLE activity (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            at TEXT NOT NULL,
            agent_id TEXT,
            chat_id TEXT,
            from_value TEXT,
            to_value TEXT,
            actor_id TEXT
        )""",
        "CREATE INDEX activity_by_chat ON activity (chat_id, id)",
        "CREATE INDEX activity_by_agent ON activity (agent_id, id)",
    ),
    # Fencing tokens of the routing arbiter (cluster mode needs MongoDB; kept for one contract).
    ("CREATE TABLE fences (name TEXT PRIMARY KEY, token INTEGER NOT NULL, holder TEXT)",),
    # accounts by email: token generations, one-time codes, the mail outbox
    (
        "ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE one_time_codes (
            user_id TEXT NOT NULL,
            purpose TEXT NOT NULL,
            digest TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            wrong_tries INTEGER NOT NULL,
            PRIMARY KEY (user_id, purpose)
        )""",
        """CREATE TABLE mail (
            id TEXT PRIMARY KEY,
            recipient TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            html TEXT NOT NULL,
            reply_to TEXT,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt_at TEXT NOT NULL,
            sent_at TEXT,
            last_error TEXT
        )""",
        "CREATE INDEX mail_due ON mail (next_attempt_at, id) WHERE sent_at IS NULL",
    ),
    # One customer per shop id. First requests that raced before this key existed may have
    # made several; the first made (lowest id) is the one every look-up found, so the others
    # lose the shop id (their chats stay, as they were already out of the customer's reach).
    (
        """UPDATE users SET external_id = NULL
        WHERE role = 'customer' AND external_id IS NOT NULL AND id > (
            SELECT min(first.id) FROM users AS first
            WHERE first.role = 'customer' AND first.external_id = users.external_id
        )""",
        "DROP INDEX customers_by_external_id",
        "CREATE UNIQUE INDEX customer_by_external_id ON users (external_id)"
        " WHERE role = 'customer'",
    ),
    # The token that changed the password keeps working (its holder stays signed in).
    ("ALTER TABLE users ADD COLUMN kept_token_id TEXT",),
    # Each store's last committed batch and its answer, written in the batch's own transaction:
    # a batch whose writer process died before answering is answered from here if it was
    # committed, and run again if it was not (`_transaction.Writer`). A row per store opened
    # (`owner`), so a command writing beside the server cannot overwrite the server's.
    (
        """CREATE TABLE writer_outcome (
            owner INTEGER PRIMARY KEY,
            batch INTEGER NOT NULL,
            answer BLOB NOT NULL,
            at REAL NOT NULL
        )""",
    ),
    # The table's first form had one row for every store; a database made by it gets this one
    # (its last answer is of no use once its server has stopped).
    (
        "DROP TABLE writer_outcome",
        """CREATE TABLE writer_outcome (
            owner INTEGER PRIMARY KEY,
            batch INTEGER NOT NULL,
            answer BLOB NOT NULL,
            at REAL NOT NULL
        )""",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)
"""The schema version this code writes, kept in the database's PRAGMA user_version."""


# values <-> columns


def _encode_time(value: datetime) -> str:
    # Fixed-width ISO 8601 UTC with microseconds, so text order is time order.
    _rules.check_aware(value)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _decode_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _decode_optional_time(text: str | None) -> datetime | None:
    return None if text is None else _decode_time(text)


def _encode(value: object) -> object:
    match value:
        case datetime():
            return _encode_time(value)
        case StrEnum():
            return value.value
        case _:
            return value


def _same(value: object) -> object:
    return value


def _decoder(hint: object) -> Callable[[Any], object]:
    if hint is datetime:
        return _decode_time
    if hint == datetime | None:
        return _decode_optional_time
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint
    if hint is bool:
        return bool
    return _same


@dataclass(frozen=True, slots=True)
class _Table(Generic[RecordT]):
    """A record type stored one field per column, the columns named as the fields."""

    name: str
    make: Callable[..., RecordT]
    columns: tuple[str, ...]
    decoders: tuple[Callable[[Any], object], ...]
    kept: tuple[str, ...] = ()  # columns an update leaves as they are

    @property
    def updated_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c != "id" and c not in self.kept)

    @property
    def select(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name}"

    @property
    def insert(self) -> str:
        marks = ", ".join("?" * len(self.columns))
        return f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES ({marks})"

    @property
    def update(self) -> str:
        assignments = ", ".join(f"{c} = ?" for c in self.updated_columns)
        return f"UPDATE {self.name} SET {assignments} WHERE id = ?"

    def encode(self, record: RecordT) -> tuple[object, ...]:
        return tuple(_encode(getattr(record, c)) for c in self.columns)

    def encode_for_update(self, record: RecordT) -> tuple[object, ...]:
        values = [_encode(getattr(record, c)) for c in self.updated_columns]
        return (*values, record.id)

    def decode(self, row: Sequence[Any]) -> RecordT:
        return self.make(
            **{c: decode(v) for c, decode, v in zip(self.columns, self.decoders, row, strict=True)}
        )


def _table(
    name: str, record_type: Callable[..., RecordT], kept: tuple[str, ...] = ()
) -> _Table[RecordT]:
    hints = get_type_hints(record_type)  # in field order
    decoders = tuple(_decoder(h) for h in hints.values())
    return _Table(name, record_type, tuple(hints), decoders, kept)


_USERS = _table("users", User, kept=_rules.KEPT_USER_FIELDS)
_CHATS = _table("chats", Chat)
_MESSAGES = _table("messages", Message)
_NOTIFICATIONS = _table("notifications", Notification)
_ACTIVITY = _table("activity", Activity)
_MAIL = _table("mail", Mail)
