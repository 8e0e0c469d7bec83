"""Actors: one trio task per actor, reading one bounded mailbox, restarted one-for-one on crashes.

An `_ActorCell` is what outlives restarts: the mailbox, the `ActorRef`, the `ActorContext`, the
restart count and the live timers. Each (re)start makes a fresh `Actor` instance from the factory.

A message's reply slot is found by convention: the attribute `reply` holding a `Reply`. The kernel
looks for it only when `handle` raised (to send the error to the asker) and when a stopping actor
drains its mailbox (to fail the ask with `ActorDead`), never on the normal path.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from router._errors import ActorDead, ActorGaveUp, HandlerCrashed, MailboxFull, Refused
from router._reply import Reply
from router._timer import Timer, TimerQueue

M = TypeVar("M")
R = TypeVar("R")

logger = logging.getLogger("router")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart a crashed actor unless it crashed more than `max_restarts` times within
    `within_seconds` on the trio clock; then give up on it.

    Each restart waits `backoff_seconds`, doubled for every earlier crash still within the
    window, at most `max_backoff_seconds`: a crash that comes from outside (a resource that is
    gone) is not retried in a tight loop. Messages wait in the mailbox meanwhile."""

    max_restarts: int = 3
    within_seconds: float = 5.0
    backoff_seconds: float = 0.0
    max_backoff_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if self.within_seconds <= 0:
            raise ValueError("within_seconds must be > 0")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("need 0 <= backoff_seconds <= max_backoff_seconds")

    def backoff(self, earlier_crashes: int) -> float:
        """The wait before a restart, given the crashes before it within the window."""
        return min(self.backoff_seconds * (1 << min(earlier_crashes, 32)), self.max_backoff_seconds)


class Actor(ABC, Generic[M]):
    """Subclass this. One instance lives from a (re)start to the next crash or the stop; state that
    must survive a crash belongs in a store and is loaded by `on_start`."""

    # Set by the kernel before on_start.
    context: ActorContext[M]

    async def on_start(self) -> None:
        """Load state. Raising here crashes the actor (or fails `spawn` on the first start)."""

    @abstractmethod
    async def handle(self, message: M) -> None:
        """Handle one message; raise `Refused` to refuse an ask without crashing."""

    async def on_stop(self) -> None:
        """Called on a clean stop, after the last message, before the mailbox is drained."""


class BatchActor(Actor[M]):
    """An actor that takes every message waiting in its mailbox (up to `max_batch`) at once:
    it can decide them all, make the decisions durable in one write, then answer them all."""

    max_batch: int = 256

    @abstractmethod
    async def handle_batch(self, messages: list[M]) -> None:
        """Handle the messages in mailbox order, answering each ask. A `Refused` raised here
        refuses every ask of the batch not yet answered; any other exception crashes the actor
        and fails them with `HandlerCrashed`."""

    async def handle(self, message: M) -> None:
        await self.handle_batch([message])


class ActorContext(Generic[M]):
    """What an actor knows about itself; the same object across restarts."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _ActorCell[M]) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def self_ref(self) -> ActorRef[M]:
        return self._cell.ref

    def send_after(self, seconds: float, message: M) -> Timer:
        """Deliver `message` to this actor after `seconds` on the trio clock, through the mailbox.

        The timer is cancelled when the actor restarts or stops.
        """
        return self._cell.schedule(seconds, message)

    def stop(self) -> None:
        """Stop this actor once the current message is handled (e.g. to passivate it)."""
        self._cell.request_stop()


class ActorRef(Generic[M]):
    """The address of an actor; stays valid across restarts. Equal refs address the same actor."""

    __slots__ = ("_cell", "_send")

    def __init__(self, cell: _ActorCell[M]) -> None:
        self._cell = cell
        self._send = cell.send_channel

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def alive(self) -> bool:
        """Accepting messages: started and not stopping."""
        return self._cell.alive

    @property
    def running(self) -> bool:
        """Handling messages: alive, and not between a crash and its restart."""
        return self._cell.alive and not self._cell.restarting

    @property
    def mailbox_depth(self) -> int:
        return self._cell.mailbox_depth

    @property
    def restarts(self) -> int:
        return self._cell.restarts

    async def tell(self, message: M) -> None:
        """Put `message` in the mailbox, waiting for space. Raises `ActorDead` if stopped."""
        try:
            await self._send.send(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorDead(self._cell.name) from None

    def tell_nowait(self, message: M) -> None:
        """Like `tell`, but raises `MailboxFull` instead of waiting."""
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            raise MailboxFull(self._cell.name) from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorDead(self._cell.name) from None

    async def ask(self, make: Callable[[Reply[R]], M]) -> R:
        """Tell `make(reply)` and wait for the reply; raise what the reply failed with.

        Bound the wait with `trio.fail_after`.
        """
        reply: Reply[R] = Reply()
        await self.tell(make(reply))
        return await reply._wait()

    async def ask_each(self, makes: Sequence[Callable[[Reply[R]], M]]) -> list[R | Exception]:
        """`ask` for each message, with every message told before the first reply is awaited:
        a `BatchActor` finds them together in its mailbox. Replies come back in order, each the
        value or the exception the ask would have raised; a message the mailbox refused because
        the actor stopped gets `ActorDead`, and so does every message after it (never told).

        Bound the wait with `trio.fail_after`."""
        replies: list[Reply[R]] = []
        results: list[R | Exception] = []
        for make in makes:
            reply: Reply[R] = Reply()
            message = make(reply)
            try:
                # No checkpoint between the tells while there is room.
                self.tell_nowait(message)
            except MailboxFull:
                try:
                    await self.tell(message)
                except ActorDead:
                    break
            except ActorDead:
                break
            replies.append(reply)
        for reply in replies:
            try:
                results.append(await reply._wait())
            except Exception as error:
                results.append(error)
        results.extend(ActorDead(self._cell.name) for _ in range(len(makes) - len(replies)))
        return results

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name!r}>"


@dataclass(frozen=True, slots=True)
class _TimerFire(Generic[M]):
    """A timer's message in the mailbox; carries the timer so a late cancel still suppresses it."""

    timer: Timer
    message: M


