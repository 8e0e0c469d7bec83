"""`switchboard serve` in a subprocess on a fixed port, so a restart keeps the URL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import trio

from tools.chaos._plan import (
    _SERVING,
    CUSTOMER_SECRET,
    STAFF_SECRET,
    START_SECONDS,
    STOP_SECONDS,
    ChaosError,
)

# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
        process = await trio.lowlevel.open_process(
            self._command, stdout=subprocess.PIPE, stderr=self._log, env=self._env
        )
        self._process = process
        up = trio.Event()
        nursery.start_soon(self._read_output, process, up)
        with trio.move_on_after(START_SECONDS):
            await up.wait()
        if process.returncode is not None or not up.is_set() or not self._serving:
            await self.kill()
            raise ChaosError(f"the server did not start; see {self.log_path}")

    _serving = False

    async def _read_output(self, process: trio.Process, up: trio.Event) -> None:
        assert process.stdout is not None
        self._serving, pending = False, b""
        async with process.stdout:
            while chunk := await process.stdout.receive_some():
                self._log.write(chunk)
                pending += chunk
                if not up.is_set() and (found := _SERVING.search(pending)) is not None:
                    if found.group(1).decode() != self.url:
                        raise ChaosError(f"serving on {found.group(1)!r}, not {self.url}")
                    self._serving = True
                    up.set()
                pending = pending[-4096:]
        up.set()  # exited (or closed its output) without serving

    def send_signal(self, signum: int) -> None:
        """SIGSTOP and SIGCONT, to freeze a node and let it run again."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL, and wait (bounded) until it is gone."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        with trio.move_on_after(STOP_SECONDS) as waiting:
            waiting.shield = True
            await process.wait()
        self._process = None

    def close(self) -> None:
        self._log.close()
