"""How records are laid out in MongoDB: the collections' indexes, write and read concerns, and
the codec between records and documents (each datetime twice: a BSON date and exact
microseconds), with the queries of the filters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar, get_type_hints

from bson.codec_options import CodecOptions
from pymongo import (
    ASCENDING,
    IndexModel,
)
from pymongo.database import Database
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from store import _rules
from store._protocol import (
    ActivityFilter,
    ChatFilter,
)
from store._records import (
    Activity,
    ActivityKind,
    Chat,
    Mail,
    Message,
    MessageStatus,
    Notification,
    User,
)

RecordT = TypeVar("RecordT", bound=_rules.HasId)
Document = dict[str, Any]


DEFAULT_DATABASE = "switchboard"
"""The database used when the URL names none (mongodb://host/ instead of mongodb://host/db)."""

SERVER_SELECTION_TIMEOUT_MS = 5000
"""How long a call waits for a reachable server before StoreUnavailable, unless the URL sets
serverSelectionTimeoutMS itself (PyMongo's own default, 30 s, is long for a CLI to hang)."""

_TRANSACTION_ATTEMPTS = 10
"""How often a transaction that lost a write conflict is run again before giving up."""

_WRITE_CONCERN = WriteConcern("majority", j=True)
_READ_CONCERN = ReadConcern("majority")
_CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(
    document_class=dict, tz_aware=True, tzinfo=UTC
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EXACT = "_us"
"""Suffix of the field holding a datetime's exact microseconds beside its BSON date."""
_TIME_HINTS = (datetime, datetime | None)

_DUPLICATE_KEY = 11000
_BULK_WRITE_WIRE_VERSION = 25

_ROUTING = "routing"
"""The `fences` document of the routing arbiter."""
_FENCE_FIELD = "routing_fence"
"""On chats and users: the token of the last fenced decision that wrote the document."""

_ACTIVITY_COLLECTIONS = {
    ActivityKind.AGENT_STATUS: "agent_status_history",
    ActivityKind.CHAT_STATUS: "chat_status_history",
    ActivityKind.ASSIGNMENT: "assignments",
}


@dataclass(frozen=True, slots=True)
class _Index:
    collection: str
    name: str
    keys: tuple[str, ...]
    options: tuple[tuple[str, object], ...] = ()

    def model(self, *, with_id: bool) -> IndexModel:
        keys = [(key, ASCENDING) for key in self.keys if with_id or key != "_id"]
        return IndexModel(keys, name=self.name, **dict(self.options))


_UNIQUE = (("unique", True),)
_CUSTOMER_KEY = "customer_key"

# The lists page by _id within a filter, so their indexes end in _id: the page is then read
# in order from the index instead of sorting every match.
_INDEXES = (
    _Index("users", "email_unique", ("email",), _UNIQUE),
    _Index("users", "by_role", ("role", "_id")),
    _Index("users", "by_external_id", ("external_id", "_id")),
    # A shop id names one customer. Only customers carry the key (written by create_user), so
    # the index leaves everyone else out; customers stored before it existed lack it too.
    _Index("users", "customer_key", (_CUSTOMER_KEY,), (*_UNIQUE, ("sparse", True))),
    _Index("chats", "by_status", ("status", "_id")),
    _Index("chats", "by_agent", ("agent_id", "_id")),
    _Index("chats", "by_customer", ("customer_id", "_id")),
    _Index("chats", "by_created_at", ("created_at" + _EXACT,)),
    _Index("messages", "chat_seq", ("chat_id", "seq"), _UNIQUE),
    _Index("messages", "chat_client_msg_id", ("chat_id", "client_msg_id"), _UNIQUE),
    _Index("notifications", "by_user", ("user_id", "_id")),
    # A revocation is only worth keeping until its token expires anyway.
    _Index("revoked_tokens", "expiry", ("expires_at",), (("expireAfterSeconds", 0),)),
    _Index("login_failures", "by_key", ("key", "at" + _EXACT)),
    _Index("mail", "due", ("sent_at" + _EXACT, "next_attempt_at" + _EXACT, "_id")),
    *(
        _Index(collection, f"by_{key}", (key, "_id"))
        for collection in _ACTIVITY_COLLECTIONS.values()
        for key in ("chat_id", "agent_id")
    ),
)


def _create_indexes(database: Database[Document], *, with_id: bool) -> None:
    for collection in dict.fromkeys(index.collection for index in _INDEXES):
        models = [i.model(with_id=with_id) for i in _INDEXES if i.collection == collection]
        database[collection].create_indexes(models)


# values <-> documents


def _micros(value: datetime) -> int:
    _rules.check_aware(value)
    return (value - _EPOCH) // _MICROSECOND


def _time_fields(name: str, value: datetime | None) -> Document:
    if value is None:
        return {name: None, name + _EXACT: None}
    return {name: value, name + _EXACT: _micros(value)}


def _plain(value: object) -> object:
    return value.value if isinstance(value, StrEnum) else value


@dataclass(frozen=True, slots=True)
class _Shape(Generic[RecordT]):
    """How one record type maps to a document: field by field, id as `_id`."""

    make: Callable[..., RecordT]
    hints: tuple[tuple[str, object], ...]

    def encode(self, record: RecordT) -> Document:
        document: Document = {"_id": record.id}
        for name, hint in self.hints:
            if name == "id":
                continue
            value = getattr(record, name)
            if hint in _TIME_HINTS:
                document |= _time_fields(name, value)
            else:
                document[name] = _plain(value)
        return document

    def decode(self, document: Document) -> RecordT:
        values: dict[str, object] = {}
        for name, hint in self.hints:
            if name == "id":
                values[name] = document["_id"]
            elif name not in document:
                continue  # a field added since the document was written: the record's default
            elif hint in _TIME_HINTS:
                micros = document[name + _EXACT]
                values[name] = None if micros is None else _EPOCH + micros * _MICROSECOND
            elif isinstance(hint, type) and issubclass(hint, StrEnum):
                values[name] = hint(document[name])
            else:
                values[name] = document[name]
        return self.make(**values)


def _shape(record_type: Callable[..., RecordT]) -> _Shape[RecordT]:
    return _Shape(record_type, tuple(get_type_hints(record_type).items()))  # in field order


_USERS = _shape(User)
_CHATS = _shape(Chat)
_MESSAGES = _shape(Message)
_NOTIFICATIONS = _shape(Notification)
_ACTIVITY = _shape(Activity)
_MAIL = _shape(Mail)


def _chat_query(chat_filter: ChatFilter) -> Document:
    f = chat_filter
    query: Document = {
        name: _plain(value)
        for name, value in (
            ("agent_id", f.agent_id),
            ("customer_id", f.customer_id),
            ("priority", f.priority),
        )
        if value is not None
    }
    status: Document = {}
    if f.status is not None:
        status["$eq"] = f.status.value
    if f.statuses is not None:
        status["$in"] = sorted(s.value for s in f.statuses)
    if status:
        query["status"] = status
    created: Document = {}
    if f.created_from is not None:
        created["$gte"] = _micros(f.created_from)
    if f.created_to is not None:
        created["$lt"] = _micros(f.created_to)
    if created:
        query["created_at" + _EXACT] = created
    return query


def _activity_query(activity_filter: ActivityFilter) -> Document:
    f = activity_filter
    return {
        name: value
        for name, value in (("chat_id", f.chat_id), ("agent_id", f.agent_id))
        if value is not None
    }


def _eq(value: object) -> Document:
    """Equality as `$eq`, which MongoDB reads as the plain `{field: value}`. nx-27017 turns the
    plain form into SQL that also looks inside arrays (an `OR EXISTS (... json_each ...)`),
    which keeps SQLite from every index of the field, so each such query reads the whole
    collection; `$eq` becomes one comparison that an index answers."""
    return {"$eq": value}


def _status_among(statuses: frozenset[MessageStatus]) -> Document:
    """A condition matching a message status in `statuses`, as `$eq` or `$ne` where one value
    says it (`$ne` would also match a document without a status, and every message has one):
    nx-27017 runs `$in` and `$nin` in Python over every document of the collection."""
    if len(statuses) == 1:
        return _eq(next(iter(statuses)).value)
    others = frozenset(MessageStatus) - statuses
    if len(others) == 1:
        return {"$ne": next(iter(others)).value}
    return {"$in": sorted(s.value for s in statuses)}
