"""`switchboard backup FILE`: a consistent copy of the SQLite database while the server runs.

SQLite's online backup API copies the database as one snapshot through a read-only connection
of its own: in WAL mode a reader never blocks the server's writer, and the copy holds every
transaction committed before it started. The copy is written beside FILE and renamed into
place, so FILE is either the whole backup or absent. MongoDB has its own tools (mongodump).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from store import StoreError


def sqlite_path(store_url: str) -> Path:
    scheme, _, path = store_url.partition("://")
    if scheme != "sqlite" or not path:
        raise ValueError(
            "switchboard backup copies a SQLite store; for MongoDB use mongodump "
            "(README, Running in production)"
        )
    return Path(path)


def backup(database: Path, target: Path) -> str:
    """Copy `database` to `target`; a line saying what was copied."""
    if not database.is_file():
        raise StoreError(f"there is no SQLite database at {database}")
    if target.exists():
        raise ValueError(f"{target} exists already; give a new file name")
    partial = target.with_name(target.name + ".partial")
    started = time.perf_counter()
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise StoreError(f"cannot read {database}: {error}") from error
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)  # one step: one consistent snapshot
            (pages,) = copy.execute("PRAGMA page_count").fetchone()
            (page_size,) = copy.execute("PRAGMA page_size").fetchone()
        finally:
            copy.close()
    except sqlite3.Error as error:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot back up {database} to {target}: {error}") from error
    finally:
        source.close()
    partial.rename(target)
    size = pages * page_size / 2**20
    seconds = time.perf_counter() - started
    return f"backup: {database} -> {target}, {pages:,} pages ({size:,.1f} MiB) in {seconds:.2f} s"
