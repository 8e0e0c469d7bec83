"""The group-commit writer: `SqliteStore` runs every write through `GroupCommit`, each combined
write in one transaction: its statements on the event loop and its COMMIT (the fsync) in a worker
thread, or all of it in the thread when the loop cannot have it; reads go to a connection of
their own; and opening the database.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
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

LOOP_BATCH = 128
"""The most writes whose statements run on the event loop; a larger batch runs in the thread."""
LOOP_BUDGET = 0.010
"""How long a batch's statements may hold the event loop (seconds). Past it SQLite interrupts
them, the transaction is rolled back, and the batch runs again in the thread."""
_CLOCK_EVERY = 1_000
"""SQLite virtual-machine steps between two looks at the clock: a lone append is about 100."""
_BUSY_TIMEOUT_MS = 5_000
"""How long the thread waits for another process's lock (a CLI command's) before failing."""


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
        self._deadline = math.inf
        self._overran = False
        connection.set_progress_handler(self._past_deadline, _CLOCK_EVERY)

    async def _call(self, run: Callable[[Operations], R]) -> R:
        # A caller cancelled while it waits does not stop the operation: it may still be stored.
        if self._closed:
            raise _closed()
        return cast(R, await self._writes.write(run))

    async def _run_batch(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        # The worker thread takes the GIL back after every statement, and each time waits for the
        # event loop to let go of it: on the loop, a batch's statements are a few µs each, and
        # the thread takes the GIL twice a batch (README, Performance).
        if len(batch) <= LOOP_BATCH:
            results = self._statements_on_loop(batch)
            if results is not None:
                if not self._connection.in_transaction:
                    return results  # a lone refused write, rolled back
                failures: list[outcome.Outcome[Any]] = []
                await _in_thread(lambda: failures.extend(self._commit(batch)))
                return failures or results
        results = []
        await _in_thread(lambda: results.extend(self._transaction_in_thread(batch)))
        return results

    def _statements_on_loop(self, batch: list[_Write]) -> list[outcome.Outcome[Any]] | None:
        """The batch's statements, its transaction left open for COMMIT; None, with nothing
        written, when they must run in the thread instead: another connection holds the lock
        (the loop never waits for it) or they overran `LOOP_BUDGET`."""
        self._overran = False
        self._deadline = time.perf_counter() + LOOP_BUDGET
        try:
            results = self._statements(batch)
        except sqlite3.Error as exc:
            if self._overran or _busy(exc):
                self._roll_back()
                return None
            return self._failed(batch, exc)
        finally:
            self._deadline = math.inf
        if self._overran or any(
            _busy(r.error.__cause__) for r in results if isinstance(r, outcome.Error)
        ):
            self._roll_back()
            return None
        return results

    def _past_deadline(self) -> int:
        # SQLite's progress handler: a nonzero answer interrupts the statement running.
        if time.perf_counter() < self._deadline:
            return 0
        self._deadline = math.inf  # once: the rollback after it must run
        self._overran = True
        return 1

    def _commit(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        """COMMIT, in the thread: nothing on success, else the batch's failures. The results
        reach the callers only once COMMIT returned: what they see is durable."""
        try:
            try:
                self._connection.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                with self._waiting_for_locks():  # the transaction stays open: try again
                    self._connection.execute("COMMIT")
        except sqlite3.Error as exc:
            return self._failed(batch, exc)
        self.committed_transactions += 1
        return []

    def _transaction_in_thread(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        """The whole batch in the thread, which may wait for another process's lock."""
        connection = self._connection
        connection.set_progress_handler(None, 0)
        try:
            with self._waiting_for_locks():
                results = self._statements(batch)
                if connection.in_transaction:
                    connection.execute("COMMIT")
                    self.committed_transactions += 1
        except sqlite3.Error as exc:
            return self._failed(batch, exc)
        finally:
            connection.set_progress_handler(self._past_deadline, _CLOCK_EVERY)
        return results

    def _statements(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        """BEGIN and every operation in one transaction, each in a savepoint of its own (a lone
        one in the transaction alone), so one refusal fails only that one. Left open for COMMIT,
        one fsync for all; a lone refused one is rolled back."""
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        if len(batch) == 1:
            # Alone, the operation's transaction is its savepoint: two statements fewer (most
            # writes are lone ones).
            result = _run(batch[0], self._database)
            if isinstance(result, outcome.Error):
                connection.execute("ROLLBACK")
            return [result]
        return [self._run_one(run) for run in batch]

    def _roll_back(self) -> None:
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    def _failed(self, batch: list[_Write], exc: sqlite3.Error) -> list[outcome.Outcome[Any]]:
        if self._connection.in_transaction:
            # If even this fails the connection is unusable: the error goes to the caller.
            self._connection.execute("ROLLBACK")
        failures: list[outcome.Outcome[Any]] = []
        for _ in batch:
            failure = StoreUnavailable(f"the transaction failed: {exc}")
            failure.__cause__ = exc
            failures.append(outcome.Error(failure))
        return failures

    @contextmanager
    def _waiting_for_locks(self) -> Iterator[None]:
        # On the loop a locked database is answered at once (busy timeout 0), in the thread only
        # after waiting for it.
        self._connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        try:
            yield
        finally:
            self._connection.execute("PRAGMA busy_timeout = 0")

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


def _busy(exc: BaseException | None) -> bool:
    """Whether SQLite refused for a lock another connection holds."""
    return (
        isinstance(exc, sqlite3.OperationalError)
        and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )


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
        # Only here and in the writer's thread (`SqliteStore._waiting_for_locks`): on the event
        # loop a locked database is answered at once, and the batch goes to the thread.
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        _migrate(connection)
        connection.execute("PRAGMA busy_timeout = 0")
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
