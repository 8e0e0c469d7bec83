"""`open_cluster`: the bus, this node, and the system the API uses, for one block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from actors import SystemConfig
from bus import open_bus
from cluster._node import ClusterConfig, open_node
from cluster._system import ClusterSystem
from store import Backend


@asynccontextmanager
async def open_cluster(
    store: Backend, bus_url: str, config: ClusterConfig, system_config: SystemConfig
) -> AsyncIterator[ClusterSystem]:
    # Each bus call waits at most a third of the lease: a renewal that cannot finish in time
    # is a lost renewal, not a hang past the lease.
    async with (
        open_bus(bus_url, call_seconds=config.tick_seconds) as bus,
        open_node(store, bus, config, system_config) as node,
    ):
        yield ClusterSystem(node)
