"""The routing state for admins: agents, the queue, status and max load, history, the system."""

from __future__ import annotations

from actors import AgentStatusEvent
from api import DEMO_STAFF
from store import Role
from tests.api.support import (
    ADMIN,
    ANN,
    CY,
    UNKNOWN_ID,
    assert_error,
    available_agent,
    customer,
    open_chat,
    staff,
    walk_pages,
)
from tests.conftest import Live

AGENT_FIELDS = {
    "id",
    "name",
    "email",
    "status",
    "connections",
    "load",
    "maxLoad",
    "idleSeconds",
    "chatIds",
}


async def test_agents_show_status_connections_and_load(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]

    listed = await live.http.get("/admin/agents", headers=admin.headers)
    agents = {a["email"]: a for a in listed.json()}
    seeded = {a.email: a.max_load for a in DEMO_STAFF if a.role is Role.AGENT}
    assert set(agents) == set(seeded)
    assert all(set(a) == AGENT_FIELDS for a in agents.values())
    assert (agents[ANN]["status"], agents[ANN]["connections"], agents[ANN]["load"]) == (
        "available",
        1,
        1,
    )
    assert agents[ANN]["chatIds"] == [chat_id]
    assert agents[ANN]["idleSeconds"] >= 0
    others = {e: (a["status"], a["maxLoad"]) for e, a in agents.items() if e != ANN}
    assert others == {e: ("away", load) for e, load in seeded.items() if e != ANN}
    assert agents[ANN]["id"] == ann.id

    paged = await walk_pages(live, admin, "/admin/agents", 2)
    assert paged == [a["id"] for a in listed.json()]


async def test_queue_in_serving_order(live: Live) -> None:
    admin = await staff(live, ADMIN)
    low = await open_chat(live, await customer(live, "shop-customer-1"), priority="low")
    urgent = await open_chat(live, await customer(live, "shop-customer-2"), priority="urgent")
    medium = await open_chat(live, await customer(live, "shop-customer-3"))

    queue = await live.http.get("/admin/queue", headers=admin.headers)
    entries = queue.json()
    assert [(e["chatId"], e["position"], e["priority"]) for e in entries] == [
        (urgent["id"], 1, "urgent"),
        (medium["id"], 2, "medium"),
        (low["id"], 3, "low"),
    ]
    assert all(e["waitingSeconds"] >= 0 and e["status"] == "new" for e in entries)
    paged = await live.http.get("/admin/queue", headers=admin.headers, params={"limit": 2})
    assert paged.headers["X-Next-Cursor"] == "2"
    tail = await live.http.get(
        "/admin/queue", headers=admin.headers, params={"limit": 2, "cursor": "2"}
    )
    assert [e["chatId"] for e in tail.json()] == [low["id"]]

    # An agent coming available drains the queue at once, most urgent first.
    await available_agent(live, CY)  # max load 2
    left = (await live.http.get("/admin/queue", headers=admin.headers)).json()
    assert [(e["chatId"], e["position"]) for e in left] == [(low["id"], 1)]


async def test_admin_sets_max_load_and_forces_an_agent_away(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]

    raised = await live.http.put(
        f"/admin/agents/{ann.id}/max-load", headers=admin.headers, json={"maxLoad": 6}
    )
    assert (raised.json()["maxLoad"], raised.json()["load"]) == (6, 1)
    for body in ({"maxLoad": 0}, {"maxLoad": "many"}, {"maxLoad": 101}, {}):
        bad = await live.http.put(
            f"/admin/agents/{ann.id}/max-load", headers=admin.headers, json=body
        )
        assert_error(bad, 400, "invalid_body")
    unknown = await live.http.put(
        f"/admin/agents/{UNKNOWN_ID}/max-load", headers=admin.headers, json={"maxLoad": 2}
    )
    assert_error(unknown, 404, "agent_not_found")

    away = await live.http.put(
        f"/admin/agents/{ann.id}/status", headers=admin.headers, json={"status": "away"}
    )
    assert (away.json()["status"], away.json()["load"]) == ("away", 0)
    assert any(isinstance(e, AgentStatusEvent) and e.status == "away" for e in ann.events)
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert (chat.status, chat.agent_id) == ("pending", None)
    busy = await live.http.put(
        f"/admin/agents/{ann.id}/status", headers=admin.headers, json={"status": "busy"}
    )
    assert_error(busy, 400, "invalid_body")

    history = await live.http.get(f"/admin/agents/{ann.id}/history", headers=admin.headers)
    changes = [(e["kind"], e["actor"], e["reason"]) for e in history.json()]
    assert ("agent_status", "admin", "max load 3 -> 6") in changes
    forced = [e for e in history.json() if e["kind"] == "agent_status" and e["to"] == "away"]
    assert [(e["actor"], e["actorId"]) for e in forced] == [("admin", admin.id)]
    assert_error(
        await live.http.get(f"/admin/agents/{UNKNOWN_ID}/history", headers=admin.headers),
        404,
        "agent_not_found",
    )


async def test_system_snapshot(live: Live) -> None:
    admin = await staff(live, ADMIN)
    await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]
    snapshot = await live.http.get("/admin/system", headers=admin.headers)
    body = snapshot.json()
    assert set(body) == {"agents", "queue", "parked", "actors", "sessions", "cluster"}
    assert body["sessions"] == 1
    # Without a bus: one node, which leads, with nothing to fence, holding every session.
    cluster = body["cluster"]
    assert cluster["mode"] == "single"
    assert cluster["leader"] == cluster["node"]
    assert cluster["fencingToken"] is None
    assert cluster["nodes"] == [{"id": cluster["node"], "connections": 1, "leads": True}]
    assert (body["queue"], body["parked"]) == ([], [])
    assert [a["chatIds"] for a in body["agents"] if a["load"]] == [[chat_id]]
    names = {actor["name"]: actor for actor in body["actors"]}
    assert names["supervisor"]["alive"] is True
    assert set(names["supervisor"]) == {"name", "alive", "mailboxDepth", "restarts"}
