"""Group commit: what many chats' conversations write while one write is in flight leaves
together in the next (appends: one insert and one update of their chats; receipts: one update
of their chats).

Each conversation writes its own chat one step at a time and waits for the write, so under load
most of the server's work is per command, not per record: 100 chats writing at once were 200
round trips, each a fraction of a millisecond of work on the server. Here the first write with
none in flight goes at once (no added wait when the store is idle); the writes that arrive
meanwhile wait for it and then leave together, the first of them writing for all. No task of
its own: whoever finds no write in flight writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import outcome
import trio

from store._protocol import StoreError

MAX_BATCH = 256
"""The most writes one combined write carries."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True, eq=False)
class _Waiting(Generic[T, R]):
    item: T
    result: outcome.Outcome[R] | None = None


class GroupCommit(Generic[T, R]):
    """Writes from concurrent callers, combined while a write is in flight. `write` writes
    several together and answers an outcome for each, in order."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[outcome.Outcome[R]]]]) -> None:
        self._write = write
        self._waiting: list[_Waiting[T, R]] = []
        self._writing = False
        self._written = trio.Event()
        self.writes = 0
        """How many combined writes went to the server (fewer than the callers under load)."""

    async def write(self, item: T) -> R:
        waiting: _Waiting[T, R] = _Waiting(item)
        self._waiting.append(waiting)
        # Shielded as every store call is (a worker thread is never abandoned): a caller
        # cancelled while waiting may have its write made by the write in flight.
        with trio.CancelScope(shield=True):
            while waiting.result is None:
                if self._writing:
                    await self._written.wait()
                else:
                    await self._write_next()
        result = waiting.result
        assert result is not None
        return result.unwrap()

    async def after_write_in_flight(self) -> None:
        """Return once the write in flight, if any, has ended (not waiting for any after it)."""
        if self._writing:
            await self._written.wait()

    async def _write_next(self) -> None:
        self._writing = True
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        # What the batch answers if the write ends in something other than a StoreError (a
        # bug, raised to this caller): the others must not wait for an answer that never comes.
        results: list[outcome.Outcome[R]] = [
            outcome.Error(StoreError("the write this was in did not finish")) for _ in batch
        ]
        try:
            results = await self._write([waiting.item for waiting in batch])
        except StoreError as exc:
            # Each caller raises an error of its own: one exception object raised in many
            # tasks would collect all their tracebacks.
            results = [outcome.Error(_copy(exc)) for _ in batch]
        finally:
            for waiting, result in zip(batch, results, strict=True):
                waiting.result = result
            self.writes += 1
            # Everyone waiting wakes: those answered return, the first of the rest writes next.
            self._writing = False
            written, self._written = self._written, trio.Event()
            written.set()


def _copy(exc: StoreError) -> StoreError:
    copy = type(exc)(*exc.args)
    copy.__cause__ = exc
    return copy
