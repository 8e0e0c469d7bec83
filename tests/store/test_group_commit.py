"""`GroupCommit` alone, over a write that records its batches and waits for the test to let it
finish: what leaves together, who wakes, and what each caller is answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import outcome
import pytest
import trio
import trio.testing

from store import StoreError
from store._group_commit import MAX_BATCH, GroupCommit


class Server:
    """A write the test holds in flight until it calls `finish`."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self._go = trio.Event()

    async def write(self, items: list[int]) -> list[outcome.Outcome[int]]:
        self.batches.append(items)
        with trio.CancelScope(shield=True):  # as a group commit's write must be
            await self._go.wait()
        if self.fail is not None:
            raise self.fail
        return [outcome.Value(item * 10) for item in items]

    def finish(self) -> None:
        self._go.set()


async def one_in_flight_then_two(write: Callable[[int], Awaitable[None]], server: Server) -> None:
    """`write(0)` in flight, `write(1)` and `write(2)` queued behind it, then all let finish."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, 0)
        await trio.testing.wait_all_tasks_blocked()
        for item in (1, 2):
            nursery.start_soon(write, item)
        await trio.testing.wait_all_tasks_blocked()
        server.finish()


async def test_writes_made_while_one_is_in_flight_leave_together_in_the_next() -> None:
    server = Server()
    commit = GroupCommit(server.write)
    answers: dict[int, int] = {}

    async def write(item: int) -> None:
        answers[item] = await commit.write(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert server.batches == [[0]]  # alone, at once
        for item in range(1, 6):
            nursery.start_soon(write, item)
        await trio.testing.wait_all_tasks_blocked()
        assert server.batches == [[0]]  # the others wait for it
        server.finish()
    assert sorted(map(sorted, server.batches)) == [[0], [1, 2, 3, 4, 5]]
    assert answers == {item: item * 10 for item in range(6)}
    assert commit.writes == 2


async def test_a_caller_wakes_once_not_at_the_end_of_the_write_before_its_own() -> None:
    server = Server()
    commit = GroupCommit(server.write)
    steps: dict[str, int] = {}

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            steps[task.name] = steps.get(task.name, 0) + 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.write, 0, name="first")
        await trio.testing.wait_all_tasks_blocked()
        for item in (1, 2, 3):
            nursery.start_soon(commit.write, item, name=f"next {item}")
        await trio.testing.wait_all_tasks_blocked()
        instrument = Steps()
        trio.lowlevel.add_instrument(instrument)
        server.finish()
    trio.lowlevel.remove_instrument(instrument)
    # One of the next three leads their write (it wakes when the first write ends); the other
    # two wake once, when their answers are in, not also when the first write ended.
    woken = sorted(steps[f"next {item}"] for item in (1, 2, 3))
    assert woken[:2] == [1, 1], steps
    assert len(server.batches) == 2
    assert sorted(server.batches[1]) == [1, 2, 3]


async def test_no_batch_carries_more_than_the_most() -> None:
    server = Server()
    server.finish()
    commit = GroupCommit(server.write)
    async with trio.open_nursery() as nursery:
        for item in range(2 * MAX_BATCH + 3):
            nursery.start_soon(commit.write, item)
    assert all(len(batch) <= MAX_BATCH for batch in server.batches)
    assert sorted(item for batch in server.batches for item in batch) == list(
        range(2 * MAX_BATCH + 3)
    )


async def test_a_store_error_reaches_each_caller_as_its_own() -> None:
    server = Server(fail=StoreError("the disk is full"))
    commit = GroupCommit(server.write)
    errors: list[StoreError] = []

    async def write(item: int) -> None:
        with pytest.raises(StoreError, match="the disk is full") as raised:
            await commit.write(item)
        errors.append(raised.value)

    await one_in_flight_then_two(write, server)
    assert len(errors) == 3
    assert len({id(error) for error in errors}) == 3


async def test_a_bug_goes_to_the_leader_and_the_others_are_told_their_write_did_not_finish() -> (
    None
):
    server = Server(fail=RuntimeError("a bug"))
    commit = GroupCommit(server.write)
    seen: list[str] = []

    async def write(item: int) -> None:
        try:
            await commit.write(item)
        except (RuntimeError, StoreError) as exc:
            seen.append(f"{type(exc).__name__}: {exc}")

    await one_in_flight_then_two(write, server)
    assert sorted(seen) == [
        "RuntimeError: a bug",
        "RuntimeError: a bug",
        "StoreError: the write this was in did not finish",
    ]


async def test_writes_that_succeed_make_no_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    # The answer for a write that does not finish is made only when one does not: made for
    # every write, it was three more objects a write for the garbage collector to examine.
    made: list[StoreError] = []
    init = StoreError.__init__

    def counted(error: StoreError, *args: object) -> None:
        made.append(error)
        init(error, *args)

    monkeypatch.setattr(StoreError, "__init__", counted)
    server = Server()
    commit = GroupCommit(server.write)
    answers: list[int] = []

    async def write(item: int) -> None:
        answers.append(await commit.write(item))

    await one_in_flight_then_two(write, server)
    assert sorted(answers) == [0, 10, 20]
    assert made == []


async def test_a_cancelled_caller_still_has_its_write_made_and_idle_waits_for_it() -> None:
    server = Server()
    commit = GroupCommit(server.write)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit.write, 0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(commit.write, 1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # both callers: the one in flight and the one queued
        with trio.CancelScope(shield=True):
            idle = trio.Event()

            async def wait_idle() -> None:
                await commit.idle()
                idle.set()

            async with trio.open_nursery() as waiting:
                waiting.start_soon(wait_idle)
                await trio.testing.wait_all_tasks_blocked()
                assert not idle.is_set()
                server.finish()
            assert idle.is_set()
    assert server.batches == [[0], [1]]


async def test_after_write_in_flight_waits_for_that_write_only() -> None:
    server = Server()
    commit = GroupCommit(server.write)
    async with trio.open_nursery() as nursery:
        await commit.after_write_in_flight()  # none in flight: at once
        nursery.start_soon(commit.write, 0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(commit.write, 1)  # queued behind it
        await trio.testing.wait_all_tasks_blocked()
        server.finish()
        await commit.after_write_in_flight()
        assert server.batches[0] == [0]
