"""An agent who connects while the node taking the lease is still starting its domain counts as
connected there: the assignment actor read the presence when it started, so the node holds the new
session back until its domain runs and then tells the assignment actor. Before, such a session
joined the presence unannounced: the agent could set themselves available, but the assignment actor
saw no connection and gave them no chat (seen as a flaky frozen-arbiter test, the agent reconnecting
15 ms after the takeover)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from actors import SystemConfig, open_system
from bus import open_bus
from cluster import ClusterConfig, open_cluster
from store import ActedBy, AgentStatus, MemoryStore, Priority, Role
from tests.actors.conftest import Recorder, seed_agents
from tests.valkey_server import Valkey

WAIT_SECONDS = 20


async def test_an_agent_connecting_while_the_domain_starts_gets_chats(
    valkey: Valkey, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_bus(valkey.url) as bus:
        await bus.client.flushdb()
    store = MemoryStore()
    await seed_agents(store)
    started, go_on = trio.Event(), trio.Event()

    @asynccontextmanager
    async def held_open_system(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        # The assignment actor has started (and read the presence); the node has not yet seen it.
        async with open_system(*args, **kwargs) as system:
            started.set()
            await go_on.wait()
            yield system

    monkeypatch.setattr("cluster._node.open_system", held_open_system)
    config = ClusterConfig(node_id="node-a", lease_seconds=1.5)
    with trio.fail_after(WAIT_SECONDS):
        async with (
            open_cluster(store, valkey.url, config, SystemConfig()) as system,
            trio.open_nursery() as nursery,
        ):
            await started.wait()
            ann = Recorder("ann")
            nursery.start_soon(system.connect, ann.session, Role.AGENT)
            await trio.testing.wait_all_tasks_blocked()
            go_on.set()
            await system.set_agent_status(
                "ann", AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id="ann"
            )
            opened = await system.open_chat(
                "cust-1", title="t", description="", priority=Priority.LOW
            )
    assert opened.chat.agent_id == "ann"
    assert ann.assigned_chats() == [opened.chat.id]
