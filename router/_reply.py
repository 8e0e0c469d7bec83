"""The one-shot reply slot an ask carries inside its message."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

R = TypeVar("R")


class Reply(Generic[R]):
    """Resolved exactly once, by `send` or `fail`, usually by the actor handling the message.

    The actor may keep the slot and resolve it while handling a later message (a deferred reply).
    Resolving a slot whose asker has given up (cancelled) is harmless: the value is dropped.
    """

    __slots__ = ("_done", "_error", "_value", "_waiter")

    _value: R

    def __init__(self) -> None:
        self._done = False
        self._error: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        return self._done

    def send(self, value: R) -> None:
        self._resolve()
        self._value = value
        self._wake()

    def fail(self, error: BaseException) -> None:
        self._resolve()
        self._error = error
        self._wake()

    def _resolve(self) -> None:
        if self._done:
            raise RuntimeError("reply already sent")
        self._done = True

    def _wake(self) -> None:
        if self._waiter is not None:
            trio.lowlevel.reschedule(self._waiter)
            self._waiter = None

    async def _wait(self) -> R:
        """The value, or raise the error; only `ActorRef.ask` and `ask_each` call this, once."""
        if not self._done:
            # Parking the task directly keeps an ask to one allocation (this slot); a trio.Event
            # would add its parking lot to every ask.
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if self._error is not None:
            raise self._error
        return self._value
