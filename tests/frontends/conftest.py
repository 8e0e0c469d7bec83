"""Fixtures for the original front ends' replays: a live Switchboard that allows their four
origins (as a team moving over would set SWITCHBOARD_ALLOWED_ORIGINS), and the stock Node
Socket.IO client of tests/sio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Live, make_settings, running_server
from tests.frontends.browser import ORIGINS
from tests.sio.conftest import node, node_modules

__all__ = ["live", "node", "node_modules"]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    settings = make_settings(tmp_path, allowed_origins=list(ORIGINS.values()))
    async with running_server(settings) as server:
        yield server
