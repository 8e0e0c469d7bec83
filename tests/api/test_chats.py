"""Chats over REST: find-or-create, who sees which chat, an agent's status and chat changes."""

from __future__ import annotations

from actors import ChatAssigned
from tests.api.support import (
    ANN,
    BOB,
    CUSTOMER_2,
    UNKNOWN_ID,
    assert_error,
    available_agent,
    customer,
    open_chat,
    send,
    staff,
)
from tests.conftest import Live

CHAT_FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "customerUnreadCount",
    "agentUnreadCount",
    "createdAt",
    "updatedAt",
    "lastSeq",
    "lastMessage",
    "customer",
    "agent",
}


async def test_customer_chat_is_found_or_created_and_assigned(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    created = await live.http.post(
        "/chats/customer",
        headers=carla.headers,
        json={"title": "Return", "description": "Wrong size", "priority": "high"},
    )
    assert created.status_code == 201, created.text
    chat = created.json()
    assert set(chat) == CHAT_FIELDS
    assert (chat["title"], chat["description"], chat["priority"]) == (
        "Return",
        "Wrong size",
        "high",
    )
    assert (chat["status"], chat["customer"]) == ("open", carla.id)
    assert chat["agent"] == {"_id": ann.id, "name": "Ann Agent", "email": ANN}
    assert any(isinstance(e, ChatAssigned) and e.chat.id == chat["id"] for e in ann.events)

    again = await live.http.post("/chats/customer", headers=carla.headers, json={})
    assert again.status_code == 200
    assert again.json()["id"] == chat["id"]


async def test_without_an_available_agent_the_chat_waits(live: Live) -> None:
    carla = await customer(live)
    chat = await open_chat(live, carla, title=None)
    assert (chat["status"], chat["agent"]) == ("new", None)
    assert chat["title"] == "Chat with Carla Customer"


async def test_agents_and_customers_see_only_their_chats(live: Live) -> None:
    await available_agent(live, ANN)
    bob = await staff(live, BOB)
    ann = await staff(live, ANN)
    carla, dan = await customer(live), await customer(live, CUSTOMER_2)
    chat = await open_chat(live, carla)

    mine = await live.http.get("/chats/agent", headers=ann.headers)
    assert [c["id"] for c in mine.json()] == [chat["id"]]
    shown = await live.http.get(f"/chats/agent/show/{chat['id']}", headers=ann.headers)
    assert shown.json()["id"] == chat["id"]

    assert (await live.http.get("/chats/agent", headers=bob.headers)).json() == []
    for response in (
        await live.http.get(f"/chats/agent/show/{chat['id']}", headers=bob.headers),
        await live.http.put(f"/chats/agent/{chat['id']}/resolved", headers=bob.headers),
        await live.http.put(f"/chats/customer/read/{chat['id']}", headers=dan.headers),
        await live.http.get(f"/chats/agent/show/{UNKNOWN_ID}", headers=ann.headers),
    ):
        assert_error(response, 404, "chat_not_found")
    stored = await live.services.store.get_chat(chat["id"])
    assert stored is not None
    assert stored.status == "open"


async def test_agent_parks_and_resolves_a_chat(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]

    parked = await live.http.put(f"/chats/agent/{chat_id}/pending", headers=ann.headers)
    assert parked.status_code == 200, parked.text
    assert (parked.json()["status"], parked.json()["agent"]) == ("pending", None)
    # Pending waits for the customer: when they write, the chat is queued and assigned again.
    assert (await send(live, carla, chat_id, "still there?")).status_code == 201
    await ann.inbox.wait_for(lambda e: isinstance(e, ChatAssigned) and e.chat.id == chat_id, 2)
    back = await live.http.get(f"/chats/agent/show/{chat_id}", headers=ann.headers)
    assert back.json()["status"] == "open"

    resolved = await live.http.put(f"/chats/agent/{chat_id}/resolved", headers=ann.headers)
    assert resolved.json()["status"] == "resolved"
    again = await live.http.put(f"/chats/agent/{chat_id}/resolved", headers=ann.headers)
    assert_error(again, 409, "chat_not_active")
    # A resolved chat stays readable by the agent who handled it.
    kept = await live.http.get(f"/chats/agent/show/{chat_id}", headers=ann.headers)
    assert kept.json()["status"] == "resolved"


async def test_unknown_chat_status_is_refused_and_changes_nothing(live: Live) -> None:
    ann = await available_agent(live, ANN)
    chat_id = (await open_chat(live, await customer(live)))["id"]
    error = assert_error(
        await live.http.put(f"/chats/agent/{chat_id}/closed", headers=ann.headers),
        400,
        "invalid_status",
    )
    assert "pending, resolved" in error["message"]
    stored = await live.services.store.get_chat(chat_id)
    assert stored is not None
    assert stored.status == "open"


async def test_agent_sets_own_status(live: Live) -> None:
    ann = await staff(live, ANN)
    available = await live.http.put("/profile/agent/available", headers=ann.headers)
    assert available.json()["status"] == "available"
    away = await live.http.put("/profile/agent/away", headers=ann.headers)
    assert away.json()["status"] == "away"
    busy = await live.http.put("/profile/agent/busy", headers=ann.headers)
    assert "set by the system" in assert_error(busy, 400, "status_not_settable")["message"]
    asleep = await live.http.put("/profile/agent/asleep", headers=ann.headers)
    assert "one of: available, away" in assert_error(asleep, 400, "invalid_status")["message"]
    stored = await live.services.store.get_user(ann.id)
    assert stored is not None
    assert stored.status == "away"


async def test_reading_a_chat_clears_the_readers_unread_count(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    for text in ("one", "two"):
        assert (await send(live, ann, chat_id, text)).status_code == 201
    assert (await send(live, carla, chat_id, "three")).status_code == 201

    read = await live.http.put(f"/chats/customer/read/{chat_id}", headers=carla.headers)
    assert read.status_code == 200, read.text
    assert (read.json()["customerUnreadCount"], read.json()["agentUnreadCount"]) == (0, 1)
    listed = await live.http.get(f"/messages/customer/{chat_id}", headers=carla.headers)
    assert [m["status"] for m in listed.json()] == ["seen", "seen", "sent"]

    read = await live.http.put(f"/chats/agent/read/{chat_id}", headers=ann.headers)
    assert read.json()["agentUnreadCount"] == 0


async def test_bad_chat_bodies_are_refused(live: Live) -> None:
    carla = await customer(live)
    for body in (
        {"title": "   "},
        {"title": "x" * 201},
        {"priority": "critical"},
        {"title": 5},
        {"status": "open"},
        ["not", "an", "object"],
    ):
        response = await live.http.post("/chats/customer", headers=carla.headers, json=body)
        assert_error(response, 400, "invalid_body")
    assert await live.services.store.count_chats() == 0
