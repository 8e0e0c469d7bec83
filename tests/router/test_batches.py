"""A BatchActor gets every message waiting in its mailbox at once (up to max_batch), in order;
a crash fails every ask of the batch, a refusal refuses those not yet answered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import trio
import trio.testing

from router import ActorDead, ActorSystem, BatchActor, HandlerCrashed, Refused, Reply


@dataclass(frozen=True, slots=True)
class Put:
    value: int
    reply: Reply[int] | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    error: Exception
    reply: Reply[int] | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """Hold the actor until `release` is set, so what is sent meanwhile waits as one batch."""

    release: trio.Event


@dataclass
class Seen:
    batches: list[list[int]] = field(default_factory=list)


class Summer(BatchActor[Put | Fail | Block]):
    max_batch = 3

    def __init__(self, seen: Seen) -> None:
        self._seen = seen

    async def handle_batch(self, messages: list[Put | Fail | Block]) -> None:
        await trio.lowlevel.checkpoint()
        values = []
        for message in messages:
            if isinstance(message, Block):
                await message.release.wait()
                continue
            if isinstance(message, Fail):
                raise message.error
            values.append(message.value)
        if values:
            self._seen.batches.append(values)
        for message in messages:
            if not isinstance(message, Block) and message.reply is not None:
                message.reply.send(sum(values))


async def test_waiting_messages_come_as_one_batch_up_to_its_bound(
    system: ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    seen = Seen()
    with trio.fail_after(5):
        summer = await system.spawn("summer", lambda: Summer(seen), mailbox_size=16)
        answers: list[int] = []

        async def ask(value: int) -> None:
            answers.append(await summer.ask(lambda reply: Put(value, reply)))

        for value in range(1, 6):
            summer.tell_nowait(Put(value))  # all waiting before the actor runs
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, 6)
        assert seen.batches == [[1, 2, 3], [4, 5, 6]]
        assert answers == [15]


async def test_a_crash_fails_every_ask_of_the_batch_and_a_refusal_refuses_them(
    system: ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    seen = Seen()
    with trio.fail_after(5):
        summer = await system.spawn("summer", lambda: Summer(seen), mailbox_size=16)
        outcomes: list[BaseException] = []

        async def ask(make: type[Put] | type[Fail], value: int | Exception) -> None:
            try:
                await summer.ask(lambda reply: make(value, reply))  # type: ignore[arg-type]
            except (HandlerCrashed, Refused) as error:
                outcomes.append(error)

        for error in (RuntimeError("bug"), Refused("no", "not now")):
            outcomes.clear()
            release = trio.Event()
            await summer.tell(Block(release))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, Put, 1)
                nursery.start_soon(ask, Fail, error)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
            assert len(outcomes) == 2
            expected = HandlerCrashed if isinstance(error, RuntimeError) else Refused
            assert all(isinstance(outcome, expected) for outcome in outcomes)
        assert summer.restarts == 1
        assert seen.batches == []


async def test_ask_each_tells_them_all_before_waiting_and_answers_in_order(
    system: ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    seen = Seen()
    with trio.fail_after(5):
        summer = await system.spawn("summer", lambda: Summer(seen), mailbox_size=16)
        error = ValueError("no")
        makes: list[Callable[[Reply[int]], Put | Fail | Block]] = [
            partial(Put, 1),
            partial(Put, 2),
            partial(Fail, error),  # a crash: its batch fails, the next batch is answered
            partial(Put, 4),
        ]
        answers = await summer.ask_each(makes)
        # One ask at a time, the batches would have been [1], [2], [4].
        assert seen.batches == [[4]]
        assert answers[3] == 4
        assert all(isinstance(answer, HandlerCrashed) for answer in answers[:3])
        await system.stop("summer")
        assert [type(answer) for answer in await summer.ask_each(makes[:1])] == [ActorDead]
