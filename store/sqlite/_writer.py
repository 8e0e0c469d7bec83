"""`SqliteStore`: every write goes through `GroupCommit`, each combined write one transaction in
the writer process (`_process`); reads go to a connection of their own, in a worker thread.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import outcome
import trio

from store._facade import Facade, Operations
from store._group_commit import GroupCommit
from store._protocol import StoreError, StoreUnavailable
from store.sqlite._operations import _Database
from store.sqlite._process import WriterGone, WriterProcess, start_writer
from store.sqlite._transaction import Call, Result, connect_reader
from telemetry import store_writer_ended

R = TypeVar("R")
_Write = Callable[[Operations], Any]

_ATTEMPTS = 5
"""How many writers in a row a batch is sent to (or started for it) before its caller hears
that the writer keeps dying: then, only, a write's outcome is unknown."""


def _closed() -> StoreError:
    return StoreError("the store is closed")


@dataclass(frozen=True, slots=True)
class _Recorded:
    call: Call


class _Recorder:
    """Stands in for `Operations` to turn a facade write, `lambda db: db.method(arguments)`, into
    the call the writer process runs."""

    def __getattr__(self, name: str) -> Callable[..., _Recorded]:
        return lambda *arguments: _Recorded((name, arguments))


_RECORDER = cast(Operations, _Recorder())


def _recorded(run: _Write) -> Call:
    recorded = run(_RECORDER)
    if not isinstance(recorded, _Recorded):
        raise TypeError("a SQLite write must be one call of an Operations method")
    return recorded.call


class SqliteStore(Facade):
    """The Store protocol over one SQLite file. Make it with `open_sqlite_store`."""

    def __init__(
        self, path: Path, owner: int, writer: WriterProcess, reader: sqlite3.Connection
    ) -> None:
        self._path = path
        self._owner = owner
        self._writer = writer
        self._reader = _Database(reader)
        self._reading = trio.Lock()  # one connection runs one statement at a time
        self._closed = False
        self._writes = GroupCommit(self._run_batch)
        self._batches = 0
        """Each batch's number names it to the next writer if its own dies."""
        self.committed_transactions = 0
        """How many batches have been committed; with group commit, fewer than the writes."""

    @property
    def writer_pid(self) -> int:
        """The writer process's id (a new one after it was replaced)."""
        return self._writer.pid

    async def _call(self, run: Callable[[Operations], R]) -> R:
        # A caller cancelled while it waits does not stop the operation: it may still be stored.
        if self._closed:
            raise _closed()
        return cast(R, await self._writes.write(run))

    async def _run_batch(self, batch: list[_Write]) -> list[outcome.Outcome[Any]]:
        calls = [_recorded(run) for run in batch]
        self._batches += 1
        committed, results = await self._exchange(self._batches, calls)
        if committed:
            self.committed_transactions += 1
        return [outcome.Value(value) if ok else outcome.Error(value) for ok, value in results]

    async def _exchange(self, number: int, calls: list[Call]) -> tuple[bool, list[Result]]:
        """Batch `number`'s answer. A writer that dies before answering is replaced and the
        batch sent again: the new writer answers it from the database if the dead one committed
        it, or runs it. So its callers see what a thread's would, a result or a refusal, and
        StoreUnavailable still means nothing was stored: what the routing relies on."""
        attempt = 1
        while True:
            try:
                writer = await self._live_writer()
                return await writer.exchange(number, calls, again=attempt > 1)
            except WriterGone as exc:
                if attempt == _ATTEMPTS:
                    raise StoreUnavailable(
                        f"{exc}, {_ATTEMPTS} times in a row: the write may or may not be stored"
                    ) from exc
            except StoreError as exc:
                if attempt == 1:
                    raise  # sent to no writer: nothing stored
                raise StoreUnavailable(
                    f"{exc}, after the batch's writer died: the write may or may not be stored"
                ) from exc
            attempt += 1

    async def _live_writer(self) -> WriterProcess:
        """The writer, or a new one if it has ended. Not cancellable, as the batch's
        exchange."""
        writer = self._writer
        if writer.alive:
            return writer
        store_writer_ended(writer.pid, writer.exit_code)
        await writer.aclose()
        self._writer = await start_writer(self._path, self._owner, create=False)
        return self._writer

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


@asynccontextmanager
async def open_sqlite_store(path: Path) -> AsyncIterator[SqliteStore]:
    """Open (creating or migrating) the database at `path` and run its writer until exit.

    On exit, operations already queued still run; calls made after it raise StoreError.
    """
    # The store's number in the database's table of last answers (`_transaction.Writer`).
    owner = secrets.randbits(62)
    writer = await start_writer(path, owner, create=True)
    try:
        reader = await trio.to_thread.run_sync(connect_reader, path)
    except BaseException:
        await writer.aclose()
        raise
    store = SqliteStore(path, owner, writer, reader)
    try:
        yield store
    finally:
        store._close()
        with trio.CancelScope(shield=True):
            # Writes asked for before the close are made by their callers: wait for them.
            await store._writes.idle()
            await trio.to_thread.run_sync(reader.close)
            await store._writer.aclose()
