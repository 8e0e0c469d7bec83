"""Dashboards: an agent's own figures and recent chats, the admin's figures and every chat."""

from __future__ import annotations

from api import DEMO_CUSTOMERS, DEMO_STAFF
from store import Role
from tests.api.support import (
    ADMIN,
    ANN,
    CUSTOMER_2,
    available_agent,
    customer,
    open_chat,
    staff,
)
from tests.conftest import Live


async def test_agent_statistics_and_recent_chats(live: Live) -> None:
    ann = await available_agent(live, ANN)
    first = await open_chat(live, await customer(live))
    second = await open_chat(live, await customer(live, CUSTOMER_2))
    resolved = await live.http.put(f"/chats/agent/{first['id']}/resolved", headers=ann.headers)
    assert resolved.status_code == 200

    figures = await live.http.get("/dashboard/statistics", headers=ann.headers)
    assert figures.json() == {
        # The original's shape, read by the agent dashboard's tiles.
        "message": "Statistics fetched successfully",
        "statistics": {"chat": {"total": 2, "resolved": 1, "pending": 0, "open": 1, "new": 0}},
        "status": "available",
        "maxLoad": 3,
        "openChats": 1,
        "resolvedChats": 1,
        "totalChats": 2,
    }
    recent = await live.http.get("/dashboard/recent-chats", headers=ann.headers)
    assert [c["id"] for c in recent.json()] == [second["id"], first["id"]]


async def test_admin_statistics_count_accounts_chats_queue_and_agents(live: Live) -> None:
    admin = await staff(live, ADMIN)
    await available_agent(live, ANN)
    await open_chat(live, await customer(live))
    await open_chat(live, await customer(live, CUSTOMER_2))
    # Ann took both; at a max load of two she is busy, so a third chat waits.
    await live.http.put(
        f"/admin/agents/{(await staff(live, ANN)).id}/max-load",
        headers=admin.headers,
        json={"maxLoad": 2},
    )
    newcomer = "shop-customer-3"
    await open_chat(live, await customer(live, newcomer))

    figures = await live.http.get("/admin/dashboard/statistics", headers=admin.headers)
    assert figures.status_code == 200, figures.text
    # Counted from the seed, so the figures stay true when demo accounts are added.
    seeded = {role: sum(a.role is role for a in DEMO_STAFF) for role in Role}
    agents = seeded[Role.AGENT]
    customers = len({shop_id for shop_id, _ in DEMO_CUSTOMERS} | {newcomer})
    assert figures.json() == {
        # The original's shape, read by the admin panel's tiles.
        "message": "Statistics fetched successfully",
        "statistics": {
            "user": {"totalAgents": agents, "totalUsers": seeded[Role.USER]},
            "chat": {"total": 3, "resolved": 0, "pending": 0, "open": 2, "new": 1},
        },
        "users": seeded[Role.USER],
        "agents": agents,
        "admins": seeded[Role.ADMIN],
        "customers": customers,
        "totalChats": 3,
        "newChats": 1,
        "openChats": 2,
        "pendingChats": 0,
        "resolvedChats": 0,
        "queuedChats": 1,
        "agentsOnline": 1,
        "agentsAvailable": 0,
        "agentsBusy": 1,
        "agentsAway": agents - 1,
    }
    recent = await live.http.get(
        "/admin/dashboard/recent-chats", headers=admin.headers, params={"limit": 2}
    )
    assert [c["status"] for c in recent.json()] == ["new", "open"]
    assert "X-Next-Cursor" in recent.headers
