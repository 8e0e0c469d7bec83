"""Every chat, for admins: filters, reassign, park, close, delete, and each chat's history."""

from __future__ import annotations

import httpx
import pytest

from actors import ChatAssigned, ChatUnassigned, Speaker
from router import Refused
from store import MessageStatus, Role
from tests.api.support import (
    ADMIN,
    ANN,
    BOB,
    CUSTOMER_2,
    CY,
    UNKNOWN_ID,
    assert_error,
    available_agent,
    connect,
    customer,
    open_chat,
    staff,
)
from tests.conftest import Live


async def test_chats_are_filtered(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    carla, dan = await customer(live), await customer(live, CUSTOMER_2)
    urgent = await open_chat(live, carla, priority="urgent")
    low = await open_chat(live, dan, priority="low")

    async def listed(**params: str) -> list[str]:
        response = await live.http.get("/admin/chats", headers=admin.headers, params=params)
        assert response.status_code == 200, response.text
        return [chat["id"] for chat in response.json()]

    assert await listed() == [low["id"], urgent["id"]]
    assert await listed(priority="urgent") == [urgent["id"]]
    assert await listed(customerId=dan.id) == [low["id"]]
    assert await listed(agentId=ann.id, status="open") == [low["id"], urgent["id"]]
    assert await listed(status="resolved") == []
    assert await listed(createdFrom=low["createdAt"]) == [low["id"]]
    assert await listed(createdTo=low["createdAt"]) == [urgent["id"]]
    for params in (
        {"status": "closed"},
        {"createdFrom": "yesterday"},
        {"createdFrom": "2025-01-01T00:00:00"},  # no offset: which day would that be?
        {"createdTo": "1700000000"},
        {"agentId": "ann"},
        {"sort": "title"},
    ):
        bad = await live.http.get("/admin/chats", headers=admin.headers, params=params)
        assert_error(bad, 400, "invalid_query")


async def test_reassign_is_refused_with_the_reason_then_done(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]
    bob, cy = await staff(live, BOB), await staff(live, CY)

    async def reassign(agent_id: str) -> httpx.Response:
        return await live.http.post(
            f"/admin/chats/{chat_id}/reassign", headers=admin.headers, json={"agentId": agent_id}
        )

    away = assert_error(await reassign(bob.id), 409, "agent_away")
    assert away["message"] == f"agent {bob.id} is away"
    made_available = await live.http.put(
        f"/admin/agents/{bob.id}/status", headers=admin.headers, json={"status": "available"}
    )
    assert made_available.json()["status"] == "available"
    assert_error(await reassign(bob.id), 409, "agent_offline")
    assert_error(await reassign(ann.id), 409, "already_assigned")
    assert_error(await reassign(UNKNOWN_ID), 404, "agent_not_found")
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert chat.agent_id == ann.id

    await connect(live, cy)
    assert (await live.http.put("/profile/agent/available", headers=cy.headers)).is_success
    moved = await reassign(cy.id)
    assert moved.status_code == 200, moved.text
    assert moved.json()["agent"] == {"_id": cy.id, "name": "Cy Agent", "email": CY}
    assert any(isinstance(e, ChatUnassigned) and e.chat_id == chat_id for e in ann.events)
    assert any(isinstance(e, ChatAssigned) and e.chat.id == chat_id for e in cy.events)


async def test_reassign_to_an_agent_at_max_load_is_refused(live: Live) -> None:
    admin = await staff(live, ADMIN)
    cy = await available_agent(live, CY)  # max load 2
    for external_id in ("shop-customer-1", "shop-customer-2"):
        await open_chat(live, await customer(live, external_id))
    ann = await available_agent(live, ANN)
    third = await open_chat(live, await customer(live, "shop-customer-3"))
    assert third["agent"]["_id"] == ann.id
    refused = await live.http.post(
        f"/admin/chats/{third['id']}/reassign", headers=admin.headers, json={"agentId": cy.id}
    )
    assert "max load (2/2)" in assert_error(refused, 409, "agent_at_max_load")["message"]


async def test_close_update_delete_and_history(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]

    unchanged = await live.http.put(f"/admin/chats/{chat_id}", headers=admin.headers, json={})
    assert unchanged.json()["status"] == "open"
    parked = await live.http.put(
        f"/admin/chats/{chat_id}", headers=admin.headers, json={"status": "pending"}
    )
    assert (parked.json()["status"], parked.json()["agent"]) == ("pending", None)
    back = await live.http.put(
        f"/admin/chats/{chat_id}", headers=admin.headers, json={"agentId": ann.id}
    )
    assert back.json()["status"] == "open"
    closed = await live.http.post(f"/admin/chats/{chat_id}/close", headers=admin.headers)
    assert closed.json()["status"] == "resolved"
    again = await live.http.post(f"/admin/chats/{chat_id}/close", headers=admin.headers)
    assert_error(again, 409, "chat_not_active")

    history = await live.http.get(f"/admin/chats/{chat_id}/history", headers=admin.headers)
    entries = [(e["kind"], e["actor"], e["from"], e["to"]) for e in history.json()]
    assert entries == [
        ("assignment", "system", None, ann.id),
        ("chat_status", "system", "new", "open"),
        ("chat_status", "admin", "open", "pending"),
        ("assignment", "admin", ann.id, None),
        ("assignment", "admin", None, ann.id),
        ("chat_status", "admin", "pending", "open"),
        ("chat_status", "admin", "open", "resolved"),
    ]
    assert all(e["actorId"] == admin.id for e in history.json() if e["actor"] == "admin")
    assert history.json()[0]["reason"].startswith("least loaded")

    deleted = await live.http.delete(f"/admin/chats/{chat_id}", headers=admin.headers)
    assert deleted.status_code == 200
    assert await live.services.store.get_chat(chat_id) is None
    assert_error(
        await live.http.get(f"/admin/chats/{chat_id}", headers=admin.headers),
        404,
        "chat_not_found",
    )


async def test_deleting_an_active_chat_resolves_it_first(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]
    deleted = await live.http.delete(f"/admin/chats/{chat_id}", headers=admin.headers)
    assert deleted.status_code == 200
    agents = (await live.http.get("/admin/agents", headers=admin.headers)).json()
    assert next(a for a in agents if a["id"] == ann.id)["load"] == 0


async def test_deleting_a_chat_with_a_live_conversation_stops_it_first(live: Live) -> None:
    """The conversation is stopped before the chat is deleted: a receipt arriving afterwards is
    refused as a missing chat, not a crash of an actor writing a chat that is gone."""
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    system = live.services.system
    await system.send_message(
        chat_id, Speaker(carla.id, Role.CUSTOMER), client_msg_id="m1", content="hello"
    )
    conversation = f"chat:{chat_id}"
    assert conversation in {actor.name for actor in system.actor_states()}
    deleted = await live.http.delete(f"/admin/chats/{chat_id}", headers=admin.headers)
    assert deleted.status_code == 200
    assert conversation not in {actor.name for actor in system.actor_states()}
    with pytest.raises(Refused) as refused:
        await system.mark_read(
            chat_id, Speaker(ann.id, Role.AGENT), seq=1, status=MessageStatus.SEEN
        )
    assert refused.value.code == "chat_not_found"
    assert not any(actor.restarts for actor in system.actor_states())
    assert_error(
        await live.http.get(f"/messages/customer/{chat_id}", headers=carla.headers),
        404,
        "chat_not_found",
    )


async def test_a_renamed_chat_shows_its_new_title_when_next_reassigned(live: Live) -> None:
    """The assignment actor answers and pushes from its own copy of each active chat: a title
    the admin stored is told to it, so the next decision does not show the old one."""
    admin = await staff(live, ADMIN)
    await available_agent(live, ANN)
    chat = await open_chat(live, await customer(live))
    path = f"/admin/chats/{chat['id']}"
    renamed = await live.http.put(path, headers=admin.headers, json={"title": "Lost parcel"})
    assert renamed.status_code == 200, renamed.text
    cy = await available_agent(live, CY)
    moved = await live.http.put(path, headers=admin.headers, json={"agentId": cy.id})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["title"], moved.json()["agent"]["_id"]) == ("Lost parcel", cy.id)
    pushed = [e for e in cy.events if isinstance(e, ChatAssigned) and e.chat.id == chat["id"]]
    assert [e.chat.title for e in pushed] == ["Lost parcel"]


