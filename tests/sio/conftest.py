"""Fixtures for the Socket.IO interop tests: the stock client (installed once), and a driver
process per test talking to a live Switchboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Live
from tests.sio.node import NodeClients, node_clients
from tools._node import NodeMissing, install


@pytest.fixture(scope="session")
def node_modules() -> Path:
    try:
        return install()
    except NodeMissing as missing:
        print(f"\n*** SKIPPING the Socket.IO interop tests: {missing} ***")
        pytest.skip(str(missing))


@pytest.fixture
async def node(node_modules: Path, live: Live) -> AsyncIterator[NodeClients]:
    async with node_clients(node_modules, live.url) as clients:
        yield clients
