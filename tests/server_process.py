"""A real `switchboard serve` in a subprocess, for what only a process shows: its open file
handles (/proc/<pid>/fd) and how it stops on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import trio

from api._auth import ALGORITHM, CUSTOMER_TYP
from tests.conftest import TEST_CUSTOMER_SECRET, TEST_SECRET

START_SECONDS = 60


@dataclass
class ServerProcess:
    url: str
    process: trio.Process
    output: bytearray = field(default_factory=bytearray)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def open_files(self) -> int:
        """The server's open file handles."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    async def files_back_to(self, baseline: int, within: float) -> float:
        """Seconds until the open files are back to `baseline` (fails past `within`)."""
        started = trio.current_time()
        with trio.move_on_after(within):
            # The kernel's file table has no event to wait on: it is read again and again.
            while self.open_files() > baseline:  # noqa: ASYNC110
                await trio.sleep(0.05)
            return trio.current_time() - started
        raise AssertionError(
            f"{self.open_files()} open files after {within}s, {baseline} before; "
            f"server said: {self.output.decode()[-3000:]}"
        )

    def customer_token(self, customer_id: str) -> str:
        """A shop token, signed as the shop's own system would."""
        now = datetime.now(UTC)
        claims = {
            "sub": customer_id,
            "typ": CUSTOMER_TYP,
            "iat": now,
            "exp": now + timedelta(hours=1),
        }
        return jwt.encode(claims, TEST_CUSTOMER_SECRET, algorithm=ALGORITHM)


@asynccontextmanager
async def server_process(tmp_path: Path, **settings: str) -> AsyncIterator[ServerProcess]:
    """`switchboard serve` on a free port of 127.0.0.1, with SWITCHBOARD_<NAME> settings;
    stopped (SIGTERM, then killed) when the block ends unless the block stopped it."""
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_PORT": "0",
        "SWITCHBOARD_JWT_SECRET": TEST_SECRET,
        "SWITCHBOARD_CUSTOMER_JWT_SECRET": TEST_CUSTOMER_SECRET,
        "SWITCHBOARD_LOG_LEVEL": "warning",
        **{f"SWITCHBOARD_{name.upper()}": value for name, value in settings.items()},
    }
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tools.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    stdout = process.stdout
    output = bytearray()
    try:
        with trio.fail_after(START_SECONDS):
            while b"Press Ctrl-C to stop." not in output:
                chunk = await stdout.receive_some()
                assert chunk, output.decode()
                output += chunk
        url = output.decode().split("serving on ", 1)[1].split()[0]
        served = ServerProcess(url, process, output)
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                # The server must never block on a full pipe.
                while chunk := await stdout.receive_some():
                    output.extend(chunk)

            nursery.start_soon(drain)
            yield served
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with trio.fail_after(START_SECONDS):
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
