"""Every store operation against one MongoDB database, as blocking PyMongo calls
(`store._facade.Operations`), run in worker threads; and the fenced routing journal.

Over 500 lines because it is one class, as the Operations protocol is one: each operation is a
few PyMongo calls plus the ordering that keeps it safe on a server without transactions, and
those orderings (described in the package's docstring) read best side by side.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

import outcome
from pymongo import (
    ASCENDING,
    DESCENDING,
    InsertOne,
    MongoClient,
    ReturnDocument,
    UpdateOne,
)
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    ConnectionFailure,
    DuplicateKeyError,
    PyMongoError,
)
from pymongo.results import ClientBulkWriteResult

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
    ActivityKind,
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
from store.mongo import _reads
from store.mongo._client import _transient
from store.mongo._schema import (
    _ACTIVITY,
    _ACTIVITY_COLLECTIONS,
    _CHATS,
    _CUSTOMER_KEY,
    _DUPLICATE_KEY,
    _EPOCH,
    _EXACT,
    _FENCE_FIELD,
    _MAIL,
    _MESSAGES,
    _MICROSECOND,
    _NOTIFICATIONS,
    _ROUTING,
    _TRANSACTION_ATTEMPTS,
    _USERS,
    _WRITE_CONCERN,
    Document,
    _activity_query,
    _chat_query,
    _eq,
    _micros,
    _Shape,
    _status_among,
    _time_fields,
)

R = TypeVar("R")
RecordT = TypeVar("RecordT", bound=_rules.HasId)

# the operations, synchronous; run in worker threads


class _Database:
    """Every store operation against one MongoDB database, as blocking PyMongo calls."""

    def __init__(
        self,
        client: MongoClient[Document],
        database: Database[Document],
        transactions: bool,
        bulk: bool,
    ) -> None:
        self._client = client
        self.transactions = transactions
        self.bulk = bulk
        """Whether writes to several collections go to the server as one bulkWrite command."""
        self._users = database["users"]
        self._chats = database["chats"]
        self._messages = database["messages"]
        self._notifications = database["notifications"]
        self._revoked_tokens = database["revoked_tokens"]
        self._login_failures = database["login_failures"]
        self._activity = {kind: database[name] for kind, name in _ACTIVITY_COLLECTIONS.items()}
        self._fences = database["fences"]
        self._codes = database["one_time_codes"]
        self._mail = database["mail"]

    def _atomically(self, work: Callable[[ClientSession | None], R]) -> R:
        """`work` in one transaction where the server has them; else `work` as it is ordered."""
        if not self.transactions:
            return work(None)
        with self._client.start_session() as session:
            attempt = 1
            while True:
                try:
                    # No read concern of its own: the reads in these transactions only look
                    # up fields that never change, and the commit's majority write concern is
                    # what makes the whole durable.
                    with session.start_transaction(write_concern=_WRITE_CONCERN):
                        result = work(session)
                except PyMongoError as exc:
                    # A write conflict is worth another go; a lost server is not (it would
                    # keep the caller waiting a server-selection timeout per attempt).
                    if (
                        attempt < _TRANSACTION_ATTEMPTS
                        and _transient(exc)
                        and not isinstance(exc, ConnectionFailure)
                    ):
                        attempt += 1
                        continue
                    raise
                return result

    @staticmethod
    def _clash(
        collection: Collection[Document], record_id: str, what: str, on_other_key: StoreError
    ) -> StoreError:
        """The error for a refused insert: a reused id is a plain StoreError, as in every
        backend; otherwise one of the collection's other unique keys clashed."""
        # Asked after the refusal, not before the insert, so it cannot race with the insert;
        # servers differ in how (and whether) they name the clashing index in the error.
        if collection.find_one({"_id": record_id}, {"_id": 1}) is not None:
            return StoreError(f"{what} id {record_id} already exists")
        return on_other_key

    @staticmethod
    def _page(
        collection: Collection[Document],
        shape: _Shape[RecordT],
        query: Document,
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool = False,
    ) -> Page[RecordT]:
        if cursor is not None:
            query = query | {"_id": {"$lt" if newest_first else "$gt": cursor}}
        order = DESCENDING if newest_first else ASCENDING
        documents = list(collection.find(query).sort("_id", order).limit(limit + 1))
        items = [shape.decode(d) for d in documents[:limit]]
        return Page(items=items, next_cursor=items[-1].id if len(documents) > limit else None)

    @staticmethod
    def _one(
        collection: Collection[Document], shape: _Shape[RecordT], query: Document
    ) -> RecordT | None:
        document = collection.find_one(query)
        return None if document is None else shape.decode(document)

    # users

    def create_user(self, user: User) -> User:
        user = replace(user, email=_rules.normalise_email(user.email))
        document = _USERS.encode(user)
        if user.role == Role.CUSTOMER and user.external_id:
            document[_CUSTOMER_KEY] = user.external_id
        try:
            self._users.insert_one(document)
        except DuplicateKeyError as exc:
            taken = self._users.find_one({"email": user.email}, {"_id": 1}) is not None
            other = DuplicateEmail(user.email) if taken else _rules.customer_exists(user)
            raise self._clash(self._users, user.id, "user", other) from exc
        return user

    def find_or_create_customer(self, customer: User) -> User:
        # The unique customer key lets exactly one of racing inserts in; the others find it.
        external_id = _rules.customer_key(customer)
        existing = self.get_customer_by_external_id(external_id)
        if existing is not None:
            return existing
        try:
            return self.create_user(customer)
        except StoreError:
            existing = self.get_customer_by_external_id(external_id)
            if existing is None:
                raise
            return existing

    def get_user(self, user_id: str) -> User | None:
        return self._one(self._users, _USERS, {"_id": user_id})

    def get_user_by_email(self, email: str) -> User | None:
        return self._one(self._users, _USERS, {"email": _rules.normalise_email(email)})

    def get_customer_by_external_id(self, external_id: str) -> User | None:
        query = {"role": Role.CUSTOMER.value, "external_id": external_id}
        for document in self._users.find(query).sort("_id", ASCENDING).limit(1):
            return _USERS.decode(document)
        return None

    def update_user(self, user: User) -> User:
        user = replace(user, email=_rules.normalise_email(user.email))
        fields = _USERS.encode(user)
        for name in ("_id", *_rules.KEPT_USER_FIELDS):
            del fields[name]
        try:
            result = self._users.update_one({"_id": user.id}, {"$set": fields})
        except DuplicateKeyError as exc:
            raise DuplicateEmail(user.email) from exc
        stored = self.get_user(user.id) if result.matched_count else None
        if stored is None:
            raise NotFound(f"user {user.id}")
        return stored

    def delete_user(self, user_id: str) -> bool:
        return self._users.delete_one({"_id": user_id}).deleted_count > 0

    def list_users(self, role: Role | None, limit: int, cursor: str | None) -> Page[User]:
        query = {} if role is None else {"role": role.value}
        return self._page(self._users, _USERS, query, limit=limit, cursor=cursor)

    def count_users(self, role: Role | None) -> int:
        return self._users.count_documents({} if role is None else {"role": role.value})

    # tokens and login throttling

    def revoke_token(self, jti: str, expires_at: datetime) -> None:
        _rules.check_aware(expires_at)
        self._revoked_tokens.update_one(
            {"_id": jti}, {"$set": {"expires_at": expires_at}}, upsert=True
        )

    def is_token_revoked(self, jti: str) -> bool:
        return self._revoked_tokens.find_one({"_id": jti}, {"_id": 1}) is not None

    def add_login_failure(self, key: str, at: datetime) -> None:
        self._login_failures.insert_one({"key": key} | _time_fields("at", at))

    def count_login_failures(self, key: str, since: datetime) -> int:
        return self._login_failures.count_documents(
            {"key": key, "at" + _EXACT: {"$gte": _micros(since)}}
        )

    def login_failures(self, key: str, since: datetime) -> tuple[int, datetime | None]:
        where = {"key": key, "at" + _EXACT: {"$gte": _micros(since)}}
        count = self._login_failures.count_documents(where)
        latest = self._login_failures.find_one(
            where, {"at" + _EXACT: 1}, sort=[("at" + _EXACT, -1)]
        )
        if latest is None:
            return count, None
        return count, _EPOCH + latest["at" + _EXACT] * _MICROSECOND

    def clear_login_failures(self, key: str) -> None:
        self._login_failures.delete_many({"key": key})

    # chats

    def create_chat(self, chat: Chat) -> Chat:
        try:
            self._chats.insert_one(_CHATS.encode(chat))
        except DuplicateKeyError as exc:
            raise StoreError(f"chat id {chat.id} already exists") from exc
        return chat

    def get_chat(self, chat_id: str) -> Chat | None:
        return self._one(self._chats, _CHATS, {"_id": chat_id})

    def restore_chat(self, chat: Chat) -> Chat:
        # The chat's read marks are not in the record but say its messages' statuses: kept.
        kept = self._chats.find_one({"_id": chat.id}, {_reads.READS: 1})
        document = _CHATS.encode(chat)
        if kept is not None and _reads.READS in kept:
            document[_reads.READS] = kept[_reads.READS]
        if kept is None or not self._chats.replace_one({"_id": chat.id}, document).matched_count:
            raise NotFound(f"chat {chat.id}")
        return chat

    def set_chat_details(
        self, chat_id: str, title: str, description: str, at: datetime
    ) -> Chat | None:
        fields = {"title": title, "description": description} | _time_fields("updated_at", at)
        self._chats.update_one({"_id": chat_id}, {"$set": fields})
        return self.get_chat(chat_id)

    def delete_chat(self, chat_id: str) -> bool:
        def work(session: ClientSession | None) -> bool:
            # The chat first: an append racing with this either finds no chat (and takes its
            # message back) or stored its message before the messages below are deleted.
            deleted = self._chats.delete_one({"_id": chat_id}, session=session).deleted_count
            self._messages.delete_many({"chat_id": _eq(chat_id)}, session=session)
            return deleted > 0

        return self._atomically(work)

    def list_chats(
        self, chat_filter: ChatFilter, limit: int, cursor: str | None, newest_first: bool
    ) -> Page[Chat]:
        return self._page(
            self._chats,
            _CHATS,
            _chat_query(chat_filter),
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )

    def count_chats(self, chat_filter: ChatFilter) -> int:
        return self._chats.count_documents(_chat_query(chat_filter))

    # messages

    def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        _rules.check_run(messages)
        if not messages:
            return []
        documents = [_MESSAGES.encode(message) for message in messages]
        last = messages[-1]
        chat = {"_id": last.chat_id}
        counters = _counters(messages)

        def work(session: ClientSession | None) -> None:
            # The messages first: their unique indexes refuse a duplicate before the chat changes.
            try:
                if self.bulk:
                    inserts = [InsertOne(d, namespace=self._messages.full_name) for d in documents]
                    update = UpdateOne(chat, counters, namespace=self._chats.full_name)
                    written = self._write_together([*inserts, update], session)
                    matched = written.update_results[len(inserts)].matched_count
                else:
                    self._messages.insert_many(documents, session=session)
                    matched = self._chats.update_one(chat, counters, session=session).matched_count
            except (BulkWriteError, ClientBulkWriteException) as exc:
                if session is None:  # a transaction's abort takes them back otherwise
                    self._take_back(documents[: _refused_at(exc, len(documents))])
                raise
            if not matched:
                # No such chat: take the messages back (in a transaction the abort would too).
                self._take_back(documents, session)
                raise NotFound(f"chat {last.chat_id}")

        try:
            self._atomically(work)
        except (BulkWriteError, ClientBulkWriteException) as exc:
            refused = _first_write_error(exc)
            if refused is None or refused[1] != _DUPLICATE_KEY or refused[0] >= len(messages):
                raise
            message = messages[refused[0]]
            duplicate = DuplicateMessage(
                f"chat {message.chat_id} already has seq {message.seq}"
                f" or client_msg_id {message.client_msg_id!r}"
            )
            raise self._clash(self._messages, message.id, "message", duplicate) from exc
        return list(messages)

    def append_runs(
        self, runs: Sequence[Sequence[Message]]
    ) -> list[outcome.Outcome[list[Message]]]:
        """Several chats' runs of messages, each as `append_messages` would store it, in one
        insert and one update of their chats (or one bulkWrite) for all of them: what the
        conversations of many chats queued while the previous write was in flight.

        Each run gets its own outcome. A run refused as a whole (its chat gone) is taken back
        alone; anything else refused (a resent message, a run that breaks the rules, two runs of
        one chat) sends every run down `append_messages` one by one, so that only the run at
        fault is refused, exactly as it would have been alone."""
        if len(runs) < 2 or not all(runs) or len({run[0].chat_id for run in runs}) < len(runs):
            return [outcome.capture(self.append_messages, run) for run in runs]
        try:
            for run in runs:
                _rules.check_run(run)
        except StoreError:
            return [outcome.capture(self.append_messages, run) for run in runs]
        documents = [[_MESSAGES.encode(message) for message in run] for run in runs]
        inserts = [document for run in documents for document in run]
        counts = [({"_id": run[-1].chat_id}, _counters(run)) for run in runs]

        def work(session: ClientSession | None) -> set[str]:
            # The messages first, as for one run: a duplicate is refused before any chat changes.
            try:
                if self.bulk:
                    messages, chats = self._messages.full_name, self._chats.full_name
                    written = self._write_together(
                        [InsertOne(d, namespace=messages) for d in inserts]
                        + [UpdateOne(f, u, namespace=chats) for f, u in counts],
                        session,
                    )
                    results = written.update_results
                    missing = {
                        run[0].chat_id
                        for i, run in enumerate(runs)
                        if not results[len(inserts) + i].matched_count
                    }
                else:
                    self._messages.insert_many(inserts, session=session)
                    result = self._chats.bulk_write(
                        [UpdateOne(f, u) for f, u in counts], ordered=True, session=session
                    )
                    missing = set()
                    if result.matched_count < len(runs):  # rare: look up which chats are gone
                        wanted = [run[0].chat_id for run in runs]
                        query = {"_id": {"$in": wanted}}
                        found = self._chats.find(query, {"_id": 1}, session=session)
                        missing = set(wanted) - {document["_id"] for document in found}
            except (BulkWriteError, ClientBulkWriteException) as exc:
                if session is None:  # a transaction's abort takes them back otherwise
                    self._take_back(inserts[: _refused_at(exc, len(inserts))])
                raise _Apart from exc
            if missing and session is not None:
                raise _Apart  # the abort takes everything back; each run then goes alone
            return missing

        try:
            missing = self._atomically(work)
        except _Apart:
            return [outcome.capture(self.append_messages, run) for run in runs]
        results: list[outcome.Outcome[list[Message]]] = []
        for run, stored in zip(runs, documents, strict=True):
            if run[0].chat_id in missing:  # its chat is gone: its messages alone are taken back
                self._take_back(stored)
                results.append(outcome.Error(NotFound(f"chat {run[0].chat_id}")))
            else:
                results.append(outcome.Value(list(run)))
        return results

    def _take_back(
        self, documents: Sequence[Document], session: ClientSession | None = None
    ) -> None:
        if documents:
            ids = [document["_id"] for document in documents]
            self._messages.delete_many({"_id": {"$in": ids}}, session=session)

    def _write_together(
        self,
        writes: Sequence[InsertOne[Document] | UpdateOne],
        session: ClientSession | None,
    ) -> ClientBulkWriteResult:
        """Writes to several collections in one round trip (the bulkWrite command of MongoDB
        8.0), in order, stopping at the first one refused."""
        return self._client.bulk_write(
            writes,
            session=session,
            ordered=True,
            verbose_results=True,
            # Inside a transaction its commit carries the write concern.
            write_concern=None if session is not None else _WRITE_CONCERN,
        )

    def get_message(self, message_id: str) -> Message | None:
        return self._one_message({"_id": message_id})

    def get_message_by_client_id(self, chat_id: str, client_msg_id: str) -> Message | None:
        return self._one_message({"chat_id": _eq(chat_id), "client_msg_id": _eq(client_msg_id)})

    def _one_message(self, query: Document) -> Message | None:
        found = self._one(self._messages, _MESSAGES, query)
        return None if found is None else self._with_marks(found.chat_id, [found])[0]

    def list_messages(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        documents = (
            self._messages.find({"chat_id": _eq(chat_id), "seq": {"$gt": after_seq}})
            .sort("seq", ASCENDING)
            .limit(limit)
        )
        return self._with_marks(chat_id, [_MESSAGES.decode(d) for d in documents])

    def _with_marks(self, chat_id: str, messages: list[Message]) -> list[Message]:
        """`messages` of one chat with the statuses its read marks give them (`_reads`)."""
        if not messages:
            return messages
        marks = _reads.marks_of(self._chats.find_one({"_id": chat_id}, {_reads.READS: 1}))
        return [_reads.with_marks(message, marks) for message in messages]

    def mark_messages(
        self,
        chat_id: str,
        reader_id: str,
        after_seq: int,
        up_to_seq: int,
        status: MessageStatus,
    ) -> None:
        self._mark(_reads.Receipt(chat_id, reader_id, after_seq, up_to_seq, status))

    def _mark(self, receipt: _reads.Receipt) -> None:
        if receipt.status == MessageStatus.SENT:  # every message is sent already
            if self._chats.find_one({"_id": receipt.chat_id}, {"_id": 1}) is None:
                raise NotFound(f"chat {receipt.chat_id}")
            return
        for condition, update in _following_on(receipt):
            if self._chats.update_one(condition, update).matched_count:
                return
        self._mark_from_the_chat(receipt)

    def mark_receipts(self, receipts: Sequence[_reads.Receipt]) -> list[outcome.Outcome[None]]:
        """Several chats' receipts, each as `mark_messages` would make it, in one update command
        for all of them: what the conversations of many chats asked while the previous write
        was in flight. If fewer matched than there are receipts (one needs a read first, a chat
        is gone), each is made again alone: a receipt made twice changes nothing more (its marks
        move by `$max`, and its unread count was cleared with nothing appended since, as the
        chat's conversation waits for its receipt before it appends)."""
        if (
            len(receipts) < 2
            or any(r.status == MessageStatus.SENT for r in receipts)
            or len({r.chat_id for r in receipts}) < len(receipts)
        ):
            return [outcome.capture(self._mark, r) for r in receipts]
        updates = [UpdateOne(c, u) for r in receipts for c, u in _following_on(r)]
        if self._chats.bulk_write(updates, ordered=False).matched_count == len(receipts):
            return [outcome.Value(None) for _ in receipts]
        return [outcome.capture(self._mark, r) for r in receipts]

    def _mark_from_the_chat(self, receipt: _reads.Receipt) -> None:
        """`mark_messages` for any other receipt: one naming a seq past the last message, or
        one whose `after_seq` is past its reader's mark, or to a chat that is gone."""
        chat_id, reader_id, status = receipt.chat_id, receipt.reader_id, receipt.status
        after_seq, up_to_seq = receipt.after_seq, receipt.up_to_seq
        chat = self._chats.find_one(
            {"_id": chat_id}, {"last_seq": 1, "customer_id": 1, _reads.READS: 1}
        )
        if chat is None:
            raise NotFound(f"chat {chat_id}")
        covered = _reads.marks_of(chat).get(_reads.reader_key(reader_id), _reads.Mark())
        # A mark covers only messages stored when it moves: later ones have higher seqs.
        up_to = min(up_to_seq, int(chat.get("last_seq", 0)))
        update: Document = {}
        if status == MessageStatus.SEEN:
            update = (
                _CLEAR_CUSTOMER_UNREAD if chat["customer_id"] == reader_id else _CLEAR_AGENT_UNREAD
            )
        if after_seq <= covered.covers(status):
            update = update | {"$max": _reads.moved(reader_id, status, up_to)}
            if not self._chats.update_one({"_id": chat_id}, update).matched_count:
                raise NotFound(f"chat {chat_id}")  # deleted since it was read
            return
        # A gap below `after_seq` that the mark does not cover: the messages' own statuses
        # rise, and the mark stays. Every condition in a shape nx-27017 answers in SQL, the
        # chat and seqs from its (chat_id, seq) index (see `_eq`, `_status_among`).
        unmarked = {
            "chat_id": _eq(chat_id),
            "seq": {"$gt": after_seq, "$lte": up_to},
            "sender_id": {"$ne": reader_id},
            "status": _status_among(_rules.statuses_below(status)),
        }

        def work(session: ClientSession | None) -> None:
            self._messages.update_many(
                unmarked, {"$set": {"status": status.value}}, session=session
            )
            if update:
                self._chats.update_one({"_id": chat_id}, update, session=session)

        self._atomically(work)

    # notifications

    def add_notification(self, notification: Notification) -> Notification:
        try:
            self._notifications.insert_one(_NOTIFICATIONS.encode(notification))
        except DuplicateKeyError as exc:
            raise StoreError(f"notification id {notification.id} already exists") from exc
        return notification

    def list_notifications(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[list[Notification], int]:
        documents = (
            self._notifications.find({"user_id": _eq(user_id)})
            .sort("_id", DESCENDING)
            .skip(offset)
            .limit(limit)
        )
        items = [_NOTIFICATIONS.decode(d) for d in documents]
        return items, self._notifications.count_documents({"user_id": _eq(user_id)})

    def count_unread_notifications(self, user_id: str) -> int:
        return self._notifications.count_documents({"user_id": _eq(user_id), "read": _eq(False)})

    def mark_notification_read(self, user_id: str, notification_id: str) -> bool:
        result = self._notifications.update_one(
            {"_id": notification_id, "user_id": user_id}, {"$set": {"read": True}}
        )
        return result.matched_count > 0

    def mark_all_notifications_read(self, user_id: str) -> int:
        return self._notifications.update_many(
            {"user_id": _eq(user_id), "read": _eq(False)}, {"$set": {"read": True}}
        ).modified_count

    def delete_notification(self, user_id: str, notification_id: str) -> bool:
        result = self._notifications.delete_one({"_id": notification_id, "user_id": user_id})
        return result.deleted_count > 0

    # routing and the activity log

    def record_routing(
        self,
        chats: Sequence[ChatRouting],
        agents: Sequence[AgentRouting],
        activity: Sequence[Activity],
        new_chats: Sequence[Chat],
        fence: int | None,
    ) -> None:
        batches = _activity_batches(activity)
        created = [_CHATS.encode(chat) for chat in new_chats]
        chat_fields = [(c.chat_id, _chat_routing_fields(c)) for c in chats]
        agent_fields = [(a.agent_id, _agent_routing_fields(a)) for a in agents]
        if fence is not None:
            journal = _Journal(fence, created, chat_fields, agent_fields, batches)
            self._commit_journal(journal)
            self._apply_journal(journal, fence)
            return

        def work(session: ClientSession | None) -> None:
            # The activity first: it is the only part the server can refuse (a reused id).
            self._insert_activity(batches, session)
            if created:
                self._insert_chats(created, session)
            if chat_fields:
                updates = [UpdateOne({"_id": i}, {"$set": f}) for i, f in chat_fields]
                self._chats.bulk_write(updates, session=session)
            if agent_fields:
                updates = [UpdateOne({"_id": i}, {"$set": f}) for i, f in agent_fields]
                self._users.bulk_write(updates, session=session)

        self._atomically(work)

    def claim_routing(self, holder: str) -> int:
        document = self._fences.find_one_and_update(
            {"_id": _ROUTING},
            {"$inc": {"token": 1}, "$set": {"holder": holder}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert document is not None  # an upsert returning the document after it
        token = int(document["token"])
        journal = document.get("journal")
        if journal is not None:
            self._apply_journal(_Journal.decode(journal), token)
        return token

    def _commit_journal(self, journal: _Journal) -> None:
        """The commit point of a fenced decision: one atomic compare-and-set of the token."""
        committed = self._fences.update_one(
            {"_id": _ROUTING, "token": journal.token}, {"$set": {"journal": journal.encode()}}
        )
        if not committed.matched_count:
            current = self._fences.find_one({"_id": _ROUTING}, {"token": 1})
            _rules.check_fence(journal.token, 0 if current is None else int(current["token"]))

    def _apply_journal(self, journal: _Journal, stamp: int) -> None:
        """Write a committed decision, stamping each document with `stamp`; a document that
        carries a later stamp was written by a later decision and is left alone. Running it
        again (a late holder, or a claim completing it) changes nothing more."""
        unstamped_or_older = {
            "$or": [{_FENCE_FIELD: {"$exists": False}}, {_FENCE_FIELD: {"$lte": stamp}}]
        }
        stamped = {_FENCE_FIELD: stamp}

        def work(session: ClientSession | None) -> None:
            self._insert_activity(journal.activity, session, again=True)
            if journal.created:
                self._insert_chats([c | stamped for c in journal.created], session, again=True)
            for collection, rows in ((self._chats, journal.chats), (self._users, journal.agents)):
                if rows:
                    # `$and`, not one filter document with `_id` beside `$or`: nx-27017 (the
                    # tests' server) drops the `_id` there and updates the first match instead.
                    updates = [
                        UpdateOne({"$and": [{"_id": i}, unstamped_or_older]}, {"$set": f | stamped})
                        for i, f in rows
                    ]
                    collection.bulk_write(updates, session=session)

        self._atomically(work)

    def _insert_chats(
        self, documents: list[Document], session: ClientSession | None, *, again: bool = False
    ) -> None:
        """Insert new chats; with `again`, chats stored before are skipped (a journal applied a
        second time)."""
        try:
            self._chats.insert_many(documents, ordered=not again, session=session)
        except BulkWriteError as exc:
            if not (again and _only_duplicates(exc)):
                raise StoreError("chat id already exists") from exc

    def append_activity(self, entries: Sequence[Activity]) -> None:
        batches = _activity_batches(entries)
        if batches:
            self._atomically(lambda session: self._insert_activity(batches, session))

    def _insert_activity(
        self,
        batches: dict[ActivityKind, list[Document]],
        session: ClientSession | None,
        *,
        again: bool = False,
    ) -> None:
        """Insert every entry or none; with `again`, entries stored before are skipped (a
        journal applied a second time)."""
        stored: list[tuple[Collection[Document], list[object]]] = []
        for kind, documents in batches.items():
            collection = self._activity[kind]
            try:
                collection.insert_many(documents, ordered=not again, session=session)
            except BulkWriteError as exc:
                if again:
                    if _only_duplicates(exc):
                        continue
                    raise _activity_refusal(exc) from exc
                if session is None:
                    # No transaction to abort: take back what this call stored. Ordered inserts
                    # stop at the refused entry, so exactly the ones before it went in.
                    done = documents[: exc.details["nInserted"]]
                    stored.append((collection, [d["_id"] for d in done]))
                    for taken, ids in stored:
                        taken.delete_many({"_id": {"$in": ids}})
                raise _activity_refusal(exc) from exc
            stored.append((collection, [d["_id"] for d in documents]))

    def list_activity(
        self, activity_filter: ActivityFilter, limit: int, cursor: str | None
    ) -> Page[Activity]:
        query = _activity_query(activity_filter)
        if cursor is not None:
            query["_id"] = {"$gt": cursor}
        # The first limit + 1 of each kind hold the first limit + 1 of all kinds together.
        runs = [
            list(collection.find(query).sort("_id", ASCENDING).limit(limit + 1))
            for collection in self._activity.values()
        ]
        merged = list(itertools.islice(heapq.merge(*runs, key=lambda d: d["_id"]), limit + 1))
        items = [_ACTIVITY.decode(d) for d in merged[:limit]]
        return Page(items=items, next_cursor=items[-1].id if len(merged) > limit else None)

    # accounts by email: credentials, one-time codes and the mail outbox

    def set_password(
        self, user_id: str, password_hash: str, at: datetime, kept_token_id: str | None
    ) -> User:
        document = self._users.find_one_and_update(
            {"_id": user_id},
            {
                "$set": {"password_hash": password_hash, "kept_token_id": kept_token_id}
                | _time_fields("updated_at", at),
                "$inc": {"token_generation": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            raise NotFound(f"user {user_id}")
        return _USERS.decode(document)

    def mark_email_verified(self, user_id: str, email: str, at: datetime) -> User | None:
        email = _rules.normalise_email(email)
        self._users.update_one(
            {"_id": user_id, "email": email, "email_verified_at" + _EXACT: None},
            {"$set": _time_fields("email_verified_at", at) | _time_fields("updated_at", at)},
        )
        user = self.get_user(user_id)
        return user if user is not None and user.email == email else None

    @staticmethod
    def _code_id(user_id: str, purpose: CodePurpose) -> str:
        return f"{user_id}:{purpose.value}"

    def issue_code(self, code: OneTimeCode, mail: Mail) -> None:
        document = {
            "_id": self._code_id(code.user_id, code.purpose),
            "digest": code.digest,
            "wrong_tries": code.wrong_tries,
        } | _time_fields("expires_at", code.expires_at)

        def work(session: ClientSession | None) -> None:
            # The mail first: it is the only part the server can refuse (a reused id). A crash
            # between the two sends a code that does not work, and the user asks again.
            self._insert_mail(mail, session)
            self._codes.replace_one(
                {"_id": document["_id"]}, document, upsert=True, session=session
            )

        self._atomically(work)

    def use_code(
        self, user_id: str, purpose: CodePurpose, digest: str, now: datetime, max_wrong_tries: int
    ) -> bool:
        live = {
            "_id": self._code_id(user_id, purpose),
            "expires_at" + _EXACT: {"$gt": _micros(now)},
            "wrong_tries": {"$lt": max_wrong_tries},
        }
        # Each is one atomic write on one document, so racing guesses are all counted.
        if self._codes.delete_one(live | {"digest": digest}).deleted_count:
            return True
        self._codes.update_one(live, {"$inc": {"wrong_tries": 1}})
        return False

    def _insert_mail(self, mail: Mail, session: ClientSession | None = None) -> None:
        try:
            self._mail.insert_one(_MAIL.encode(mail), session=session)
        except DuplicateKeyError as exc:
            raise StoreError(f"mail id {mail.id} already exists") from exc

    def queue_mail(self, mail: Mail) -> None:
        self._insert_mail(mail)

    def due_mail(self, before: datetime, limit: int) -> list[Mail]:
        documents = (
            self._mail.find(
                {"sent_at" + _EXACT: None, "next_attempt_at" + _EXACT: {"$lte": _micros(before)}}
            )
            .sort([("next_attempt_at" + _EXACT, ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [_MAIL.decode(d) for d in documents]

    def claim_mail(self, mail_id: str, seen: datetime, until: datetime) -> bool:
        claimed = self._mail.update_one(
            {
                "_id": mail_id,
                "sent_at" + _EXACT: None,
                "next_attempt_at" + _EXACT: _micros(seen),
            },
            {"$set": _time_fields("next_attempt_at", until)},
        )
        return claimed.modified_count == 1

    def mail_sent(self, mail_id: str, at: datetime) -> None:
        self._mail.update_one(
            {"_id": mail_id}, {"$set": {"text": "", "html": ""} | _time_fields("sent_at", at)}
        )

    def mail_failed(self, mail_id: str, error: str, retry_at: datetime) -> None:
        self._mail.update_one(
            {"_id": mail_id},
            {
                "$set": {"last_error": error} | _time_fields("next_attempt_at", retry_at),
                "$inc": {"attempts": 1},
            },
        )

    def list_mail(self, limit: int, cursor: str | None) -> Page[Mail]:
        return self._page(self._mail, _MAIL, {}, limit=limit, cursor=cursor, newest_first=True)


def _chat_routing_fields(change: ChatRouting) -> Document:
    return (
        {"status": change.status.value, "agent_id": change.agent_id}
        | _time_fields("queued_at", change.queued_at)
        | _time_fields("resolved_at", change.resolved_at)
        | _time_fields("updated_at", change.updated_at)
    )


def _agent_routing_fields(change: AgentRouting) -> Document:
    role = {} if change.role is None else {"role": change.role.value}
    return (
        {"status": change.status.value, "max_load": change.max_load}
        | role
        | _time_fields("updated_at", change.updated_at)
    )


@dataclass(frozen=True, slots=True)
class _Journal:
    """A fenced routing decision as the `fences` document keeps it until the next one."""

    token: int
    created: list[Document]  # new chats, whole
    chats: list[tuple[str, Document]]
    agents: list[tuple[str, Document]]
    activity: dict[ActivityKind, list[Document]]

    def encode(self) -> Document:
        return {
            "token": self.token,
            "created": self.created,
            "chats": [{"_id": i, "fields": f} for i, f in self.chats],
            "agents": [{"_id": i, "fields": f} for i, f in self.agents],
            "activity": [{"kind": k.value, "entries": d} for k, d in self.activity.items()],
        }

    @staticmethod
    def decode(document: Document) -> _Journal:
        return _Journal(
            token=int(document["token"]),
            created=document.get("created", []),
            chats=[(row["_id"], row["fields"]) for row in document["chats"]],
            agents=[(row["_id"], row["fields"]) for row in document["agents"]],
            activity={ActivityKind(b["kind"]): b["entries"] for b in document["activity"]},
        )


def _activity_batches(entries: Iterable[Activity]) -> dict[ActivityKind, list[Document]]:
    """The entries as documents, grouped by the collection of their kind."""
    batches: dict[ActivityKind, list[Document]] = {}
    ids: set[str] = set()
    for entry in entries:
        # Each kind has its own collection, so its unique _id cannot see a repeat across kinds.
        if entry.id in ids:
            raise StoreError(f"activity id {entry.id} given twice")
        ids.add(entry.id)
        batches.setdefault(entry.kind, []).append(_ACTIVITY.encode(entry))
    return batches


class _Apart(Exception):
    """Runs written together were refused: write each alone, so only the one at fault is."""


_CLEAR_CUSTOMER_UNREAD: Document = {"$set": {"customer_unread_count": 0}}
_CLEAR_AGENT_UNREAD: Document = {"$set": {"agent_unread_count": 0}}


def _following_on(receipt: _reads.Receipt) -> list[tuple[Document, Document]]:
    """A receipt of delivered or seen that follows on from its reader's mark (as a
    conversation's do) and names a stored message, as conditional updates of its chat of which
    at most one matches: its marks move with no read. For seen, the chat's customer_id in the
    condition says whose unread count it clears."""
    follows: Document = {"_id": receipt.chat_id, "last_seq": {"$gte": receipt.up_to_seq}}
    if receipt.after_seq > 0:
        field = _reads.mark_field(receipt.reader_id, receipt.status)
        follows[field] = {"$gte": receipt.after_seq}
    moved = {"$max": _reads.moved(receipt.reader_id, receipt.status, receipt.up_to_seq)}
    if receipt.status == MessageStatus.DELIVERED:
        return [(follows, moved)]
    return [
        (follows | {"customer_id": _eq(receipt.reader_id)}, moved | _CLEAR_CUSTOMER_UNREAD),
        (follows | {"customer_id": {"$ne": receipt.reader_id}}, moved | _CLEAR_AGENT_UNREAD),
    ]


def _counters(messages: Sequence[Message]) -> Document:
    """The update that counts a run of one chat's messages into its chat."""
    last = messages[-1]
    for_agent, for_customer = _rules.unread_added(messages)
    return {
        "$set": {"last_message_id": last.id, "last_seq": last.seq}
        | _time_fields("updated_at", last.created_at),
        "$inc": {"agent_unread_count": for_agent, "customer_unread_count": for_customer},
    }


def _first_write_error(exc: BulkWriteError | ClientBulkWriteException) -> tuple[int, int] | None:
    """Where an ordered bulk write stopped, and why: the index of its refused write (each one
    before it was applied) and the error code; None if no single write was refused."""
    errors = exc.details.get("writeErrors") or []
    if not errors:
        return None
    # The collection-level command says "index", the client-level one "idx".
    index = errors[0]["index"] if isinstance(exc, BulkWriteError) else errors[0]["idx"]
    return int(index), int(errors[0]["code"])


def _refused_at(exc: BulkWriteError | ClientBulkWriteException, writes: int) -> int:
    """How many of an ordered bulk write's `writes` were applied, at most (all of them may have
    been when the whole command failed)."""
    refused = _first_write_error(exc)
    return writes if refused is None else refused[0]


def _only_duplicates(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(error.get("code") == _DUPLICATE_KEY for error in errors)


def _activity_refusal(exc: BulkWriteError) -> StoreError:
    errors = exc.details.get("writeErrors", [])
    if _only_duplicates(exc):
        return StoreError(f"activity id {errors[0]['op']['_id']} already exists")
    return StoreError(f"MongoDB refused the activity: {errors or exc}")
