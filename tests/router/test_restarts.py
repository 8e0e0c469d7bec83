"""Crashes and one-for-one restarts: HandlerCrashed to the asker, a fresh instance whose on_start
reloads state, the same ref and mailbox, the restart intensity limit (on_give_up, or ActorGaveUp
out of open_actor_system), and failing on_start counting as a crash."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from router import (
    ActorDead,
    ActorGaveUp,
    ActorSystem,
    HandlerCrashed,
    RestartPolicy,
    open_actor_system,
)
from tests.router.sample_actors import (
    Add,
    Broken,
    Counter,
    CounterStore,
    Crash,
    ReplyThenCrash,
    Save,
    StartFailed,
    get,
    hold,
)


async def test_crash_in_ask_fails_the_asker_and_restarts_with_reloaded_state(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(5))
        await counter.tell(Save())
        await counter.tell(Add(100))  # in memory only: lost with the crashed instance
        with pytest.raises(HandlerCrashed) as crashed:
            await counter.ask(Crash)
        assert crashed.value.name == "counter"
        assert isinstance(crashed.value.cause, Broken)
        assert crashed.value.__cause__ is crashed.value.cause
        assert await get(counter) == 5
        assert counter.restarts == 1
        assert store.starts == 2
        assert system.lookup("counter") == counter


async def test_crash_after_replying_keeps_the_reply_and_restarts(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(3))
        assert await counter.ask(ReplyThenCrash) == 3
        assert await get(counter) == 0
        assert counter.restarts == 1


async def test_tell_crash_restarts_and_keeps_queued_messages(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        release = await hold(counter)
        # Queued behind the crash: the new instance must handle them from the same mailbox.
        counter.tell_nowait(Crash())
        counter.tell_nowait(Add(4))
        counter.tell_nowait(Add(5))
        assert counter.mailbox_depth == 3
        release.set()
        assert await get(counter) == 9
        assert counter.restarts == 1
        assert counter.alive


async def test_max_restarts_within_the_window_keeps_the_actor(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=3, within_seconds=5.0),
        )
        for _ in range(3):
            await counter.tell(Crash())
        assert await get(counter) == 0
        assert counter.restarts == 3
        assert counter.alive


async def test_one_crash_too_many_gives_up_and_calls_on_give_up(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        given_up: list[tuple[str, BaseException]] = []
        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=3, within_seconds=5.0),
            on_give_up=lambda name, error: given_up.append((name, error)),
        )
        bystander = await system.spawn("bystander", partial(Counter, store), mailbox_size=8)
        release = await hold(counter)
        for _ in range(4):
            counter.tell_nowait(Crash())

        answers: list[BaseException] = []

        async def ask_behind_the_crashes() -> None:
            try:
                await get(counter)
            except ActorDead as dead:
                answers.append(dead)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_behind_the_crashes)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert len(answers) == 1
        assert [name for name, _ in given_up] == ["counter"]
        assert isinstance(given_up[0][1], Broken)
        assert not counter.alive
        assert counter.restarts == 3
        assert system.lookup("counter") is None
        with pytest.raises(ActorDead):
            await counter.tell(Add(1))
        # The system goes on.
        await bystander.tell(Add(2))
        assert await get(bystander) == 2


async def run_an_actor_that_crashes_twice(store: CounterStore) -> None:
    async with open_actor_system() as system:
        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=1, within_seconds=5.0),
        )
        await counter.tell(Crash())
        await counter.tell(Crash())
        await trio.sleep_forever()


async def test_giving_up_without_on_give_up_escalates_out_of_the_system(
    store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5), pytest.raises(ActorGaveUp) as gave_up:
        await run_an_actor_that_crashes_twice(store)
    assert gave_up.value.name == "counter"
    assert isinstance(gave_up.value.__cause__, Broken)
    assert store.starts == 2


async def test_crashes_spread_beyond_the_window_keep_restarting(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        given_up: list[str] = []
        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=2, within_seconds=5.0),
            on_give_up=lambda name, _: given_up.append(name),
        )
        # Two crashes per 3 s: never more than two within any 5 s window.
        for _ in range(5):
            await counter.tell(Crash())
            await counter.tell(Crash())
            await trio.sleep(6)
        assert given_up == []
        assert counter.restarts == 10
        assert await get(counter) == 0


async def test_failing_on_start_during_restart_counts_as_a_crash(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        given_up: list[BaseException] = []
        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=3, within_seconds=5.0),
            on_give_up=lambda _, error: given_up.append(error),
        )
        # One handler crash, then three failed restarts: four crashes, one more than allowed.
        store.failing_starts = 3
        with pytest.raises(HandlerCrashed):
            await counter.ask(Crash)
        with pytest.raises(ActorDead):
            await get(counter)
        assert len(given_up) == 1
        assert isinstance(given_up[0], StartFailed)
        assert store.starts == 4


async def test_failing_on_start_recovers_when_a_later_start_succeeds(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(6))
        await counter.tell(Save())
        store.failing_starts = 2
        await counter.tell(Crash())
        assert await get(counter) == 6
        assert counter.restarts == 3


async def test_restarts_wait_a_doubling_backoff(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=5, within_seconds=60.0, backoff_seconds=1.0),
        )
        # The first start, then three failed restarts: waits of 1, 2, 4 and 8 s before the
        # restarts, the crash times of a resource that stays gone for a while.
        store.failing_starts = 3
        started = trio.current_time()
        with pytest.raises(HandlerCrashed):
            await counter.ask(Crash)
        assert not counter.running  # restarting: what a readiness check reports
        assert await get(counter) == 0  # waited in the mailbox for the next instance
        assert trio.current_time() - started == pytest.approx(1 + 2 + 4 + 8)
        assert counter.running


async def test_a_parent_may_start_a_given_up_actor_again_after_a_delay(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(60):
        given_up: list[float] = []
        second_give_up = trio.Event()

        def retry_later(name: str, error: BaseException) -> float:
            given_up.append(trio.current_time())
            if len(given_up) == 2:
                second_give_up.set()
            return 10.0

        counter = await system.spawn(
            "counter",
            partial(Counter, store),
            mailbox_size=8,
            restart=RestartPolicy(max_restarts=1, within_seconds=5.0),
            on_give_up=retry_later,
        )
        await counter.tell(Add(2))
        await counter.tell(Save())
        store.failing_starts = 2  # the restart fails: a give-up; so does the first retry
        with pytest.raises(HandlerCrashed):
            await counter.ask(Crash)
        assert await get(counter) == 2  # the same ref and mailbox, state reloaded
        assert len(given_up) == 1
        assert trio.current_time() - given_up[0] == pytest.approx(20.0)
        assert system.lookup("counter") == counter
        # A stop during the wait ends it at once.
        store.failing_starts = 2
        await counter.tell(Crash())
        await second_give_up.wait()
        with trio.fail_after(1):
            await system.stop("counter")
        assert system.lookup("counter") is None
