"""The clock every connection's deadlines share (its pings, its token's expiry): each callback
fires at its time in the clock's one task, a dropped one never fires, and the entries of
connections that went away are forgotten rather than kept until their time."""

from __future__ import annotations

import gc

import trio
import trio.testing

from api._deadlines import Deadlines, deadlines


async def test_each_fires_at_its_time_in_order(autojump_clock: trio.testing.MockClock) -> None:
    clock = Deadlines()
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        clock.call_at(start + 10, lambda: fired.append(("late", trio.current_time() - start)))
        await trio.testing.wait_all_tasks_blocked()
        # An earlier one wakes the clock that sleeps until the later.
        clock.call_at(start + 2, lambda: fired.append(("early", trio.current_time() - start)))
        clock.call_at(start + 2, lambda: fired.append(("same", trio.current_time() - start)))
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert fired == [("early", 2), ("same", 2), ("late", 10)]
    assert len(clock) == 0


async def test_a_dropped_entry_never_fires(autojump_clock: trio.testing.MockClock) -> None:
    clock = Deadlines()
    fired: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        kept = clock.call_at(trio.current_time() + 5, lambda: fired.append("kept"))
        dropped = clock.call_at(trio.current_time() + 5, lambda: fired.append("dropped"))
        clock.drop(dropped)
        clock.drop(dropped)  # twice: nothing more
        assert len(clock) == 1
        await trio.sleep(10)
        clock.drop(kept)  # after it fired: nothing
        nursery.cancel_scope.cancel()
    assert fired == ["kept"]
    assert len(clock) == 0


class _Owner:
    """Stands in for a connection: what a callback keeps alive."""

    def fire(self) -> None:
        raise AssertionError("dropped: never fired")


def test_entries_dropped_long_before_their_time_are_forgotten() -> None:
    # Connections that come and go with hours left on their tokens: the heap must not keep
    # their entries (nor their owners) until then.
    clock = Deadlines()
    far = 3600.0
    for _ in range(10):
        owners = [_Owner() for _ in range(1000)]
        entries = [clock.call_at(far, owner.fire) for owner in owners]
        for entry in entries:
            clock.drop(entry)
    live = _Owner()
    clock.call_at(far, live.fire)
    assert len(clock) == 1
    assert len(clock._heap) <= 2 * Deadlines._COMPACT_MIN + 2
    del owners, entries
    gc.collect()
    assert sum(1 for each in gc.get_objects() if type(each) is _Owner) == 1


async def test_one_clock_per_run_in_a_task_of_its_own() -> None:
    first = deadlines()
    assert deadlines() is first
    fired = trio.Event()
    first.call_at(trio.current_time(), fired.set)
    with trio.fail_after(5):
        await fired.wait()
