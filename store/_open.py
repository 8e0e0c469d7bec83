"""`open_store(url)`: the one place a store URL becomes a running backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from store._lock import single_process
from store._protocol import Backend, StoreError
from store.memory import MemoryStore
from store.mongo import open_mongo_store
from store.sqlite import open_sqlite_store

ACCEPTED_FORMS = (
    "'memory://', 'sqlite:///absolute/path.db', 'sqlite://relative/path.db'"
    " or 'mongodb://host/database' (also mongodb+srv://)"
)


@asynccontextmanager
async def open_store(
    url: str, *, existing: bool = False, beside_server: bool = False
) -> AsyncIterator[Backend]:
    """Open the backend `url` names, for the duration of the block. With `existing`, a store
    that is not there yet is refused (StoreError) instead of created: a source to copy from.

    A SQLite database is locked for the block: a second process opening it is refused, unless
    `beside_server` (a command's few writes while the server runs, such as `switchboard unlock`:
    SQLite's own locks order them with the server's; it runs no actors that the lock guards)."""
    scheme, separator, rest = url.partition("://")
    match (scheme, separator, rest):
        case ("memory", "://", ""):
            yield MemoryStore()
        case ("sqlite", "://", path) if path:
            database = Path(path)
            if existing:
                _must_exist(url, database)
            else:
                await trio.to_thread.run_sync(_make_folder, database)
            if beside_server:
                async with open_sqlite_store(database) as store:
                    yield store
                return
            with single_process(database):
                async with open_sqlite_store(database) as store:
                    yield store
        case ("mongodb" | "mongodb+srv", "://", rest) if rest:
            async with open_mongo_store(url, existing=existing) as store:
                yield store
        # Each new backend is one more case here.
        case _:
            raise ValueError(f"unknown store URL {url!r}; use {ACCEPTED_FORMS}")


def _must_exist(url: str, database: Path) -> None:
    if database.is_file():
        return
    hint = ""
    if url.startswith("sqlite:///") and not database.parent.exists():
        relative = url.removeprefix("sqlite:///")
        hint = f"; three slashes make an absolute path: for ./{relative} write sqlite://{relative}"
    raise StoreError(f"there is no SQLite database at {database} ({url}){hint}")


def _make_folder(database: Path) -> None:
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"cannot create the folder {database.parent} for the SQLite database: {error.strerror}"
        ) from error
