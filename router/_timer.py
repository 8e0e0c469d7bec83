"""Timers: messages an actor sends itself after a delay on the trio clock.

One task per actor system keeps every pending timer in a heap and sleeps until the earliest
deadline. Scheduling or cancelling a timer, which actors do on their per-message path (e.g. to
push back an idle timeout), therefore costs a heap operation, not a task.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections.abc import Callable

import trio


class _State(enum.Enum):
    SCHEDULED = enum.auto()  # waiting in the heap
    FIRED = enum.auto()  # handed to the mailbox (or waiting for space in it)
    DELIVERED = enum.auto()  # taken out of the mailbox by the actor
    CANCELLED = enum.auto()


class Timer:
    """Handle of a message scheduled with `ActorContext.send_after`."""

    __slots__ = ("_delivery", "_fire", "_group", "_queue", "_state")

    def __init__(self, queue: TimerQueue, fire: Callable[[Timer], None], group: set[Timer]) -> None:
        self._queue = queue
        self._fire = fire
        # The owner's live timers, so that it can cancel them all on restart or stop.
        self._group = group
        self._state = _State.SCHEDULED
        # Set while a fired timer waits for mailbox space.
        self._delivery: trio.CancelScope | None = None
        group.add(self)

    def cancel(self) -> None:
        """Idempotent. A cancelled timer never delivers, even if its message is already queued."""
        if self._state is _State.DELIVERED or self._state is _State.CANCELLED:
            return
        if self._state is _State.SCHEDULED:
            self._queue._forget_one()
        self._state = _State.CANCELLED
        self._group.discard(self)
        # The heap keeps a cancelled entry until its deadline or the next compaction: it must
        # not keep its owner (a stopped actor's cell and mailbox) alive that long.
        self._fire = _never
        self._group = set()
        if self._delivery is not None:
            self._delivery.cancel()

    def _cancel_with(self, scope: trio.CancelScope) -> None:
        """Cancel `scope` (where the fired timer waits for mailbox space) along with this timer."""
        if self._state is _State.CANCELLED:
            scope.cancel()
        else:
            self._delivery = scope

    def _take(self) -> bool:
        """Called by the actor on receiving the timer's message: whether to handle it."""
        if self._state is not _State.FIRED:
            return False
        self._state = _State.DELIVERED
        self._group.discard(self)
        return True


def _never(timer: Timer) -> None:
    """What a cancelled timer would fire: nothing (it never does)."""


class TimerQueue:
    """The heap of scheduled timers and the task that fires them."""

    # Below this many cancelled entries the heap is never rebuilt: not worth the pass.
    _COMPACT_MIN = 64

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # equal deadlines fire in scheduling order
        self._cancelled_in_heap = 0
        self._wakeup = trio.CancelScope()

    def call_at(self, deadline: float, fire: Callable[[Timer], None], group: set[Timer]) -> Timer:
        """Schedule `fire(timer)` at `deadline` on the trio clock; it must not block or raise."""
        timer = Timer(self, fire, group)
        heapq.heappush(self._heap, (deadline, next(self._order), timer))
        if deadline < self._wakeup.deadline:
            self._wakeup.deadline = deadline
        return timer

    def _forget_one(self) -> None:
        self._cancelled_in_heap += 1
        # Reset-on-every-message timeouts cancel far more timers than ever fire: rebuild the
        # heap once it is mostly dead entries, or it grows with the message rate.
        if self._cancelled_in_heap > self._COMPACT_MIN and 2 * self._cancelled_in_heap > len(
            self._heap
        ):
            self._heap = [entry for entry in self._heap if entry[2]._state is _State.SCHEDULED]
            heapq.heapify(self._heap)
            self._cancelled_in_heap = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                timer = heapq.heappop(self._heap)[2]
                if timer._state is _State.SCHEDULED:
                    timer._state = _State.FIRED
                    timer._fire(timer)
                else:
                    self._cancelled_in_heap -= 1
            # call_at moves this deadline earlier when it schedules a sooner timer.
            self._wakeup = trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf)
            with self._wakeup:
                await trio.sleep_forever()
