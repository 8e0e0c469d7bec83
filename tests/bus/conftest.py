"""A Valkey per test session for the bus tests, and a fresh database number per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bus import Bus, open_bus
from tests.valkey_server import Valkey, running_valkey


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Valkey]:
    with running_valkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture
async def bus(valkey: Valkey) -> AsyncIterator[Bus]:
    async with open_bus(valkey.url, call_seconds=2.0) as opened:
        await opened.client.flushdb()
        yield opened


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[Valkey]:
    """A server of this test's own, for tests that kill it."""
    with running_valkey(tmp_path / "valkey") as server:
        yield server
