"""The admin floor feed over a real /ws: `floor.watch` answers with the whole floor, then only
what changes arrives; only admins may watch."""

from __future__ import annotations

from api import DEMO_STAFF
from store import Role
from tests.conftest import Live
from tests.e2e.wsclient import connect, open_chat, ready_agent


async def test_an_admin_watches_the_floor_change(live: Live) -> None:
    admin_token = await live.login("admin@switchboard.example", admin=True)
    async with connect(live, admin_token) as admin:
        await admin.send({"type": "floor.watch"})
        whole = await admin.expect("floor", full=True)
        # Every seeded agent, in the order they were made.
        assert [agent["name"] for agent in whole["agents"]] == [
            a.name for a in DEMO_STAFF if a.role is Role.AGENT
        ]
        assert whole["queue"] == []
        assert whole["queueLength"] == 0
        ann_id = next(a["id"] for a in whole["agents"] if a["name"] == "Ann Agent")

        async with connect(live, await live.login("ann@switchboard.example")) as ann:
            await ready_agent(live, ann)
            change = await admin.expect("floor", full=False)
            assert change["removedAgents"] == []
            assert [(a["id"], a["connections"]) for a in change["agents"]] == [(ann_id, 1)]
            customer = await live.customer_token("shop-customer-1")
            async with connect(live, customer) as shopper:
                chat = await open_chat(shopper, "Lost parcel")
                while True:  # updates are coalesced: how many come depends on timing
                    frame = await admin.expect("floor", full=False)
                    [agent] = [a for a in frame["agents"] if a["id"] == ann_id] or [None]
                    if agent is not None and agent["load"] == 1:
                        break
                assert agent["chats"] == [
                    {"id": chat["id"], "title": "Lost parcel", "priority": "medium"}
                ]
                assert agent["maxLoad"] == 3
                assert agent["idleSeconds"] >= 0

        await admin.send({"type": "floor.watch", "on": False})
        await admin.ping()


async def test_only_admins_watch_the_floor(live: Live) -> None:
    async with connect(live, await live.login("bob@switchboard.example")) as bob:
        refused = await bob.request({"type": "floor.watch"}, "error")
        assert refused["code"] == "forbidden"
        assert refused["ref"] == "floor.watch"
        await bob.ping()
        assert bob.of_type("floor") == []
