"""The actor system: spawn returns only after on_start, a failing first on_start fails spawn and
registers nothing, duplicate names, lookup and names, ref identity, and snapshot."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from router import ActorInfo, ActorSystem, open_actor_system
from tests.router.sample_actors import (
    Add,
    Counter,
    CounterStore,
    Crash,
    StartFailed,
    get,
    hold,
)


async def test_spawn_returns_after_on_start(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        store.saved["counter"] = 12
        store.start_seconds = 1.5
        started = trio.current_time()
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        assert trio.current_time() - started == 1.5
        assert store.starts == 1
        assert counter.alive
        assert await get(counter) == 12


async def test_a_starting_actor_is_not_live_but_its_name_is_taken(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        store.start_seconds = 1.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(system.spawn, "counter", partial(Counter, store), mailbox_size=8)
            )
            await trio.testing.wait_all_tasks_blocked()
            assert store.starts == 1
            assert system.lookup("counter") is None
            assert system.names == []
            with pytest.raises(ValueError, match="counter"):
                await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        assert system.names == ["counter"]
        assert store.starts == 1


async def test_a_failing_first_on_start_fails_spawn_and_registers_nothing(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        store.failing_starts = 1
        with pytest.raises(StartFailed):
            await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        assert system.lookup("counter") is None
        assert system.snapshot() == []
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        assert counter.restarts == 0
        assert system.lookup("counter") == counter


async def test_a_live_name_cannot_be_spawned_twice(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        with pytest.raises(ValueError, match="counter"):
            await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        assert store.starts == 1
        assert system.lookup("counter") == counter


async def test_lookup_finds_live_actors_by_name(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        first = await system.spawn("first", partial(Counter, store), mailbox_size=8)
        second = await system.spawn("second", partial(Counter, store), mailbox_size=8)
        assert system.lookup("first") == first
        assert system.lookup("second") == second
        assert system.lookup("third") is None
        assert system.names == ["first", "second"]
        assert first != second
        assert len({first, system.lookup("first"), second}) == 2
        await system.stop("first")
        assert system.lookup("first") is None
        assert system.names == ["second"]


async def test_refs_survive_restarts(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Crash())
        await counter.tell(Add(2))
        assert await get(counter) == 2
        assert counter.restarts == 1
        assert system.lookup("counter") == counter
        assert hash(system.lookup("counter")) == hash(counter)


async def test_snapshot_reports_depths_and_restarts(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        busy = await system.spawn("busy", partial(Counter, store), mailbox_size=8)
        idle = await system.spawn("idle", partial(Counter, store), mailbox_size=8)
        await idle.tell(Crash())
        assert await get(idle) == 0
        release = await hold(busy)
        for amount in range(3):
            busy.tell_nowait(Add(amount))
        assert system.snapshot() == [
            ActorInfo(name="busy", alive=True, mailbox_depth=3, restarts=0),
            ActorInfo(name="idle", alive=True, mailbox_depth=0, restarts=1),
        ]
        release.set()
        assert await get(busy) == 3
        assert system.snapshot()[0].mailbox_depth == 0


async def test_mailbox_size_must_be_positive(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5), pytest.raises(ValueError, match="mailbox_size"):
        await system.spawn("counter", partial(Counter, store), mailbox_size=0)


async def fail_inside_a_system(store: CounterStore) -> None:
    async with open_actor_system() as system:
        await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        raise KeyError("from the block")


async def test_errors_from_the_block_come_out_unwrapped(
    store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5), pytest.raises(KeyError, match="from the block"):
        await fail_inside_a_system(store)
    # The actors were still stopped cleanly.
    assert store.stopped == ["counter"]
