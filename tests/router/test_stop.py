"""Stopping: system.stop, context.stop (passivation) and system exit run on_stop, refuse new
messages, fail every ask left in the mailbox with ActorDead, and free the name."""

from __future__ import annotations

import gc
import weakref
from functools import partial

import pytest
import trio
import trio.testing

from router import ActorDead, ActorSystem, open_actor_system
from tests.router.sample_actors import (
    Add,
    Counter,
    CounterStore,
    Hold,
    Passivate,
    Save,
    get,
    hold,
)


async def test_stop_drains_the_mailbox_and_fails_pending_asks(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=2)
        release = await hold(counter)
        failures: list[str] = []

        async def ask() -> None:
            try:
                await get(counter)
            except ActorDead as dead:
                failures.append(dead.name)

        stopped = trio.Event()

        async def stop() -> None:
            await system.stop("counter")
            stopped.set()

        async with trio.open_nursery() as nursery:
            # Two asks fill the mailbox, the third waits in tell for space.
            for _ in range(3):
                nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            assert counter.mailbox_depth == 2
            nursery.start_soon(stop)
            await trio.testing.wait_all_tasks_blocked()
            # Stopping: nothing new gets in, the current message still finishes.
            assert not counter.alive
            assert system.lookup("counter") is None
            assert not stopped.is_set()
            with pytest.raises(ActorDead):
                counter.tell_nowait(Add(1))
            release.set()
        assert stopped.is_set()
        assert failures == ["counter"] * 3
        assert store.stopped == ["counter"]
        assert system.snapshot() == []


async def test_context_stop_passivates_and_a_respawn_reloads_state(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(8))
        await counter.tell(Save())
        await counter.tell(Passivate())
        with pytest.raises(ActorDead):
            await get(counter)
        assert store.stopped == ["counter"]
        assert system.lookup("counter") is None
        again = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        assert again != counter
        assert await get(again) == 8


async def test_spawning_a_stopping_name_waits_for_the_old_actor(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        store.stop_gate = trio.Event()
        old = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await old.tell(Passivate())
        await trio.testing.wait_all_tasks_blocked()
        assert store.stopped == ["counter"]  # in on_stop, held by the gate
        spawned = trio.Event()

        async def respawn() -> None:
            await system.spawn("counter", partial(Counter, store), mailbox_size=8)
            spawned.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(respawn)
            await trio.testing.wait_all_tasks_blocked()
            assert not spawned.is_set()
            assert store.starts == 1
            store.stop_gate.set()
        assert store.starts == 2
        assert system.names == ["counter"]


async def test_system_exit_stops_every_actor(
    store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        failures: list[str] = []
        async with trio.open_nursery() as askers, open_actor_system() as system:
            first = await system.spawn("first", partial(Counter, store), mailbox_size=8)
            await system.spawn("second", partial(Counter, store), mailbox_size=8)
            release = await hold(first)

            async def ask_first() -> None:
                try:
                    await get(first)
                except ActorDead as dead:
                    failures.append(dead.name)

            askers.start_soon(ask_first)
            await trio.testing.wait_all_tasks_blocked()
            assert first.mailbox_depth == 1
            # Let the current message finish as the block exits; the queued ask is not run.
            release.set()
        assert failures == ["first"]
        assert sorted(store.stopped) == ["first", "second"]
        assert not first.alive
        with pytest.raises(ActorDead):
            await first.tell(Add(1))


async def test_a_cancelled_system_fails_the_ask_being_handled(
    store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        failures: list[str] = []
        entered, release = trio.Event(), trio.Event()
        async with trio.open_nursery() as askers:
            with trio.CancelScope() as system_scope:
                async with open_actor_system() as system:
                    counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)

                    async def ask_while_held() -> None:
                        try:
                            await counter.ask(partial(Hold, entered, release))
                        except ActorDead as dead:
                            failures.append(dead.name)

                    askers.start_soon(ask_while_held)
                    await entered.wait()
                    system_scope.cancel()
                    await trio.sleep_forever()
        assert failures == ["counter"]
        # Cancelled, not stopped: no on_stop.
        assert store.stopped == []
        assert not counter.alive


async def test_stop_of_an_unknown_name_is_a_no_op(
    system: ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        await system.stop("nobody")
        assert system.names == []


async def test_a_stopped_actor_is_freed_without_the_cyclic_collector(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A passivated actor's cell, mailbox and task go as soon as it stops, its refs still
    answering ActorDead: a cycle between the cell and its ref or context waited for a full
    collection, which under chat turnover is a stopped conversation every few milliseconds."""
    gc.collect()
    gc.disable()
    try:
        with trio.fail_after(5):
            counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
            await counter.tell(Add(1))
            await counter.tell(Passivate())
            await trio.testing.wait_all_tasks_blocked()
        assert system.lookup("counter") is None
        assert not counter.alive
        cell = weakref.ref(counter._cell)
        del counter
        assert cell() is None
    finally:
        gc.enable()
