"""`MongoStore`: the async façade over the operations, each call in a worker thread; and opening."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import outcome
import trio
from pymongo import (
    MongoClient,
    ReadPreference,
)

from store._facade import Facade, Operations
from store._group_commit import GroupCommit
from store._protocol import (
    StoreError,
)
from store._records import Message, MessageStatus
from store.mongo._client import (
    _connect,
    _is_nx_27017,
    _supports_bulk_write,
    _supports_transactions,
    _translated,
)
from store.mongo._operations import _Database
from store.mongo._reads import Receipt
from store.mongo._schema import (
    _CODEC_OPTIONS,
    _READ_CONCERN,
    _WRITE_CONCERN,
    DEFAULT_DATABASE,
    Document,
    _create_indexes,
)
from telemetry import redact_url

R = TypeVar("R")

# the store


class MongoStore(Facade):
    """The Store protocol over one MongoDB database. Make it with `open_mongo_store`."""

    def __init__(self, database: _Database, where: str) -> None:
        self._database = database
        self._where = where
        self._closed = False
        self.appends = GroupCommit(self._append_runs)
        """Appends of many chats made at once share a write (see `store._group_commit`)."""
        self.receipts = GroupCommit(self._mark_receipts)
        """And so do receipts."""

    @property
    def uses_transactions(self) -> bool:
        """Whether multi-document writes run in transactions (replica sets, sharded clusters)."""
        return self._database.transactions

    async def _call(self, run: Callable[[Operations], R]) -> R:
        if self._closed:
            raise StoreError("the store is closed")
        database = self._database
        with _translated(self._where):
            return await trio.to_thread.run_sync(lambda: run(database))

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        return await self.appends.write(messages)

    async def _append_runs(
        self, runs: list[Sequence[Message]]
    ) -> list[outcome.Outcome[list[Message]]]:
        # Shielded: a group commit's write is not cancellable (`to_thread`'s start is).
        with trio.CancelScope(shield=True):
            appended = await self._call(lambda _: self._database.append_runs(runs))
        return appended

    async def mark_messages(
        self,
        chat_id: str,
        *,
        reader_id: str,
        up_to_seq: int,
        status: MessageStatus,
        after_seq: int = 0,
    ) -> None:
        await self.receipts.write(Receipt(chat_id, reader_id, after_seq, up_to_seq, status))

    async def _mark_receipts(self, receipts: list[Receipt]) -> list[outcome.Outcome[None]]:
        # Receipts are off the messages' path: they let an append write in flight go first,
        # so that a server running one command at a time does not hold messages behind them.
        # Shielded: a group commit's write is not cancellable.
        with trio.CancelScope(shield=True):
            await self.appends.after_write_in_flight()
            marked = await self._call(lambda _: self._database.mark_receipts(receipts))
        return marked

    def _close(self) -> None:
        self._closed = True


def _prepare(
    client: MongoClient[Document],
    transactions: bool | None,
    existing: bool = False,
    bulk: bool | None = None,
) -> _Database:
    name = client.get_default_database(DEFAULT_DATABASE).name
    if existing and name not in client.list_database_names():
        raise StoreError(f"there is no database {name!r} on this MongoDB server")
    database = client.get_database(
        name,
        codec_options=_CODEC_OPTIONS,
        read_preference=ReadPreference.PRIMARY,
        write_concern=_WRITE_CONCERN,
        read_concern=_READ_CONCERN,
    )
    nx_27017 = _is_nx_27017(client)
    # nx-27017 accepts an index with _id among its keys and then refuses every insert into
    # the collection ("JSON path error near '_id'").
    _create_indexes(database, with_id=not nx_27017)
    if transactions is None:
        transactions = _supports_transactions(client)
    if bulk is None:
        bulk = _supports_bulk_write(client, nx_27017)
    return _Database(client, database, transactions, bulk)


@asynccontextmanager
async def open_mongo_store(
    url: str,
    *,
    transactions: bool | None = None,
    existing: bool = False,
    bulk: bool | None = None,
) -> AsyncIterator[MongoStore]:
    """Connect to the MongoDB `url` names (its database, or `switchboard`), create the indexes,
    and keep the connection until exit; calls made after it raise StoreError.

    An unreachable server raises StoreUnavailable within serverSelectionTimeoutMS (the URL's,
    or SERVER_SELECTION_TIMEOUT_MS). `transactions` is decided from the server's type unless
    given (tests use it to run both ways against one server), and so is `bulk`, whether a write
    to several collections (a message and its chat) goes as one bulkWrite command (MongoDB 8.0
    and later) or one command per collection. With `existing`, a database
    that is not there yet is refused (StoreError) rather than created.
    """
    where = redact_url(url)
    client = await trio.to_thread.run_sync(_connect, url, where)
    try:
        with _translated(where):
            database = await trio.to_thread.run_sync(_prepare, client, transactions, existing, bulk)
        store = MongoStore(database, where)
        try:
            yield store
        finally:
            store._close()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(client.close)
