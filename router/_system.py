"""The actor system: the nursery every actor task runs in, the registry of names, the timers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import trio

from router._actor import Actor, ActorRef, RestartPolicy, _ActorCell
from router._timer import TimerQueue

M = TypeVar("M")

_DEFAULT_RESTART = RestartPolicy()  # a module-level default: the policy is immutable


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """One actor as `ActorSystem.snapshot` saw it, for inspection tools."""

    name: str
    alive: bool
    mailbox_depth: int
    restarts: int


class ActorSystem:
    """Made by `open_actor_system`; spawns, finds and stops actors."""

    def __init__(
        self,
        nursery: trio.Nursery,
        timers: TimerQueue,
        on_restart: Callable[[str, int], None] | None = None,
    ) -> None:
        self._nursery = nursery
        self._timers = timers
        self._on_restart = on_restart
        # Every actor from spawn until fully stopped, including ones starting or stopping.
        self._cells: dict[str, _ActorCell[Any]] = {}
        self._closing = False

    async def spawn(
        self,
        name: str,
        factory: Callable[[], Actor[M]],
        *,
        mailbox_size: int,
        restart: RestartPolicy = _DEFAULT_RESTART,
        on_give_up: Callable[[str, BaseException], float | None] | None = None,
    ) -> ActorRef[M]:
        """Start an actor; return once its first `on_start` succeeded (or raise what it raised).

        A live actor of the same name is a `ValueError`; one that is still stopping is waited
        for, so an actor passivated and then needed again never overlaps its old self.
        """
        if mailbox_size < 1:
            raise ValueError("mailbox_size must be >= 1")
        while True:
            if self._closing:
                raise RuntimeError("the actor system is shutting down")
            existing = self._cells.get(name)
            if existing is None:
                break
            if not existing.stopping:
                raise ValueError(f"an actor named {name!r} is already running")
            await existing.wait_stopped()
        cell = _ActorCell(
            name,
            factory,
            mailbox_size=mailbox_size,
            restart=restart,
            on_give_up=on_give_up,
            on_restart=self._on_restart,
            timers=self._timers,
            nursery=self._nursery,
            on_closed=self._unregister,
        )
        self._cells[name] = cell
        ref = cell.ref  # the cell lets go of it once stopped, which may come before start returns
        # If the first start fails, the cell unregisters itself before start() raises.
        await self._nursery.start(cell.run)
        return ref

    def lookup(self, name: str) -> ActorRef[Any] | None:
        """The actor of that name if it is alive (started and not stopping)."""
        cell = self._cells.get(name)
        return cell.ref if cell is not None and cell.alive else None

    @property
    def names(self) -> list[str]:
        """Names of the live actors, sorted."""
        return sorted(name for name, cell in self._cells.items() if cell.alive)

    async def stop(self, name: str) -> None:
        """Stop the actor cleanly and wait until it has; a name with no actor is a no-op."""
        cell = self._cells.get(name)
        if cell is None:
            await trio.lowlevel.checkpoint()
            return
        if cell.runs_in_current_task():
            raise RuntimeError("an actor cannot wait for its own stop; use context.stop()")
        cell.request_stop()
        await cell.wait_stopped()

    def snapshot(self) -> list[ActorInfo]:
        """Every registered actor (stopping ones show alive=False), sorted by name."""
        return [
            ActorInfo(
                name=cell.name,
                alive=cell.alive,
                mailbox_depth=cell.mailbox_depth,
                restarts=cell.restarts,
            )
            for cell in sorted(self._cells.values(), key=lambda cell: cell.name)
        ]

    def _unregister(self, cell: _ActorCell[Any]) -> None:
        if self._cells.get(cell.name) is cell:
            del self._cells[cell.name]

    async def _stop_all(self) -> None:
        self._closing = True
        cells = list(self._cells.values())
        for cell in cells:
            cell.request_stop()
        for cell in cells:
            await cell.wait_stopped()


@asynccontextmanager
async def open_actor_system(
    *, on_restart: Callable[[str, int], None] | None = None
) -> AsyncIterator[ActorSystem]:
    """Run an actor system for the duration of the block; on exit every actor is stopped cleanly.

    `on_restart(name, restarts)` is called each time a crashed actor has started again (for
    logs and metrics).

    An actor given up on without an `on_give_up` callback cancels the block and `ActorGaveUp`
    is raised from here. Errors come out as themselves, not wrapped in an ExceptionGroup: the
    nursery inside is an implementation detail (as in `trio.as_safe_channel`).
    """
    try:
        async with trio.open_nursery() as nursery:
            timers = TimerQueue()
            await nursery.start(timers.run)
            system = ActorSystem(nursery, timers, on_restart)
            try:
                yield system
            finally:
                await system._stop_all()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        _raise_single(group)


def _raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the group's one error (the first Cancelled if it holds only those), keeping that
    error's own context; a group of several errors goes on as it is."""
    errors = [error for error in group.exceptions if not isinstance(error, trio.Cancelled)]
    if len(errors) > 1:
        raise group
    sole = errors[0] if errors else group.exceptions[0]
    context = sole.__context__
    try:
        raise sole
    finally:
        sole.__context__ = context
