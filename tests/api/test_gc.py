"""The collector's policy: start-up frozen, full collections only once the heap has grown."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from api._gc import CHECK_SECONDS, MIDDLE, NEVER, YOUNG, keep_collections_short


@pytest.fixture
def generations() -> Iterator[list[int]]:
    """The generation of every collection that ran meanwhile (young 0, middle 1, full 2)."""
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
        assert gc.get_threshold() == (YOUNG, MIDDLE, NEVER)
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_a_young_collection_comes_sooner_than_cpythons(
    autojump_clock: trio.abc.Clock, generations: list[int]
) -> None:
    # Under steady load the young generation holds more than the count says (objects freed in
    # older generations count against it): a smaller threshold bounds what a collection examines.
    cpythons = 700
    async with trio.open_nursery() as nursery:
        await nursery.start(keep_collections_short)
        gc.collect(0)  # the count starts from nothing
        generations.clear()
        # Tracked and alive: the count only grows.
        kept: list[list[int]] = [[] for _ in range(YOUNG + 100)]
        assert len(kept) < cpythons
        assert 0 in generations
        nursery.cancel_scope.cancel()
    del kept


async def test_a_full_collection_waits_for_the_heap_to_grow(
    autojump_clock: trio.abc.Clock, generations: list[int]
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(keep_collections_short)
        kept = [(i,) for i in range(100)]  # young garbage and survivors, no growth to speak of
        for _ in range(5):
            gc.collect(1)  # what the young thresholds do by themselves
        await trio.sleep(20 * CHECK_SECONDS)
        assert 2 not in generations

        nursery.cancel_scope.cancel()
    del kept

    generations.clear()
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
        assert 2 in generations
        nursery.cancel_scope.cancel()
    del grown
