"""tell, tell_nowait and ask: replies (immediate and deferred), refusals going to the asker,
backpressure and MailboxFull on a bounded mailbox, ActorDead once the target has stopped."""

from __future__ import annotations

import logging
from functools import partial

import pytest
import trio
import trio.testing

from router import ActorDead, ActorSystem, MailboxFull, Refused, Reply
from tests.router.sample_actors import (
    Add,
    Counter,
    CounterStore,
    Get,
    Park,
    Refuse,
    Release,
    get,
    hold,
)


async def test_ask_returns_the_reply(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(2))
        counter.tell_nowait(Add(3))
        assert await counter.ask(Get) == 5


async def test_deferred_reply_is_answered_by_a_later_message(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        answers: list[int] = []

        async def ask_parked() -> None:
            answers.append(await counter.ask(Park))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_parked)
            await trio.testing.wait_all_tasks_blocked()
            # The actor is idle again, the asker still waits: the reply was kept, not failed.
            assert answers == []
            assert await get(counter) == 0
            await counter.tell(Release(42))
        assert answers == [42]
        assert counter.restarts == 0


async def test_refused_goes_to_the_asker_and_the_actor_carries_on(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(7))
        with pytest.raises(Refused) as refused:
            await counter.ask(Refuse)
        assert refused.value.code == "not_allowed"
        assert refused.value.message == "this counter refuses on request"
        # Same instance, same in-memory state: no crash, no restart.
        assert await get(counter) == 7
        assert counter.restarts == 0
        assert store.starts == 1


async def test_refused_tell_is_logged_and_dropped(
    system: ActorSystem,
    store: CounterStore,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await counter.tell(Add(1))
        with caplog.at_level(logging.WARNING, logger="router"):
            await counter.tell(Refuse())
            assert await get(counter) == 1
        assert counter.restarts == 0
        assert any(
            record.name == "router" and "not_allowed" in record.getMessage()
            for record in caplog.records
        )


async def test_tell_nowait_to_a_full_mailbox_raises_mailbox_full(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=2)
        release = await hold(counter)
        counter.tell_nowait(Add(1))
        counter.tell_nowait(Add(2))
        assert counter.mailbox_depth == 2
        with pytest.raises(MailboxFull) as full:
            counter.tell_nowait(Add(4))
        assert full.value.name == "counter"
        release.set()
        assert await get(counter) == 3


async def test_tell_waits_for_mailbox_space(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=1)
        release = await hold(counter)
        counter.tell_nowait(Add(1))
        delivered = trio.Event()

        async def tell_when_room() -> None:
            await counter.tell(Add(10))
            delivered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tell_when_room)
            await trio.testing.wait_all_tasks_blocked()
            assert not delivered.is_set()
            release.set()
        assert delivered.is_set()
        assert await get(counter) == 11


async def test_tell_and_ask_to_a_stopped_actor_raise_actor_dead(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        await system.stop("counter")
        assert not counter.alive
        with pytest.raises(ActorDead) as dead:
            await counter.tell(Add(1))
        assert dead.value.name == "counter"
        with pytest.raises(ActorDead):
            counter.tell_nowait(Add(1))
        with pytest.raises(ActorDead):
            await counter.ask(Get)


async def test_an_asker_that_gives_up_leaves_the_actor_unharmed(
    system: ActorSystem, store: CounterStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(5):
        counter = await system.spawn("counter", partial(Counter, store), mailbox_size=8)
        with trio.move_on_after(1) as gave_up:
            await counter.ask(Park)
        assert gave_up.cancelled_caught
        # Answering the abandoned slot is harmless.
        await counter.tell(Release(1))
        assert await get(counter) == 0
        assert counter.restarts == 0


def test_a_reply_resolves_once() -> None:
    sent: Reply[int] = Reply()
    assert not sent.done
    sent.send(1)
    assert sent.done
    with pytest.raises(RuntimeError):
        sent.send(2)
    with pytest.raises(RuntimeError):
        sent.fail(ValueError("late"))
    failed: Reply[int] = Reply()
    failed.fail(ValueError("no"))
    assert failed.done
    with pytest.raises(RuntimeError):
        failed.send(3)