def _unwrap(item: object) -> Any:
    """The message in a mailbox item; None for a timer cancelled after it fired."""
    if isinstance(item, _TimerFire):
        return item.message if item.timer._take() else None
    return item


def _reply_of(message: object) -> Reply[Any] | None:
    reply = getattr(message, "reply", None)
    return reply if isinstance(reply, Reply) else None


def _fail_pending_ask(message: object, error: BaseException) -> None:
    reply = _reply_of(message)
    if reply is not None and not reply.done:
        reply.fail(error)


class _ActorCell(Generic[M]):
    """One actor's task, mailbox and restart bookkeeping."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Actor[M]],
        *,
        mailbox_size: int,
        restart: RestartPolicy,
        on_give_up: Callable[[str, BaseException], float | None] | None,
        on_restart: Callable[[str, int], None] | None,
        timers: TimerQueue,
        nursery: trio.Nursery,
        on_closed: Callable[[_ActorCell[Any]], None],
    ) -> None:
        self.name = name
        self._factory = factory
        self._policy = restart
        self._on_give_up = on_give_up
        self._on_restart = on_restart
        self._timer_queue = timers
        self._nursery = nursery
        self._on_closed = on_closed
        self.send_channel, self._receive = trio.open_memory_channel[M | _TimerFire[M]](mailbox_size)
        self._started = False
        self.stopping = False
        self._stopped = trio.Event()
        self._stop_requested = trio.Event()  # wakes a restart that waits out its backoff
        self.restarts = 0
        self.restarting = False  # between a crash and the next instance's successful on_start
        self._timers: set[Timer] = set()
        self._current: list[object] = []  # the messages being handled, failed if cancelled
        self._task: trio.lowlevel.Task | None = None
        self.context = ActorContext(self)
        self.ref = ActorRef(self)

    @property
    def alive(self) -> bool:
        return self._started and not self.stopping

    @property
    def mailbox_depth(self) -> int:
        return self._receive.statistics().current_buffer_used

    def runs_in_current_task(self) -> bool:
        return self._task is trio.lowlevel.current_task()

    def request_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._stop_requested.set()
        # Refuses new messages, wakes blocked senders with ActorDead, and wakes the actor (with
        # EndOfChannel) if it is waiting on an empty mailbox.
        self.send_channel.close()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def schedule(self, seconds: float, message: M) -> Timer:
        fire = functools.partial(self._fire_timer, message)
        return self._timer_queue.call_at(trio.current_time() + seconds, fire, self._timers)

    def _fire_timer(self, message: M, timer: Timer) -> None:
        envelope = _TimerFire(timer, message)
        try:
            self.send_channel.send_nowait(envelope)
        except trio.WouldBlock:
            self._nursery.start_soon(self._deliver_when_space, envelope)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            timer.cancel()

    async def _deliver_when_space(self, envelope: _TimerFire[M]) -> None:
        with trio.CancelScope() as scope:
            envelope.timer._cancel_with(scope)
            try:
                await self.send_channel.send(envelope)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                envelope.timer.cancel()

    def _cancel_timers(self) -> None:
        for timer in list(self._timers):
            timer.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._task = trio.lowlevel.current_task()
        try:
            actor: Actor[M] | None = await self._new_instance()
            self._started = True
            task_status.started()
            while actor is not None:
                gave_up_on = await self._supervise(actor)
                if gave_up_on is None:
                    return
                if self._on_give_up is None:
                    raise ActorGaveUp(self.name) from gave_up_on
                # The parent decides: a delay to start afresh after (its mailbox kept), or stop.
                retry_after = self._on_give_up(self.name, gave_up_on)
                if retry_after is None:
                    return
                actor = await self._restart_after(retry_after)
        finally:
            self._close()

    async def _restart_after(self, delay: float) -> Actor[M] | None:
        """Wait `delay`, then start a fresh instance, again until one starts; None if stopped
        meanwhile."""
        while True:
            if await self._wait_unless_stopped(delay):
                return None
            self.restarts += 1
            try:
                actor = await self._new_instance()
            except Exception:
                logger.exception("actor %r failed to start again", self.name)
                continue
            self.restarting = False
            if self._on_restart is not None:
                self._on_restart(self.name, self.restarts)
            return actor

    async def _wait_unless_stopped(self, delay: float) -> bool:
        """Sleep `delay` on the trio clock; True if a stop was requested first."""
        if delay > 0:
            with trio.move_on_after(delay):
                await self._stop_requested.wait()
        return self.stopping

    async def _new_instance(self) -> Actor[M]:
        actor = self._factory()
        actor.context = self.context
        await actor.on_start()
        return actor

    async def _supervise(self, actor: Actor[M]) -> Exception | None:
        """Run instances until a stop (returns None) or until the policy gives up (returns the
        last crash)."""
        crash_times: deque[float] = deque()
        while True:
            crash = await self._process(actor)
            if crash is None:
                await self._stop_cleanly(actor)
                return None
            self.restarting = True
            while crash is not None:
                logger.error("actor %r crashed", self.name, exc_info=crash)
                self._cancel_timers()
                if self.stopping:
                    # Asked to stop anyway; the crashed instance gets no on_stop.
                    return None
                now = trio.current_time()
                while crash_times and crash_times[0] <= now - self._policy.within_seconds:
                    crash_times.popleft()
                crash_times.append(now)
                if len(crash_times) > self._policy.max_restarts:
                    logger.error(
                        "actor %r crashed %d times within %s s; giving up",
                        self.name,
                        len(crash_times),
                        self._policy.within_seconds,
                    )
                    return crash
                if await self._wait_unless_stopped(self._policy.backoff(len(crash_times) - 1)):
                    return None
                self.restarts += 1
                try:
                    actor = await self._new_instance()
                except Exception as exc:
                    crash = exc
                else:
                    crash = None
            self.restarting = False
            if self._on_restart is not None:
                self._on_restart(self.name, self.restarts)

    async def _process(self, actor: Actor[M]) -> Exception | None:
        """Handle messages until a stop is requested (returns None) or `handle` crashes (returns
        the exception)."""
        receive = self._receive.receive
        max_batch = actor.max_batch if isinstance(actor, BatchActor) else 1
        while not self.stopping:
            try:
                item = await receive()
            except trio.EndOfChannel:
                return None
            message = _unwrap(item)
            if message is None:
                continue
            batch = [message]
            while len(batch) < max_batch:
                try:
                    item = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                if (message := _unwrap(item)) is not None:
                    batch.append(message)
            if self.stopping:
                # The stop came while these were being handed over: drain them with the rest.
                for message in batch:
                    _fail_pending_ask(message, ActorDead(self.name))
                return None
            self._current = batch
            try:
                if isinstance(actor, BatchActor):
                    await actor.handle_batch(batch)
                else:
                    await actor.handle(batch[0])
            except Refused as refusal:
                answered = False
                for message in batch:
                    reply = _reply_of(message)
                    if reply is not None and not reply.done:
                        reply.fail(refusal)
                        answered = True
                if not answered:
                    logger.warning("actor %r refused a message: %s", self.name, refusal)
            except Exception as exc:
                for message in batch:
                    _fail_pending_ask(message, HandlerCrashed(self.name, exc))
                self._current = []
                return exc
            self._current = []
        return None

    async def _stop_cleanly(self, actor: Actor[M]) -> None:
        try:
            await actor.on_stop()
        except Exception:
            logger.exception("actor %r failed in on_stop", self.name)

    def _close(self) -> None:
        """Release everything the actor holds; runs however the task ends."""
        self.stopping = True
        self._cancel_timers()
        self.send_channel.close()
        for message in self._current:
            _fail_pending_ask(message, ActorDead(self.name))
        self._current = []
        while True:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            # Timers are cancelled by now: their messages are dropped, never handled.
            if not isinstance(message, _TimerFire):
                _fail_pending_ask(message, ActorDead(self.name))
        self._receive.close()
        self._on_closed(self)
        self._stopped.set()
        # Refs and the context outlive the actor and keep the cell; the cell lets go of them
        # and of its task, so a stopped actor is freed at once, not left as a cycle for a full
        # collection (a passivated conversation's cell, mailbox and task: about 28 objects).
        self._task = None
        del self.ref, self.context
