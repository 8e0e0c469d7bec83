"""A Switchboard the load simulator starts itself (`loadsim --spawn`): `switchboard serve` in a
subprocess on 127.0.0.1, a free port and a fresh SQLite store in a temporary folder, seeded so
the demo admin can create the simulated agents. Stopped with SIGINT (killed if it lingers)."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import trio

START_SECONDS = 60.0
STOP_SECONDS = 15.0
_SERVING = re.compile(rb"serving on (http://\S+)")


class SpawnFailed(Exception):
    """The server did not start; the message ends with the tail of its log."""


@dataclass(frozen=True, slots=True)
class Spawned:
    url: str
    pid: int
    log: Path


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one (a connection is a file, on both
    ends); the spawned server inherits it. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def rss_kib(pid: int) -> int | None:
    """The process's resident set size (VmRSS), or None where /proc does not tell."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else None


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, every thread) of `pid`, or of this process for None; None
    where /proc does not tell."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime are fields 14 and 15 of stat(5), counted after the command's ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@asynccontextmanager
async def spawn_server(folder: Path) -> AsyncIterator[Spawned]:
    log_path = folder / "server.log"
    command = [
        sys.executable, "-m", "tools.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--mode", "development", "--seed-if-empty", "--data-dir", str(folder),
        "--store", f"sqlite:///{folder / 'loadsim.db'}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=log, env=dict(os.environ)
        )
        assert process.stdout is not None
        try:
            url = await _served_url(process.stdout, log, log_path)
            async with trio.open_nursery() as nursery:
                # Keep reading what the server prints, so a full pipe never stalls it.
                nursery.start_soon(_copy, process.stdout, log)
                yield Spawned(url, process.pid, log_path)
                await _stop(process)
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process)


async def _served_url(stdout: trio.abc.ReceiveStream, log: BinaryIO, log_path: Path) -> str:
    seen = b""
    with trio.move_on_after(START_SECONDS) as waiting:
        while (found := _SERVING.search(seen)) is None:
            chunk = await stdout.receive_some()
            log.write(chunk)
            if not chunk:
                log.flush()
                raise SpawnFailed(f"the server exited as it started:\n{_tail(log_path)}")
            seen += chunk
        return found.group(1).decode()
    assert waiting.cancelled_caught
    log.flush()
    raise SpawnFailed(f"the server did not start within {START_SECONDS:.0f}s:\n{_tail(log_path)}")


async def _copy(stdout: trio.abc.ReceiveStream, log: BinaryIO) -> None:
    while chunk := await stdout.receive_some():
        log.write(chunk)


async def _stop(process: trio.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    with trio.move_on_after(STOP_SECONDS):
        await process.wait()
        return
    process.kill()
    await process.wait()
