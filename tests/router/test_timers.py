"""Timers: send_after delivers through the mailbox at the right virtual time, in deadline order;
cancel is idempotent and wins even over a message already queued; restarts and stops cancel
timers; a timer firing into a full mailbox waits for space."""

from __future__ import annotations

import weakref
from functools import partial

import trio
import trio.testing

from router import ActorRef, ActorSystem, Timer
from router._timer import TimerQueue
from tests.router.sample_actors import (
    Add,
    Counter,
    CounterMessage,
    CounterStore,
    Crash,
    Schedule,
    Tick,
    get,
    hold,
)


async def send_after(ref: ActorRef[CounterMessage], seconds: float, message: Tick) -> Timer:
    return await ref.ask(partial(Schedule, seconds, message))


async def test_timers_deliver_at_their_deadline_in_order(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        start = trio.current_time()
        await send_after(counter, 2.5, Tick("late"))
        await send_after(counter, 1.0, Tick("early"))
        await send_after(counter, 1.0, Tick("early, scheduled second"))
        await trio.sleep(10)
        assert [(label, at - start) for label, at in store.ticks] == [
            ("early", 1.0),
            ("early, scheduled second", 1.0),
            ("late", 2.5),
        ]


async def test_a_cancelled_timer_never_delivers(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        cancelled = await send_after(counter, 2.0, Tick("cancelled"))
        await send_after(counter, 3.0, Tick("kept"))
        await trio.sleep(1)
        cancelled.cancel()
        cancelled.cancel()
        await trio.sleep(10)
        assert [label for label, _ in store.ticks] == ["kept"]


async def test_cancel_suppresses_a_message_already_in_the_mailbox(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        timer = await send_after(counter, 1.0, Tick("queued"))
        release = await hold(counter)
        await trio.sleep(2)
        assert counter.mailbox_depth == 1
        timer.cancel()
        release.set()
        assert await get(counter) == 0
        assert store.ticks == []


async def test_a_restart_cancels_timers(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await send_after(counter, 5.0, Tick("before the crash"))
        await counter.tell(Crash())
        await send_after(counter, 5.0, Tick("after the crash"))
        await trio.sleep(10)
        assert counter.restarts == 1
        assert [label for label, _ in store.ticks] == ["after the crash"]


async def test_a_stop_cancels_timers(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await send_after(counter, 5.0, Tick("never"))
        await system.stop("counter")
        # Respawned under the same name, so a leaked timer would have a mailbox to land in.
        again = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await trio.sleep(10)
        assert await get(again) == 0
        assert store.ticks == []


async def test_a_timer_firing_into_a_full_mailbox_waits_for_space(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(30):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=1)
        await send_after(counter, 1.0, Tick("waited"))
        release = await hold(counter)
        counter.tell_nowait(Add(1))
        await trio.sleep(5)
        assert store.ticks == []
        release.set()
        await trio.sleep(1)
        assert [(label, at) for label, at in store.ticks] == [("waited", trio.current_time() - 1)]
        assert await get(counter) == 1


async def test_many_cancelled_timers_do_not_disturb_the_live_one(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(300):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        # The pattern of an idle timeout pushed back on every message.
        timer = await send_after(counter, 60.0, Tick("idle"))
        for _ in range(500):
            timer.cancel()
            timer = await send_after(counter, 60.0, Tick("idle"))
        started = trio.current_time()
        await trio.sleep(120)
        assert [(label, at - started) for label, at in store.ticks] == [("idle", 60.0)]


async def test_a_cancelled_timer_lets_go_of_what_it_would_fire() -> None:
    """A cancelled entry stays in the heap until its deadline or a compaction: it must not keep
    its owner (a stopped actor's cell, its mailbox) alive that long."""

    class Owner:
        def fire(self, timer: Timer) -> None:
            raise AssertionError("a cancelled timer fired")

    queue = TimerQueue()
    owner, group = Owner(), set[Timer]()
    gone = weakref.ref(owner)
    timer = queue.call_at(trio.current_time() + 300.0, owner.fire, group)
    timer.cancel()
    del owner
    assert gone() is None
    assert group == set()
