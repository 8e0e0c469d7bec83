"""What stalls the whole process: garbage-collection pauses and event-loop lag.

Both are measured here and reported to a callback, so the server's metrics and a load
simulator's report use the same measurement.

- `GcPauses` times every collection of Python's cyclic garbage collector through
  `gc.callbacks`: a collection stops every thread's Python code, so each one is a pause of the
  whole process (in whichever thread it ran). It gives the pause on the wall clock and the CPU
  the collection used (`time.thread_time` of its thread): on a machine whose cores are busy
  with other work the first includes the time the process waited for a core, the second is the
  collector's own work.
- `watch_loop_lag` sleeps a short interval again and again and reports how much later than asked
  it woke: time the event loop spent on something else (a long callback, a collection, CPU
  starvation) that every other task waited through as well.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

import trio

LOOP_LAG_INTERVAL = 0.1
"""Seconds between two loop-lag samples: ten wake-ups a second cost nothing measurable."""


class GcPauses:
    """While entered, call `on_pause(generation, seconds, cpu_seconds)` after each garbage
    collection: its length on the wall clock, and the CPU it used."""

    def __init__(self, on_pause: Callable[[int, float, float], None]) -> None:
        self._on_pause = on_pause
        # By thread (collections can run in any of them): wall clock and thread CPU at the start.
        self._started: dict[int, tuple[float, float]] = {}

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        thread = threading.get_ident()
        if phase == "start":
            self._started[thread] = (now, cpu)
            return
        started = self._started.pop(thread, None)
        if started is not None:
            generation = int(info.get("generation", -1))
            self._on_pause(generation, now - started[0], cpu - started[1])

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._callback)


async def watch_loop_lag(
    on_lag: Callable[[float], None],
    *,
    interval: float = LOOP_LAG_INTERVAL,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Forever: sleep `interval` (on the wall clock), then report how late the wake-up was."""
    task_status.started()
    while True:
        before = time.perf_counter()
        await trio.sleep(interval)
        on_lag(max(0.0, time.perf_counter() - before - interval))
