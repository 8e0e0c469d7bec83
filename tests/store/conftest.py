"""Fixtures for the store tests: `store` runs each contract test once per backend in BACKENDS.

The MongoDB backend runs against a wire-protocol server these tests start themselves (once per
session, a fresh database per test): as the server presents itself (a standalone, so no
transactions, and one command per collection), with transactions forced on, and with writes to
several collections as one bulkWrite command as on MongoDB 8.0 (which this server takes only
one at a time: see `_supports_bulk_write`, so not in the racing tests), so every write path of
MongoStore is checked.
With MONGODB_URL set, the suite runs against that real server too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext

import pytest

from store import MemoryStore, Store, open_sqlite_store
from tests.store.mongo_server import WireServer, fresh_mongo_store, running_wire_server

MONGODB_URL = os.environ.get("MONGODB_URL")


@pytest.fixture(scope="session")
def wire_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireServer]:
    with running_wire_server(tmp_path_factory.mktemp("nx-27017")) as server:
        yield server


def _memory(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    return nullcontext(MemoryStore())


def _sqlite(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    return open_sqlite_store(request.getfixturevalue("tmp_path") / "store.db")


def _mongodb(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    server: WireServer = request.getfixturevalue("wire_server")
    return fresh_mongo_store(server.url)


def _mongodb_transactions(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    server: WireServer = request.getfixturevalue("wire_server")
    return fresh_mongo_store(server.url, transactions=True)


def _mongodb_bulk_write(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    server: WireServer = request.getfixturevalue("wire_server")
    return fresh_mongo_store(server.url, bulk=True)


def _mongodb_url(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    assert MONGODB_URL is not None
    return fresh_mongo_store(MONGODB_URL)


# Every backend the contract suite runs against; a new backend is one more entry. Each entry
# takes what it needs from pytest (synchronously, so the session server starts outside trio)
# and gives a store to open for the test.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Store]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "mongodb": _mongodb,
    "mongodb-transactions": _mongodb_transactions,
    "mongodb-bulk-write": _mongodb_bulk_write,
}
if MONGODB_URL:
    BACKENDS["mongodb-url"] = _mongodb_url


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Store]:
    return BACKENDS[request.param](request)


@pytest.fixture
async def store(backend: AbstractAsyncContextManager[Store]) -> AsyncIterator[Store]:
    async with backend as opened:
        yield opened
