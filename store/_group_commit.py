"""Group commit: what many callers write while one write is in flight leaves together in the
next. Both backends write through it: SQLite runs each combined write as one transaction (one
fsync), MongoDB as one command per collection (appends: one insert and one update of their chats;
receipts: one update of their chats).

Under load most of a store's work is per write, not per record: 100 chats writing at once were
100 fsyncs, or 200 round trips. Here the first write with none in flight goes at once (no added
wait when the store is idle); the writes that arrive meanwhile wait for it and then leave
together, the first of them writing for all. No task of its own: whoever finds no write in
flight writes, so a lone write costs no hand-over to a writer task and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import outcome
import trio

from store._protocol import StoreError

MAX_BATCH = 256
"""The most writes one combined write carries."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True, eq=False)
class _Batch(Generic[T, R]):
    """Writes that leave together; the first to join leads: it waits for the batch ahead, if
    any, then writes them all. The others only wait for it to be done: each caller wakes once."""

    items: list[T]
    results: list[outcome.Outcome[R]] | None = None
    done: bool = False
    waiting: list[trio.lowlevel.Task] = field(default_factory=list)

    async def wait(self, *, cancellable: bool) -> None:
        """Until the batch is written. A caller writing waits uncancellably: a cancelled
        caller's write may be made by the batch it joined, and a leader's by no one else. Its
        cancellation reaches it at its next checkpoint, as after a shielded scope, without the
        scope: a trio cancel scope is about thirty calls (5 to 6 µs), for every write."""
        if self.done:
            if cancellable:
                await trio.lowlevel.checkpoint()
            return
        task = trio.lowlevel.current_task()
        self.waiting.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            if not cancellable:
                return trio.lowlevel.Abort.FAILED
            self.waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def finish(self, results: list[outcome.Outcome[R]]) -> None:
        self.results = results
        self.done = True
        for task in self.waiting:
            trio.lowlevel.reschedule(task)
        self.waiting.clear()


class GroupCommit(Generic[T, R]):
    """Writes from concurrent callers, combined while a write is in flight. `write` writes
    several together and answers an outcome for each, in order; it must not be cancellable
    (shielded, if it waits on what a cancellation would end), since it writes for callers
    that are not there to retry."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[outcome.Outcome[R]]]]) -> None:
        self._write = write
        self._open: _Batch[T, R] | None = None
        """The batch that new writes join: one waiting for the write in flight."""
        self._last: _Batch[T, R] | None = None
        self._in_flight: _Batch[T, R] | None = None
        self.writes = 0
        """How many combined writes went to the server (fewer than the callers under load)."""

    async def write(self, item: T) -> R:
        """Write `item` with the batch it joins; its answer. Not cancellable: a caller cancelled
        meanwhile has its write made and learns of the cancellation at its next checkpoint, as
        every store call (a worker thread is never abandoned)."""
        open_batch = self._open
        if open_batch is not None and len(open_batch.items) < MAX_BATCH:
            batch, index = open_batch, len(open_batch.items)
            batch.items.append(item)
            await batch.wait(cancellable=False)
        else:
            batch, index = _Batch([item]), 0
            ahead, self._last = self._last, batch
            if ahead is not None and not ahead.done:
                self._open = batch
                await ahead.wait(cancellable=False)
                if self._open is batch:
                    self._open = None
            await self._write_batch(batch)
        assert batch.results is not None
        return batch.results[index].unwrap()

    async def after_write_in_flight(self) -> None:
        """Return once the write in flight, if any, has ended (not waiting for any after it)."""
        if self._in_flight is not None:
            await self._in_flight.wait(cancellable=True)

    async def idle(self) -> None:
        """Return once every write asked for so far has been made (their callers make them)."""
        while self._last is not None and not self._last.done:
            await self._last.wait(cancellable=True)

    async def _write_batch(self, batch: _Batch[T, R]) -> None:
        self._in_flight = batch
        results: list[outcome.Outcome[R]] | None = None
        try:
            results = await self._write(list(batch.items))
        except StoreError as exc:
            # Each caller raises an error of its own: one exception object raised in many
            # tasks would collect all their tracebacks.
            results = [outcome.Error(_copy(exc)) for _ in batch.items]
        finally:
            self.writes += 1
            self._in_flight = None
            if results is None:
                # The write ended in something other than a StoreError (a bug, raised to this
                # caller): the others must not wait for an answer that never comes. Made only
                # then: made for every write, they were three objects more a write for the
                # garbage collector to examine.
                error = "the write this was in did not finish"
                results = [outcome.Error(StoreError(error)) for _ in batch.items]
            batch.finish(results)


def _copy(exc: StoreError) -> StoreError:
    copy = type(exc)(*exc.args)
    copy.__cause__ = exc
    return copy
