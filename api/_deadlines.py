"""One clock per trio run for the deadlines every connection keeps (its next websocket ping, its
token's expiry): a heap and one system task, where each connection kept a task, a cancel scope
or a sleep of its own for a deadline that mostly never comes.

A deadline's callback runs in the clock's task: it must not block or raise (it starts a task or
cancels a scope). An entry dropped before its time is forgotten: the heap is rebuilt once it is
mostly dropped entries, so connections that come and go do not grow it until their deadlines.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from math import inf
from typing import Any

import trio

Entry = list[Any]
"""[when, tie-break, callback]: the callback is None once fired or dropped."""


class Deadlines:
    """Callbacks due at times of the trio clock, all kept by one task (`run`)."""

    # Below this many dropped entries the heap is never rebuilt: not worth the pass.
    _COMPACT_MIN = 64

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._order = itertools.count()  # equal times fire in the order they were asked for
        self._dropped = 0  # dropped entries still in the heap
        self._sleep = trio.CancelScope()

    def __len__(self) -> int:
        """The callbacks still to fire."""
        return len(self._heap) - self._dropped

    def call_at(self, when: float, fire: Callable[[], None]) -> Entry:
        """Call `fire()` at `when`; the entry, to `drop` if it is no longer wanted."""
        entry = [when, next(self._order), fire]
        heapq.heappush(self._heap, entry)
        if when < self._sleep.deadline:
            self._sleep.deadline = when
        return entry

    def drop(self, entry: Entry) -> None:
        """Forget `entry` (nothing when it has fired or was dropped already)."""
        if entry[2] is None:
            return
        entry[2] = None  # nor does the heap keep its owner alive until its time
        self._dropped += 1
        if self._dropped > self._COMPACT_MIN and 2 * self._dropped > len(self._heap):
            self._heap = [kept for kept in self._heap if kept[2] is not None]
            heapq.heapify(self._heap)
            self._dropped = 0

    async def run(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else inf) as self._sleep:
                await trio.sleep_forever()
            heap, now = self._heap, trio.current_time()
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                fire, entry[2] = entry[2], None
                if fire is None:
                    self._dropped -= 1
                else:
                    fire()


_deadlines: trio.lowlevel.RunVar[Deadlines] = trio.lowlevel.RunVar("switchboard_deadlines")


def deadlines() -> Deadlines:
    """This trio run's clock, started on first use (a system task: it lives as long as the run,
    and ends with it)."""
    try:
        return _deadlines.get()
    except LookupError:
        clock = Deadlines()
        _deadlines.set(clock)
        trio.lowlevel.spawn_system_task(clock.run, name="connection deadlines")
        return clock
