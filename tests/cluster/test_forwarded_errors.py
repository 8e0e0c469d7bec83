"""An ask forwarded from an edge gets the arbiter's answer as the arbiter's own API would give it:
a store that cannot be reached is `StoreUnavailable` on the edge too (503 store_unavailable,
"the database cannot be reached"), not "a component is restarting"; a refusal stays a refusal.
Two nodes in this process on one store and a real Valkey."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
import trio

from actors import SystemConfig
from bus import open_bus
from cluster import ClusterConfig, ClusterSystem, open_cluster
from router import Refused
from store import AgentRouting, Backend, MemoryStore, StoreUnavailable
from tests.actors.conftest import seed_agents
from tests.valkey_server import Valkey

WAIT_SECONDS = 20


class Unreachable:
    """The store, whose routing writes fail while `down` is set (as MongoDB stopped would)."""

    def __init__(self, store: Backend) -> None:
        self._store = store
        self.down = False

    async def record_routing(
        self, chats: Sequence[Any], agents: Sequence[AgentRouting], *args: Any, **kwargs: Any
    ) -> None:
        if self.down:
            raise StoreUnavailable("the store is stopped")
        await self._store.record_routing(chats, agents, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_the_edge_answers_as_the_arbiter_would(valkey: Valkey) -> None:
    async with open_bus(valkey.url) as bus:
        await bus.client.flushdb()
    memory = MemoryStore()
    await seed_agents(memory)
    store = Unreachable(memory)
    config = SystemConfig()
    with trio.fail_after(WAIT_SECONDS):
        async with open_cluster(
            cast(Backend, store), valkey.url, ClusterConfig("node-a", lease_seconds=1.5), config
        ) as arbiter:
            while arbiter.node.system is None:  # noqa: ASYNC110 (the lease is Valkey's)
                await trio.sleep(0.02)
            async with open_cluster(
                cast(Backend, store), valkey.url, ClusterConfig("node-b", lease_seconds=1.5), config
            ) as edge:
                while edge.node.leader_id != "node-a":  # noqa: ASYNC110
                    await trio.sleep(0.02)
                assert isinstance(edge, ClusterSystem)
                assert (await edge.set_max_load("ann", 5, actor_id="admin")).max_load == 5
                store.down = True
                with pytest.raises(StoreUnavailable, match="the store is stopped"):
                    await edge.set_max_load("ann", 6, actor_id="admin")
                store.down = False
                with pytest.raises(Refused):
                    await edge.set_max_load("nobody", 6, actor_id="admin")
                assert (await edge.set_max_load("ann", 6, actor_id="admin")).max_load == 6
