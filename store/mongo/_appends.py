"""Group commit for appends: what many chats' conversations append while one write is in flight
leaves together in the next, as one insert and one update of their chats.

Each conversation appends its own chat's messages one run at a time and waits for the write, so
under load most of the server's work is per command, not per message: 100 chats writing at once
were 200 round trips, each a fraction of a millisecond of work on the server. Here the first
append with no write in flight is written at once (no added wait when the store is idle); the
appends that arrive meanwhile wait for it and then leave together, the first of them writing for
all. No task of its own: whoever finds no write in flight writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import outcome
import trio

from store._protocol import StoreError
from store._records import Message

MAX_RUNS = 256
"""The most runs one combined write carries."""

Write = Callable[[list[Sequence[Message]]], Awaitable[list[outcome.Outcome[list[Message]]]]]
"""Writes runs of several chats together; an outcome per run, in order."""


@dataclass(slots=True, eq=False)
class _Waiting:
    messages: Sequence[Message]
    result: outcome.Outcome[list[Message]] | None = None


class Appends:
    """Appends from concurrent callers, combined while a write is in flight."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._waiting: list[_Waiting] = []
        self._writing = False
        self._written = trio.Event()
        self.writes = 0
        """How many combined writes went to the server (fewer than the appends under load)."""

    async def append(self, messages: Sequence[Message]) -> list[Message]:
        waiting = _Waiting(messages)
        self._waiting.append(waiting)
        # Shielded as every store call is (a worker thread is never abandoned): a caller
        # cancelled while waiting may have its messages stored by the write in flight.
        with trio.CancelScope(shield=True):
            while waiting.result is None:
                if self._writing:
                    await self._written.wait()
                else:
                    await self._write_next()
        result = waiting.result
        assert result is not None
        return result.unwrap()

    async def _write_next(self) -> None:
        self._writing = True
        batch, self._waiting = self._waiting[:MAX_RUNS], self._waiting[MAX_RUNS:]
        # What the batch answers if the write ends in something other than a StoreError (a
        # bug, raised to this caller): the others must not wait for an answer that never comes.
        results: list[outcome.Outcome[list[Message]]] = [
            outcome.Error(StoreError("the write these messages were in did not finish"))
            for _ in batch
        ]
        try:
            results = await self._write([waiting.messages for waiting in batch])
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
