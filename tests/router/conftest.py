"""Fixtures for the kernel tests: a running actor system and a fresh counter store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from router import ActorSystem, open_actor_system
from tests.router.sample_actors import CounterStore


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    # Exit waits for the messages being handled: if a failed test left an actor held, fail the
    # teardown (on the autojump clock, at once) instead of hanging.
    with trio.fail_after(3600):
        async with open_actor_system() as running:
            yield running


@pytest.fixture
def store() -> CounterStore:
    return CounterStore()
