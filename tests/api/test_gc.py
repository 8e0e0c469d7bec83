"""The collector's policy: start-up frozen, full collections only once the heap has grown."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from api._gc import CHECK_SECONDS, MIDDLE, NEVER, keep_collections_short


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """The generation of every collection that ran meanwhile, full ones as 2."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)


async def test_start_up_is_frozen_and_the_collector_restored_after(
    autojump_clock: trio.abc.Clock,
) -> None:
    before = gc.get_threshold()
    async with trio.open_nursery() as nursery:
        await nursery.start(keep_collections_short)
        assert gc.get_freeze_count() > 0
        # Middle collections twice as often as CPython's, each over half as many survivors.
        assert gc.get_threshold() == (before[0], MIDDLE, NEVER)
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_a_full_collection_waits_for_the_heap_to_grow(
    autojump_clock: trio.abc.Clock, full_collections: list[int]
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(keep_collections_short)
        kept = [(i,) for i in range(100)]  # young garbage and survivors, no growth to speak of
        for _ in range(5):
            gc.collect(1)  # what the young thresholds do by themselves
        await trio.sleep(20 * CHECK_SECONDS)
        assert 2 not in full_collections

        nursery.cancel_scope.cancel()
    del kept

    full_collections.clear()
    async with trio.open_nursery() as nursery:
        # Grown by a tenth: enough, with the factor the test gives.
        await nursery.start(
            lambda task_status: keep_collections_short(growth_factor=1.05, task_status=task_status)
        )
        grown: list[list[int]] = []
        target = 1.1 * sys.getallocatedblocks()
        while sys.getallocatedblocks() < target:
            grown.extend([i] for i in range(10_000))
        await trio.sleep(2 * CHECK_SECONDS)
        assert 2 in full_collections
        nursery.cancel_scope.cancel()
    del grown
