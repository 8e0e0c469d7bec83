"""`switchboard serve` in a subprocess on a fixed port, so a restart keeps the URL (launched and
stopped by tools/_server.py, as every tool's server is)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import trio

from tools._server import (
    START_SECONDS,
    STOP_SECONDS,
    Output,
    ServerFailed,
    descendants,
    exited,
    launch,
    stop,
)
from tools.chaos._plan import (
    CUSTOMER_SECRET,
    STAFF_SECRET,
    ChaosError,
)

# --- the server ----------------------------------------------------------------------------------


class ServerProcess:
    """`switchboard serve` in a subprocess, on a fixed port; its output goes to `log`."""

    def __init__(
        self,
        store_url: str,
        port: int,
        data_dir: Path,
        grace: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.store_url = store_url
        self._command = [
            sys.executable,
            "-m",
            "tools.cli",
            "serve",
            "--port",
            str(port),
            "--store",
            store_url,
            "--seed-if-empty",
        ]
        self._env = (
            os.environ
            | {
                "SWITCHBOARD_MODE": "development",
                "SWITCHBOARD_HOST": "127.0.0.1",
                "SWITCHBOARD_DATA_DIR": str(data_dir),
                "SWITCHBOARD_JWT_SECRET": STAFF_SECRET,
                "SWITCHBOARD_CUSTOMER_JWT_SECRET": CUSTOMER_SECRET,
                "SWITCHBOARD_GRACE_PERIOD_SECONDS": str(grace),
                # The clients are programs that send as fast as acks come back.
                "SWITCHBOARD_WS_MAX_FRAMES_PER_SECOND": "100000",
                "SWITCHBOARD_WS_FRAME_BURST": "100000",
            }
            | dict(env or {})
        )
        self.log_path = data_dir / "server.log"
        self._log: BinaryIO = self.log_path.open("ab")
        self._process: trio.Process | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        """Start and wait (bounded) for the "serving on" line."""
        self._log.write(b"\n--- start ---\n")
        try:
            launched = await launch(nursery, self._command, env=self._env, output=Output(self._log))
        except ServerFailed as exc:
            raise ChaosError(f"the server did not start; see {self.log_path}") from exc
        self._process = launched.process
        if launched.found != self.url:
            await self.kill()
            raise ChaosError(f"serving on {launched.found!r}, not {self.url}")

    def send_signal(self, signum: int) -> None:
        """SIGSTOP and SIGCONT, to freeze a node and let it run again."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL, and wait (bounded) until it is gone."""
        if self._process is not None:
            await stop(self._process, signal.SIGKILL)
        self._process = None

    async def kill_writer(self) -> None:
        """SIGKILL the server's SQLite writer process (its one child), and wait (bounded) until
        it is gone: the server starts another with its next write."""
        if self._process is None:
            raise ChaosError("the server is not running: no writer to kill")
        # The last one killed is replaced only by the next write, which acks of batches
        # committed before that kill may not have needed yet.
        with trio.move_on_after(START_SECONDS):
            while len(children := descendants(self._process.pid)) != 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        if len(children) != 1:
            raise ChaosError(f"the server has {len(children)} child processes, not one writer")
        try:
            os.kill(children[0], signal.SIGKILL)
        except ProcessLookupError:
            return
        await exited(children[0], STOP_SECONDS)

    def close(self) -> None:
        self._log.close()
