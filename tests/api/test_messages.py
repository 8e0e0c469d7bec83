"""Messages over REST: seqs, live fan-out, idempotency keys, receipts, who may touch what."""

from __future__ import annotations

from actors import MessageAdded
from tests.api.support import (
    ANN,
    BOB,
    CUSTOMER_2,
    UNKNOWN_ID,
    assert_error,
    available_agent,
    connect,
    customer,
    open_chat,
    send,
    staff,
)
from tests.conftest import Live

MESSAGE_FIELDS = {
    "id",
    "chatId",
    "seq",
    "senderId",
    "receiverId",
    "content",
    "status",
    "senderRole",
    "createdAt",
}


async def test_messages_both_ways_get_seqs_and_reach_live_connections(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    await connect(live, carla)
    chat_id = (await open_chat(live, carla))["id"]

    asked = await send(live, carla, chat_id, "Where is my parcel?")
    assert asked.status_code == 201, asked.text
    assert set(asked.json()) == MESSAGE_FIELDS
    assert (asked.json()["seq"], asked.json()["senderRole"]) == (1, "customer")
    assert (asked.json()["senderId"], asked.json()["receiverId"]) == (carla.id, ann.id)
    answered = await send(live, ann, chat_id, "On its way")
    assert (answered.json()["seq"], answered.json()["receiverId"]) == (2, carla.id)

    [pushed] = await ann.inbox.wait_for(
        lambda e: isinstance(e, MessageAdded) and e.message.seq == 1
    )
    assert isinstance(pushed, MessageAdded)
    assert pushed.message.id == asked.json()["id"]
    [reply] = await carla.inbox.wait_for(
        lambda e: isinstance(e, MessageAdded) and e.message.seq == 2
    )
    assert isinstance(reply, MessageAdded)
    assert reply.message.content == "On its way"

    for side, caller in (("agent", ann), ("customer", carla)):
        listed = await live.http.get(f"/messages/{side}/{chat_id}", headers=caller.headers)
        assert [m["content"] for m in listed.json()] == ["Where is my parcel?", "On its way"]


async def test_messages_page_by_seq(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    for i in range(5):
        assert (await send(live, carla, chat_id, f"m{i}")).status_code == 201
    seqs: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await live.http.get(f"/messages/agent/{chat_id}", headers=ann.headers, params=params)
        seqs += [m["seq"] for m in page.json()]
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    assert seqs == [1, 2, 3, 4, 5]


async def test_a_resent_message_is_stored_once(live: Live) -> None:
    await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]

    first = await send(live, carla, chat_id, "hello", clientMsgId="c-1")
    again = await send(live, carla, chat_id, "hello", clientMsgId="c-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()

    by_header = await live.http.post(
        "/messages/customer/send",
        headers={**carla.headers, "Idempotency-Key": "c-2"},
        json={"chatId": chat_id, "content": "second"},
    )
    header_again = await live.http.post(
        "/messages/customer/send",
        headers={**carla.headers, "Idempotency-Key": "c-2"},
        json={"chatId": chat_id, "content": "second"},
    )
    assert (by_header.status_code, header_again.status_code) == (201, 200)
    assert header_again.json()["seq"] == by_header.json()["seq"] == 2

    mismatch = await live.http.post(
        "/messages/customer/send",
        headers={**carla.headers, "Idempotency-Key": "c-3"},
        json={"chatId": chat_id, "content": "third", "clientMsgId": "c-4"},
    )
    assert_error(mismatch, 409, "idempotency_key_mismatch")
    # Without a key the server makes one up: a retry is a second message.
    assert (await send(live, carla, chat_id, "no key")).json()["seq"] == 3
    assert (await send(live, carla, chat_id, "no key")).json()["seq"] == 4
    stored = await live.services.store.list_messages(chat_id)
    assert [m.seq for m in stored] == [1, 2, 3, 4]


async def test_receipts_mark_the_other_sides_messages(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    first = (await send(live, carla, chat_id, "one")).json()
    second = (await send(live, carla, chat_id, "two")).json()
    own = (await send(live, ann, chat_id, "mine")).json()

    delivered = await live.http.put(f"/messages/agent/{first['id']}/delivered", headers=ann.headers)
    assert delivered.json()["status"] == "delivered"
    seen = await live.http.put(f"/messages/agent/{second['id']}/seen", headers=ann.headers)
    assert seen.json()["status"] == "seen"
    # Cumulative, as over the websocket; and one's own messages are not one's to mark.
    mine = await live.http.put(f"/messages/agent/{own['id']}/seen", headers=ann.headers)
    assert mine.json()["status"] == "sent"
    listed = await live.http.get(f"/messages/customer/{chat_id}", headers=carla.headers)
    assert [m["status"] for m in listed.json()] == ["seen", "seen", "sent"]

    bad = await live.http.put(f"/messages/agent/{first['id']}/read", headers=ann.headers)
    assert_error(bad, 400, "invalid_status")


async def test_strangers_cannot_read_write_or_mark(live: Live) -> None:
    await available_agent(live, ANN)
    bob = await staff(live, BOB)
    carla, dan = await customer(live), await customer(live, CUSTOMER_2)
    chat_id = (await open_chat(live, carla))["id"]
    message = (await send(live, carla, chat_id, "private")).json()

    assert_error(await send(live, bob, chat_id, "let me in"), 404, "chat_not_found")
    assert_error(await send(live, dan, chat_id, "me too"), 404, "chat_not_found")
    reading = await live.http.get(f"/messages/customer/{chat_id}", headers=dan.headers)
    assert_error(reading, 404, "chat_not_found")
    for who, side in ((bob, "agent"), (dan, "customer")):
        marking = await live.http.put(f"/messages/{side}/{message['id']}/seen", headers=who.headers)
        assert_error(marking, 404, "message_not_found")
    unknown = await live.http.put(f"/messages/agent/{UNKNOWN_ID}/seen", headers=bob.headers)
    assert_error(unknown, 404, "message_not_found")
    stored = await live.services.store.list_messages(chat_id)
    assert [(m.content, m.status) for m in stored] == [("private", "sent")]


async def test_a_resolved_chat_takes_no_more_messages(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    resolved = await live.http.put(f"/chats/agent/{chat_id}/resolved", headers=ann.headers)
    assert resolved.status_code == 200
    assert_error(await send(live, carla, chat_id, "hello?"), 409, "chat_resolved")
    assert await live.services.store.list_messages(chat_id) == []


async def test_bad_message_bodies_are_refused(live: Live) -> None:
    await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    for body in (
        {"chatId": chat_id, "content": ""},
        {"chatId": chat_id, "content": " \n\t "},
        {"chatId": "not-an-id", "content": "hi"},
        {"chatId": chat_id},
        {"chatId": chat_id, "content": "hi", "clientMsgId": "has space"},
        {"chatId": chat_id, "content": "hi", "sender": "admin"},
        {"chatId": chat_id, "content": 42},
    ):
        response = await live.http.post("/messages/customer/send", headers=carla.headers, json=body)
        assert_error(response, 400, "invalid_body")
    huge = await send(live, carla, chat_id, "x" * live.services.settings.max_body_bytes)
    assert_error(huge, 413, "payload_too_large")
    bad_key = await live.http.post(
        "/messages/customer/send",
        headers={**carla.headers, "Idempotency-Key": "x" * 200},
        json={"chatId": chat_id, "content": "hi"},
    )
    assert_error(bad_key, 400, "invalid_headers")
    assert await live.services.store.list_messages(chat_id) == []
