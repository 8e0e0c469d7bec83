"""The server CPU the benchmarks measure counts the server's descendant processes (the store's
writer), read from /proc like a benchmark's window: at its start and at its end."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from tools._server import cpu_seconds, tree_cpu_seconds

BURN_SECONDS = 0.5
# Runs the rest of its command line and exits with its status: a level of the process tree.
SPAWN = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
# Says it is ready, burns BURN_SECONDS of CPU once told to go (bounded by its own CPU clock, not
# by a count a slow machine could stretch), says so, and exits when its input closes.
BURN = f"""
import sys, time
print("ready", flush=True)
sys.stdin.readline()
end = time.process_time() + {BURN_SECONDS}
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""


async def _until(stream: trio.abc.ReceiveStream, line: bytes) -> None:
    seen = b""
    while line not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"the burner's output ended before {line!r}: {seen!r}"
        seen += chunk


def _reading(pid: int) -> tuple[float, float, float]:
    """The tree's CPU seconds, its descendants' part, and the process's own."""
    tree, own = tree_cpu_seconds(pid), cpu_seconds(pid)
    assert tree is not None
    assert own is not None
    return *tree, own


async def test_the_tree_counts_a_grandchilds_cpu() -> None:
    # The measured process runs a middle one, which runs the burner: its grandchild, found
    # through the middle one's children. The pipes reach the burner, inherited.
    python = sys.executable
    process = await trio.lowlevel.open_process(
        [python, "-c", SPAWN, python, "-c", SPAWN, python, "-c", BURN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with trio.fail_after(60):
            await _until(process.stdout, b"ready\n")
            before = _reading(process.pid)
            await process.stdin.send_all(b"go\n")
            await _until(process.stdout, b"burnt\n")
            after = _reading(process.pid)
    finally:
        await process.stdin.aclose()  # the burner's input ends: the three exit
        with trio.fail_after(30):
            await process.wait()
        await process.stdout.aclose()
    assert process.returncode == 0
    total, children, own = (end - start for end, start in zip(after, before, strict=True))
    # /proc counts in clock ticks (10 ms): a margin of 0.1 s is ten of them.
    assert children >= BURN_SECONDS - 0.1
    assert total >= own + BURN_SECONDS - 0.1
    assert total - children == pytest.approx(own, abs=1e-9)


def test_no_tree_for_a_process_that_is_not_there() -> None:
    # A pid above the kernel's largest (pid_max is at most 2**22).
    assert tree_cpu_seconds(2**23) is None
