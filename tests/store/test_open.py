"""`open_store(url)`: which URLs give which backend, and a clear refusal for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from store import MemoryStore, MongoStore, SqliteStore, open_store
from store.mongo import drop_database
from tests.store.factories import user
from tests.store.mongo_server import WireServer, fresh_database_url


async def test_memory_url_gives_a_memory_store() -> None:
    async with open_store("memory://") as store:
        assert isinstance(store, MemoryStore)
        created = await store.create_user(user())
        assert await store.get_user(created.id) == created


async def test_absolute_sqlite_url_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "switchboard.db"
    async with open_store(f"sqlite://{path}") as store:
        assert isinstance(store, SqliteStore)
        await store.create_user(user(email="ada@example.com"))
    assert path.is_file()
    async with open_store(f"sqlite://{path}") as store:
        assert await store.get_user_by_email("ada@example.com") is not None


async def test_relative_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite://data/switchboard.db") as store:
        assert isinstance(store, SqliteStore)
    assert (tmp_path / "data" / "switchboard.db").is_file()


async def test_mongodb_url_gives_a_mongo_store_on_the_database_it_names(
    wire_server: WireServer,
) -> None:
    url = fresh_database_url(wire_server.url)
    try:
        async with open_store(url) as store:
            assert isinstance(store, MongoStore)
            created = await store.create_user(user(email="ada@example.com"))
        async with open_store(url) as store:
            assert await store.get_user_by_email("ada@example.com") == created
    finally:
        drop_database(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "memory",
        "memory://extra",
        "sqlite://",
        "sqlite:/x.db",
        "mongodb://",
        "postgres://db/x",
        "store.db",
    ],
)
async def test_other_urls_are_refused_naming_the_accepted_forms(url: str) -> None:
    with pytest.raises(ValueError, match=r"'memory://', 'sqlite:///absolute/path\.db'"):
        async with open_store(url):
            pass
