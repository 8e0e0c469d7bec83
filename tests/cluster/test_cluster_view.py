"""What /admin/system and `switchboard inspect` show of a cluster of real nodes: every node, who
leads with which fencing token, the connections on each node; the same from every node; and
after the arbiter is killed, the new leader with a newer token and the dead node gone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from tests.cluster.conftest import DEMO_PASSWORD, ClusterNode, MongoServer, running_cluster, ws
from tests.valkey_server import Valkey
from tools._remote import DEMO_ADMIN_EMAIL, Credentials
from tools.inspect import InspectOptions, inspect

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
WAIT_SECONDS = 20


async def admin_headers(node: ClusterNode) -> dict[str, str]:
    answer = await node.http.post(
        "/admin/auth/login", json={"email": DEMO_ADMIN_EMAIL, "password": DEMO_PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def cluster_of(node: ClusterNode, headers: dict[str, str]) -> dict[str, Any]:
    answer = await node.http.get("/admin/system", headers=headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["cluster"]
    return found


def settled_as(view: dict[str, Any], nodes: list[dict[str, Any]]) -> bool:
    # A new leader's token is known to the others from its first beat as leader.
    return view["nodes"] == nodes and view["fencingToken"] is not None


async def settled(node: ClusterNode, headers: dict[str, str], nodes: list[dict[str, Any]]) -> Any:
    """The node's view once its nodes are `nodes` and the leader's token is known: the others'
    lines are as of their last beat (a third of the lease), so the view catches up within a few
    beats."""
    with trio.fail_after(WAIT_SECONDS):
        while not settled_as(view := await cluster_of(node, headers), nodes):  # noqa: ASYNC110 (Valkey's TTLs)
            await trio.sleep(0.05)
    return view


async def leader_token(node: ClusterNode, headers: dict[str, str], newer_than: int = 0) -> int:
    """The leader's fencing token as the node knows it, once it is above `newer_than`: the
    node learns it from the leader's beats, so it may be unknown or the old one for a beat."""
    with trio.fail_after(WAIT_SECONDS):
        while True:
            token = (await cluster_of(node, headers))["fencingToken"]
            if token is not None and token > newer_than:
                break
            await trio.sleep(0.05)
    assert isinstance(token, int)
    return token


async def inspected(node: ClusterNode) -> str:
    out = io.StringIO()
    options = InspectOptions(
        url=node.server.url,
        credentials=Credentials(token=None, email=DEMO_ADMIN_EMAIL, password=DEMO_PASSWORD),
    )
    with trio.fail_after(WAIT_SECONDS):
        assert await inspect(options, Console(file=out, width=200, color_system=None)) == 0
    return out.getvalue()


async def test_every_node_shows_the_nodes_the_leader_its_token_and_connections_per_node(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(120):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b, c = await cluster.start_nodes(nursery, "node-a", "node-b", "node-c")
            on_a, on_b, on_c = (
                await admin_headers(a),
                await admin_headers(b),
                await admin_headers(c),
            )

            # One socket on node-a, two on node-b, none on node-c.
            async with (
                ws(a, await a.customer_token("shop-view-1")),
                ws(b, await b.login(ANN)),
                ws(b, await b.login(BOB)),
            ):
                expected = [
                    {"id": "node-a", "connections": 1, "leads": True},
                    {"id": "node-b", "connections": 2, "leads": False},
                    {"id": "node-c", "connections": 0, "leads": False},
                ]
                views = [
                    await settled(node, headers, expected)
                    for node, headers in ((a, on_a), (b, on_b), (c, on_c))
                ]
                system = (await b.http.get("/admin/system", headers=on_b)).json()
                table = await inspected(c)
            assert [view["node"] for view in views] == ["node-a", "node-b", "node-c"]
            assert {view["mode"] for view in views} == {"cluster"}
            assert {view["leader"] for view in views} == {"node-a"}
            tokens = {view["fencingToken"] for view in views}
            assert len(tokens) == 1
            first = tokens.pop()
            assert isinstance(first, int)
            assert first >= 1
            # The snapshot comes from the arbiter, which holds every node's sessions.
            assert system["sessions"] == 3
            assert "supervisor" in {actor["name"] for actor in system["actors"]}

            assert f"Cluster: node-a leads, fencing token {first}; answered by node-c" in table
            assert "Nodes (3)" in table
            rows = {
                line.split()[0]: line.split()[1:]
                for line in table.splitlines()
                if line.startswith(" node-")
            }
            assert rows["node-a"] == ["arbiter", "1"]
            assert rows["node-b"] == ["edge", "2"]
            assert rows["node-c"] == ["(this", "one)", "edge", "0"]

            await a.server.kill()
            assert (await cluster.wait_leader(not_="node-a"))[0] in ("node-b", "node-c")
            after = await settled(
                b,
                on_b,
                [
                    {"id": "node-b", "connections": 0, "leads": True},
                    {"id": "node-c", "connections": 0, "leads": False},
                ]
                if await cluster.leader() == "node-b"
                else [
                    {"id": "node-b", "connections": 0, "leads": False},
                    {"id": "node-c", "connections": 0, "leads": True},
                ],
            )
            assert after["fencingToken"] > first
            assert after["leader"] == await cluster.leader()
