"""Servers in subprocesses, for every tool that starts its own (chaos, `loadsim --spawn`, the
benchmarks): start a command, wait (bounded) for the line that says it is ready and what follows
it (a URL, a file), keep copying its output so a full pipe never stalls it, and stop it with a
signal (bounded, then SIGKILL). Also what the tools measure of such a process from /proc."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import trio

START_SECONDS = 60.0  # from exec to the ready line
STOP_SECONDS = 15.0  # from the stop signal to the exit, before SIGKILL
SERVING = "serving on "
"""What `switchboard serve` prints, followed by its URL, once it accepts connections."""


class ServerFailed(Exception):
    """The server did not start; the message ends with the last lines of its output."""


@dataclass(frozen=True, slots=True)
class Launched:
    process: trio.Process
    found: str  # what followed the ready marker

    @property
    def pid(self) -> int:
        return self.process.pid


class Output:
    """Where a server's output goes: its log file, if any, and the last lines, kept to explain a
    failure."""

    def __init__(self, log: BinaryIO | None = None, lines: int = 40) -> None:
        self.log = log
        self._tail: deque[bytes] = deque(maxlen=lines)
        self._partial = b""

    def write(self, chunk: bytes) -> None:
        if self.log is not None:
            self.log.write(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        self._tail.extend(lines)

    def tail(self) -> str:
        if self.log is not None:
            self.log.flush()
        return b"\n".join([*self._tail, self._partial]).decode(errors="replace").rstrip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def launch(
    nursery: trio.Nursery,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    output: Output,
    ready: str = SERVING,
) -> Launched:
    """Start `command` and wait (bounded) for `ready` in its output; its output is copied to
    `output` by a task in `nursery` until it exits. Its standard error goes to the log file
    if there is one, else with its output."""
    stderr = output.log if output.log is not None else subprocess.STDOUT
    process = await trio.lowlevel.open_process(
        list(command), stdout=subprocess.PIPE, stderr=stderr, env=dict(env)
    )
    found_send, found_receive = trio.open_memory_channel[str](1)
    assert process.stdout is not None
    nursery.start_soon(
        _watch,
        process.stdout,
        output,
        re.compile(re.escape(ready.encode()) + rb"(\S+)\s"),
        found_send,
    )
    with trio.move_on_after(START_SECONDS):
        try:
            return Launched(process, await found_receive.receive())
        except trio.EndOfChannel:
            await stop(process, signal.SIGKILL)
            raise ServerFailed(f"{command[2]} exited as it started:\n{output.tail()}") from None
    await stop(process, signal.SIGKILL)
    raise ServerFailed(f"{command[2]} did not start within {START_SECONDS:.0f}s:\n{output.tail()}")


async def _watch(
    stdout: trio.abc.ReceiveStream,
    output: Output,
    ready: re.Pattern[bytes],
    found: trio.MemorySendChannel[str],
) -> None:
    pending: bytes | None = b""  # None once found
    async with stdout, found:
        while chunk := bytes(await stdout.receive_some()):
            output.write(chunk)
            if pending is not None:
                pending += chunk
                if (match := ready.search(pending)) is not None:
                    found.send_nowait(match.group(1).decode())
                    pending = None
                else:
                    pending = pending[-4096:]


async def stop(process: trio.Process, signum: int = signal.SIGINT) -> None:
    """Send `signum` (if it still runs) and wait for the exit, SIGKILL after STOP_SECONDS;
    shielded, so a cancelled caller still leaves no process behind."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signum)
        with trio.move_on_after(STOP_SECONDS):
            await process.wait()
            return
        process.kill()
        await process.wait()


@asynccontextmanager
async def running(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log: BinaryIO | None = None,
    ready: str = SERVING,
    stop_signal: int = signal.SIGTERM,
) -> AsyncIterator[Launched]:
    """A server for the duration of the block, stopped with `stop_signal` at its end."""
    async with trio.open_nursery() as nursery:
        launched = await launch(nursery, command, env=env, output=Output(log), ready=ready)
        try:
            yield launched
        finally:
            await stop(launched.process, stop_signal)


# --- what the tools measure of a process ---------------------------------------------------------


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one (a connection is a file, on both
    ends); a server started afterwards inherits it. Returns the limit now in force."""
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


def tree_cpu_seconds(pid: int) -> tuple[float, float] | None:
    """CPU time of `pid` and its live descendants together, and the descendants' part of it;
    None where /proc does not tell of `pid`. A server's work may run in processes it spawns (the
    store's writer), which its own clock does not count.

    Descendants are read when this is called: one that exits between two readings loses what it
    used from the figure (the store's writer lives as long as the server, so none is lost)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    children = sum(cpu_seconds(child) or 0.0 for child in descendants(pid))
    return own + children, children


def server_cpu_seconds(pid: int | None) -> float | None:
    """A server's CPU seconds with its child processes' (`tree_cpu_seconds`), or None."""
    tree = None if pid is None else tree_cpu_seconds(pid)
    return None if tree is None else tree[0]


async def exited(pid: int, seconds: float) -> None:
    """Until the process `pid` (not necessarily a child of ours) has exited, for at most
    `seconds` (TooSlowError); at once if there is no such process."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(seconds):
            await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from each thread's children list (a child is listed
    under the thread that forked it)."""
    found: list[int] = []
    parents = [pid]
    while parents:
        parent = parents.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:  # it has just exited
            continue
        for thread in threads:
            try:
                children = [
                    int(child)
                    for child in Path(f"/proc/{parent}/task/{thread}/children").read_text().split()
                ]
            except OSError:
                continue
            found.extend(children)
            parents.extend(children)
    return found
