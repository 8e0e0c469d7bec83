"""An agent connected to an edge node has their agent actor on the arbiter, next to the
assignment actor: it starts with their connection, relays their status request, runs their grace
period after the connection closes, and stops once it ended (the agent then away)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.api.support import ANN, BOB
from tests.cluster.conftest import ClusterNode, MongoServer, available, running_cluster, ws
from tests.cluster.test_cluster_view import admin_headers
from tests.valkey_server import Valkey

GRACE_SECONDS = 2


async def system_of(node: ClusterNode, admin: dict[str, str]) -> dict[str, Any]:
    answer = await node.http.get("/admin/system", headers=admin)
    assert answer.status_code == 200, answer.text
    system: dict[str, Any] = answer.json()
    return system


def actor_names(system: dict[str, Any]) -> set[str]:
    return {actor["name"] for actor in system["actors"]}


async def test_an_edge_nodes_agent_has_their_actor_on_the_arbiter(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(120):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            arbiter, edge = await cluster.start_nodes(
                nursery,
                "node-a",
                "node-b",
                SWITCHBOARD_GRACE_PERIOD_SECONDS=str(GRACE_SECONDS),
            )
            admin = await admin_headers(arbiter)
            ann_token = await edge.login(ANN)
            connected: list[dict[str, Any]] = []
            async with ws(edge, ann_token) as agent:
                await available(agent)  # relayed by her actor on the arbiter
                # Until the edge's attach note reaches the arbiter (polled: it sends no event).
                while not connected:
                    system = await system_of(arbiter, admin)
                    connected = [a for a in system["agents"] if a["connections"] == 1]
                    await trio.sleep(0.05)
                while_connected = actor_names(await system_of(edge, admin))
            (ann,) = connected
            name = f"agent:{ann['id']}"
            with trio.fail_after(GRACE_SECONDS + 20):
                while True:  # her grace period runs out on the arbiter (polled, as above)
                    system = await system_of(arbiter, admin)
                    state = next(a for a in system["agents"] if a["id"] == ann["id"])
                    if state["status"] == "away" and name not in actor_names(system):
                        break
                    await trio.sleep(0.1)
    assert ann["status"] == "available"
    assert name in while_connected  # asked on the edge: the arbiter's actors are shown
    assert state["connections"] == 0


async def test_an_agents_profile_edited_on_an_edge_node_is_written_on_the_arbiter(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    """Forwarded to her actor on the arbiter, which stores it; a taken email crosses the bus as
    the same 409 a single node answers, and changes nothing."""
    with trio.fail_after(120):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            arbiter, edge = await cluster.start_nodes(nursery, "node-a", "node-b")
            admin = await admin_headers(edge)
            ann = {"Authorization": f"Bearer {await edge.login(ANN)}"}
            renamed = await edge.http.put("/profile", json={"name": "Ann Lee"}, headers=ann)
            taken = await edge.http.put(
                f"/admin/users/{renamed.json()['id']}", json={"email": BOB}, headers=admin
            )
            shown = await arbiter.http.get(f"/admin/users/{renamed.json()['id']}", headers=admin)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Ann Lee"
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"]["code"] == "email_taken"
    assert shown.status_code == 200, shown.text
    assert (shown.json()["name"], shown.json()["email"]) == ("Ann Lee", ANN)
