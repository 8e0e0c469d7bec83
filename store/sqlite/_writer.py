"""The group-commit writer: `SqliteStore` runs every write through `GroupCommit`, each combined
write in one transaction in a worker thread; reads go to a connection of their own; and opening
the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import outcome
import trio

from store._facade import Facade, Operations
from store._group_commit import GroupCommit
from store._protocol import (
    StoreError,
    StoreUnavailable,
)
from store._records import (
    utcnow,
)
from store.sqlite._operations import _Database
from store.sqlite._schema import _MIGRATIONS, SCHEMA_VERSION

R = TypeVar("R")
_Write = Callable[[Operations], Any]


def _closed() -> StoreError:
    return StoreError("the store is closed")


class SqliteStore(Facade):
    """The Store protocol over one SQLite file. Make it with `open_sqlite_store`."""

    def __init__(self, connection: sqlite3.Connection, reader: sqlite3.Connection) -> None:
        self._connection = connection
        self._database = _Database(connection)
        self._reader = _Database(reader)
        self._reading = trio.Lock()  # one connection runs one statement at a time
        self._closed = False
        self._writes = GroupCommit(self._run_batch)
        self.committed_transactions = 0
        """How many batches have been committed; with group commit, fewer than the writes."""

    async def _call(self, run: Callable[[Operations], R]) -> R:
        # A caller cancelled while it waits does not stop the operation: it may still be stored.
        if self._closed:
            raise _closed()
        return cast(R, await self._writes.write(run))

    async def _run_batch(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        results: list[outcome.Outcome[Any]] = []
        await _in_thread(lambda: results.extend(self._transaction(batch)))
        return results

    def _transaction(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        """The whole batch in one transaction: each operation in a savepoint of its own (a lone
        one in the transaction alone), so one refusal fails only that one, and one COMMIT (one
        fsync) for all."""
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                # Alone, the operation's transaction is its savepoint: two statements fewer, each
                # a wait for the GIL while the event loop holds it (most writes are lone ones).
                results = [_run(batch[0], self._database)]
                if isinstance(results[0], outcome.Error):
                    connection.execute("ROLLBACK")
                    return results
            else:
                results = [self._run_one(run) for run in batch]
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                # If even this fails the connection is unusable: the error goes to the caller.
                connection.execute("ROLLBACK")
            failures: list[outcome.Outcome[Any]] = []
            for _ in batch:
                failure = StoreUnavailable(f"the transaction failed: {exc}")
                failure.__cause__ = exc
                failures.append(outcome.Error(failure))
            return failures
        # The results reach the callers only now that COMMIT returned: what they see is durable.
        self.committed_transactions += 1
        return results

    def _run_one(self, run: _Write) -> outcome.Outcome[Any]:
        connection = self._connection
        connection.execute("SAVEPOINT operation")
        result = _run(run, self._database)
        if isinstance(result, outcome.Error):
            connection.execute("ROLLBACK TO operation")
        connection.execute("RELEASE operation")
        return result

    async def _read(self, run: Callable[[Operations], R]) -> R:
        """Reads skip the writes' group commit, so they never wait for a commit's fsync: in WAL mode
        they run on their own connection beside the writer, and each sees every write that was
        acknowledged before it started."""
        if self._closed:
            raise _closed()
        async with self._reading:
            try:
                return await trio.to_thread.run_sync(run, self._reader)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the database could not be read: {exc}") from exc

    def _close(self) -> None:
        self._closed = True


def _run(run: _Write, database: _Database) -> outcome.Outcome[Any]:
    """The operation's result, or what it raised: a refusal by the database as a StoreError."""
    try:
        return outcome.Value(run(database))
    except Exception as exc:
        if isinstance(exc, sqlite3.Error):
            failure = StoreError(f"the database refused the operation: {exc}")
            failure.__cause__ = exc
            return outcome.Error(failure)
        return outcome.Error(exc)


async def _in_thread(run: Callable[[], None]) -> None:
    """Run `run` in a thread of trio's cache and wait for it, never abandoning it: not
    cancellable, as `GroupCommit` needs of its writes (cancelled, the wait goes on until it
    returns). What `trio.to_thread.run_sync` does here, without its capacity limiter, whose
    acquire is a trip through the scheduler for every batch, and without copying the context."""
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: outcome.Outcome[None]) -> None:
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    # Unnamed: a name is set on the thread and reset after it, two foreign calls a batch.
    trio.lowlevel.start_thread_soon(run, deliver)
    await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the SQLite database {path}: {exc}") from exc
    try:
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"cannot put {path} in WAL mode (it stays in {mode!r} mode)")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        # Another process (a CLI command) may hold the lock for a moment; wait rather than fail.
        connection.execute("PRAGMA busy_timeout = 5000")
        _migrate(connection)
    except sqlite3.Error as exc:
        connection.close()
        raise StoreError(f"cannot use the SQLite database {path}: {exc}") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def _connect_reader(path: Path) -> sqlite3.Connection:
    """A second connection for reads, after `_connect` made the file WAL and migrated it."""
    try:
        reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the SQLite database {path} for reading: {exc}") from exc
    try:
        reader.execute("PRAGMA query_only = ON")
        reader.execute("PRAGMA busy_timeout = 5000")
    except BaseException:
        reader.close()
        raise
    return reader


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION, and drop revocations nobody can present any more."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read under the write lock, so two processes starting together cannot both migrate.
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {version}; this program knows up to"
                f" {SCHEMA_VERSION}"
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        _Database(connection).prune_revoked_tokens(utcnow())
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


@asynccontextmanager
async def open_sqlite_store(path: Path) -> AsyncIterator[SqliteStore]:
    """Open (creating or migrating) the database at `path` and run its writer until exit.

    On exit, operations already queued still run; calls made after it raise StoreError.
    """
    connection = await trio.to_thread.run_sync(_connect, path)
    try:
        reader = await trio.to_thread.run_sync(_connect_reader, path)
    except BaseException:
        connection.close()
        raise
    try:
        store = SqliteStore(connection, reader)
        try:
            yield store
        finally:
            store._close()
    finally:
        with trio.CancelScope(shield=True):
            # Writes asked for before the close are made by their callers: wait for them.
            await store._writes.idle()
            await trio.to_thread.run_sync(reader.close)
            await trio.to_thread.run_sync(connection.close)
