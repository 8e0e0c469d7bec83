"""The SQLite writer's synchronous side: opening the database, running one batch of operations
in one transaction, and the answers' wire form. No trio here: it runs in the writer process
(`_child`), which imports only the standard library and the store's records.
"""

from __future__ import annotations

import pickle
import sqlite3
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from store._protocol import StoreError, StoreUnavailable
from store._records import utcnow
from store.sqlite._operations import _Database
from store.sqlite._schema import _MIGRATIONS, SCHEMA_VERSION

Call = tuple[str, tuple[Any, ...]]
"""One operation: the name of an `Operations` method and its arguments by position."""

Result = tuple[bool, Any]
"""One operation's answer: (True, what it returned) or (False, what it raised)."""

_OUTCOMES_KEPT_SECONDS = 86_400
"""How long a store's last answer is kept without a newer one: a store that has not written for
that long has no batch in flight (a server writes its row with each batch)."""

HEADER = struct.Struct(">I")
"""Each frame's length, before its pickle."""


def encode(value: object) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def portable(error: BaseException) -> BaseException:
    """`error`, if it survives pickling (its class rebuilt from its arguments); else a
    StoreError saying what it was, so the caller still learns of it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return StoreError(f"{type(error).__name__}: {error}")
    return error


class Writer:
    """The writing connection of the store `owner` (a number the store draws at random), and how
    a batch runs on it."""

    def __init__(self, connection: sqlite3.Connection, owner: int) -> None:
        self._connection = connection
        self._database = _Database(connection)
        self._owner = owner

    def run(self, batch: int, calls: Sequence[Call]) -> bytes:
        """Run batch number `batch` in one transaction: each operation in a savepoint of its own
        (a lone one in the transaction alone), so one refusal fails only that one, and one
        COMMIT (one fsync) for all. Its answer, pickled: whether it committed, and each
        operation's result. A committed batch's answer is stored in its own transaction, so
        `outcome` can give it again if it never reached the server."""
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            if len(calls) == 1:
                # Alone, the operation's transaction is its savepoint: two statements fewer
                # (most writes are lone ones).
                results = [self._run(calls[0])]
                if not results[0][0]:
                    connection.execute("ROLLBACK")
                    return _answer(False, results)
            else:
                results = [self._run_in_savepoint(call) for call in calls]
            answer = _answer(True, results)
            connection.execute(
                "INSERT OR REPLACE INTO writer_outcome VALUES (?, ?, ?, ?)",
                (self._owner, batch, answer, time.time()),
            )
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                # If even this fails the connection is unusable: the error goes to the caller.
                connection.execute("ROLLBACK")
            return _answer(False, [(False, _unavailable(exc)) for _ in calls])
        # The answer leaves only now that COMMIT returned: what the callers see is durable.
        return answer

    def run_pickled(self, batch: int, count: int, pickled: bytes) -> bytes:
        """`run` on the `count` calls pickled in `pickled`; calls that cannot be unpickled here
        (a class the writer cannot import) refuse the batch."""
        try:
            calls = pickle.loads(pickled)
        except Exception as exc:
            refusal = StoreError(
                f"the writer could not read the batch: {type(exc).__name__}: {exc}"
            )
            return encode((False, [(False, refusal)] * count))
        return self.run(batch, calls)

    def outcome(self, batch: int) -> bytes | None:
        """Batch `batch`'s answer if it was this store's last committed; None if it was not
        committed."""
        row = self._connection.execute(
            "SELECT answer FROM writer_outcome WHERE owner = ? AND batch = ?", (self._owner, batch)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self._connection.close()

    def _run_in_savepoint(self, call: Call) -> Result:
        connection = self._connection
        connection.execute("SAVEPOINT operation")
        result = self._run(call)
        if not result[0]:
            connection.execute("ROLLBACK TO operation")
        connection.execute("RELEASE operation")
        return result

    def _run(self, call: Call) -> Result:
        """The operation's result, or what it raised: a refusal by the database as a
        StoreError."""
        name, arguments = call
        try:
            return True, getattr(self._database, name)(*arguments)
        except sqlite3.Error as exc:
            failure = StoreError(f"the database refused the operation: {exc}")
            failure.__cause__ = exc
            return False, failure
        except Exception as exc:
            return False, exc


def _answer(committed: bool, results: Sequence[Result]) -> bytes:
    portable_results = [(ok, value if ok else portable(value)) for ok, value in results]
    try:
        return encode((committed, portable_results))
    except Exception as exc:  # a value that cannot be pickled: a bug, but the callers must hear
        error = StoreUnavailable(f"the writer could not send its answer: {exc}")
        return encode((committed, [(False, error) for _ in results]))


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    failure = StoreUnavailable(f"the transaction failed: {exc}")
    failure.__cause__ = exc
    return failure


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """The writing connection: the file made WAL and migrated. Without `create`, a file that is
    not there is refused: a writer that replaces one that died must not start an empty
    database in place of one deleted meanwhile."""
    try:
        if create:
            connection = sqlite3.connect(path, isolation_level=None)
        else:
            uri = f"{path.resolve().as_uri()}?mode=rw"
            connection = sqlite3.connect(uri, uri=True, isolation_level=None)
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
        migrate(connection)
        # The last answers of stores long closed (each server start, each command, makes one).
        connection.execute(
            "DELETE FROM writer_outcome WHERE at < ?", (time.time() - _OUTCOMES_KEPT_SECONDS,)
        )
    except sqlite3.Error as exc:
        connection.close()
        raise StoreError(f"cannot use the SQLite database {path}: {exc}") from exc
    except BaseException:
        connection.close()
        raise
    return connection


def connect_reader(path: Path) -> sqlite3.Connection:
    """A connection for reads, after `connect` made the file WAL and migrated it."""
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


def migrate(connection: sqlite3.Connection) -> None:
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