async def test_the_edit_form_reassigns_and_renames_and_a_waiting_chat_can_be_set_pending(
    live: Live,
) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    chat = await open_chat(live, await customer(live), description="my parcel never came")
    cy = await available_agent(live, CY)
    # The original admin panel's edit form sends the agent, the title and the description.
    edited = await live.http.put(
        f"/admin/chats/{chat['id']}",
        headers=admin.headers,
        json={"agentId": cy.id, "title": "Lost parcel", "description": "order 42"},
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["title"], body["description"], body["agent"]["_id"]) == (
        "Lost parcel",
        "order 42",
        cy.id,
    )
    assert any(isinstance(e, ChatUnassigned) and e.chat_id == chat["id"] for e in ann.events)
    too_long = {"title": "x" * 201}
    refused = await live.http.put(
        f"/admin/chats/{chat['id']}", headers=admin.headers, json=too_long
    )
    assert_error(refused, 400, "invalid_body")

    # A chat waiting for an agent set pending by an admin, as the original allowed: it leaves
    # the queue and waits for its customer.
    await live.http.put("/profile/agent/away", headers=cy.headers)
    await live.http.put("/profile/agent/away", headers=ann.headers)
    waiting = await open_chat(live, await customer(live, CUSTOMER_2))
    assert waiting["status"] == "new"
    pending = await live.http.put(
        f"/admin/chats/{waiting['id']}", headers=admin.headers, json={"status": "pending"}
    )
    assert pending.status_code == 200, pending.text
    assert (pending.json()["status"], pending.json()["agent"]) == ("pending", None)
    queue = await live.http.get("/admin/queue", headers=admin.headers)
    assert waiting["id"] not in [entry["chatId"] for entry in queue.json()]
    again = await live.http.put(
        f"/admin/chats/{waiting['id']}", headers=admin.headers, json={"status": "pending"}
    )
    assert again.json()["status"] == "pending"
