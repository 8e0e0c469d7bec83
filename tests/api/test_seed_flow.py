"""The original backend's flow, end to end over REST: a customer opens a chat, an agent gets it,
they write both ways, the agent sets it pending, the customer writes again and another agent
gets it, that agent resolves it, and the admin's history shows every step with its reason."""

from __future__ import annotations

from actors import ChatAssigned
from tests.api.support import ADMIN, ANN, BOB, available_agent, customer, open_chat, send, staff
from tests.conftest import Live


async def test_open_assign_talk_park_reassign_resolve_and_history(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    admin = await staff(live, ADMIN)

    chat = await open_chat(live, carla, title="Product return request")
    chat_id = chat["id"]
    assert (chat["status"], chat["agent"]["_id"]) == ("open", ann.id)

    assert (await send(live, carla, chat_id, "I want to return a product")).status_code == 201
    assert (await send(live, ann, chat_id, "Which order number?")).status_code == 201
    parked = await live.http.put(f"/chats/agent/{chat_id}/pending", headers=ann.headers)
    assert parked.json()["status"] == "pending"

    # Ann leaves; Bob is on duty when Carla answers, so the chat goes to him.
    assert (await live.http.put("/profile/agent/away", headers=ann.headers)).is_success
    bob = await available_agent(live, BOB)
    assert (await send(live, carla, chat_id, "Order 1234")).status_code == 201
    [assigned] = await bob.inbox.wait_for(
        lambda e: isinstance(e, ChatAssigned) and e.chat.id == chat_id
    )
    assert isinstance(assigned, ChatAssigned)
    assert assigned.reason.startswith("least loaded")

    assert (await send(live, bob, chat_id, "Return label sent")).status_code == 201
    resolved = await live.http.put(f"/chats/agent/{chat_id}/resolved", headers=bob.headers)
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["agent"]["_id"] == bob.id

    messages = await live.http.get(f"/messages/customer/{chat_id}", headers=carla.headers)
    assert [(m["seq"], m["senderId"]) for m in messages.json()] == [
        (1, carla.id),
        (2, ann.id),
        (3, carla.id),
        (4, bob.id),
    ]
    history = await live.http.get(f"/admin/chats/{chat_id}/history", headers=admin.headers)
    steps = [(e["kind"], e["actor"], e["from"], e["to"]) for e in history.json()]
    assert steps == [
        ("assignment", "system", None, ann.id),
        ("chat_status", "system", "new", "open"),
        ("chat_status", "self", "open", "pending"),
        ("assignment", "self", ann.id, None),
        ("assignment", "system", None, bob.id),
        ("chat_status", "system", "pending", "open"),
        ("chat_status", "self", "open", "resolved"),
    ]
    assert all(entry["reason"] for entry in history.json())
    ann_history = await live.http.get(f"/admin/agents/{ann.id}/history", headers=admin.headers)
    statuses = [(e["from"], e["to"]) for e in ann_history.json() if e["kind"] == "agent_status"]
    assert statuses == [("away", "available"), ("available", "away")]
