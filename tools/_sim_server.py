"""A Switchboard the load simulator starts itself (`loadsim --spawn`): `switchboard serve` in a
subprocess on 127.0.0.1, a free port and a fresh SQLite store in a temporary folder, seeded so
the demo admin can create the simulated agents. Stopped with SIGINT (killed if it lingers)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tools._server import running


@dataclass(frozen=True, slots=True)
class Spawned:
    url: str
    pid: int
    log: Path


@asynccontextmanager
async def spawn_server(folder: Path) -> AsyncIterator[Spawned]:
    log_path = folder / "server.log"
    command = [
        sys.executable, "-m", "tools.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--mode", "development", "--seed-if-empty", "--data-dir", str(folder),
        "--store", f"sqlite:///{folder / 'loadsim.db'}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        async with running(command, env=os.environ, log=log, stop_signal=signal.SIGINT) as launched:
            yield Spawned(launched.found, launched.pid, log_path)
