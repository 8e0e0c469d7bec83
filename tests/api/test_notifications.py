"""Notifications: written for messages to a receiver with no live connection; read, list, delete."""

from __future__ import annotations

from tests.api.support import (
    ANN,
    CUSTOMER_2,
    UNKNOWN_ID,
    assert_error,
    available_agent,
    connect,
    customer,
    open_chat,
    send,
)
from tests.conftest import Live


async def unread(live: Live, headers: dict[str, str]) -> int:
    response = await live.http.get("/notification/unread", headers=headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


async def test_a_message_to_an_offline_customer_notifies_them_once_per_unread_run(
    live: Live,
) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)  # no live connection: a page that polls, or closed
    chat_id = (await open_chat(live, carla))["id"]
    assert await unread(live, carla.headers) == 0

    for text in ("We have your order", "It ships today"):
        assert (await send(live, ann, chat_id, text)).status_code == 201
    listed = await live.http.get("/notification", headers=carla.headers)
    body = listed.json()
    assert body["pagination"] == {"total": 1, "limit": 20, "offset": 0, "hasMore": False}
    [note] = body["notifications"]
    assert (note["kind"], note["chatId"], note["read"]) == ("new_message", chat_id, False)
    assert note["body"] == "We have your order"
    assert await unread(live, carla.headers) == 1

    marked = await live.http.put(f"/notification/{note['id']}/read", headers=carla.headers)
    assert marked.status_code == 200
    assert await unread(live, carla.headers) == 0
    assert (await send(live, ann, chat_id, "Anything else?")).status_code == 201
    assert await unread(live, carla.headers) == 1
    # The agent is connected, so the customer's answer notifies nobody.
    assert (await send(live, carla, chat_id, "No, thanks")).status_code == 201
    assert await unread(live, ann.headers) == 0


async def test_a_connected_receiver_is_not_notified(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    await connect(live, carla)
    chat_id = (await open_chat(live, carla))["id"]
    assert (await send(live, ann, chat_id, "Hello")).status_code == 201
    assert await unread(live, carla.headers) == 0


async def test_read_all_delete_and_paging(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla = await customer(live)
    chat_id = (await open_chat(live, carla))["id"]
    for i in range(3):
        assert (await send(live, ann, chat_id, f"note {i}")).status_code == 201
        listed = (await live.http.get("/notification", headers=carla.headers)).json()
        newest = listed["notifications"][0]["id"]
        assert (
            await live.http.put(f"/notification/{newest}/read", headers=carla.headers)
        ).is_success

    first = await live.http.get("/notification/", headers=carla.headers, params={"limit": 2})
    assert first.json()["pagination"] == {"total": 3, "limit": 2, "offset": 0, "hasMore": True}
    assert first.headers["X-Next-Cursor"] == "2"
    second = await live.http.get(
        "/notification", headers=carla.headers, params={"limit": 2, "cursor": "2"}
    )
    assert second.json()["pagination"]["hasMore"] is False
    assert "X-Next-Cursor" not in second.headers
    ids = [n["id"] for n in first.json()["notifications"] + second.json()["notifications"]]
    assert [n.body for n in (await live.services.store.list_notifications(carla.id))[0]] == [
        "note 2",
        "note 1",
        "note 0",
    ]
    assert len(set(ids)) == 3

    assert (await send(live, ann, chat_id, "one more")).status_code == 201
    everything = await live.http.put("/notification/read-all", headers=carla.headers)
    assert everything.json() == {"count": 1}
    assert await unread(live, carla.headers) == 0

    deleted = await live.http.delete(f"/notification/{ids[0]}", headers=carla.headers)
    assert deleted.status_code == 200
    assert_error(
        await live.http.delete(f"/notification/{ids[0]}", headers=carla.headers),
        404,
        "notification_not_found",
    )
    assert (await live.services.store.list_notifications(carla.id))[1] == 3


async def test_nobody_touches_anothers_notifications(live: Live) -> None:
    ann = await available_agent(live, ANN)
    carla, dan = await customer(live), await customer(live, CUSTOMER_2)
    chat_id = (await open_chat(live, carla))["id"]
    assert (await send(live, ann, chat_id, "for Carla")).status_code == 201
    [note], _ = await live.services.store.list_notifications(carla.id)

    for response in (
        await live.http.put(f"/notification/{note.id}/read", headers=dan.headers),
        await live.http.delete(f"/notification/{note.id}", headers=dan.headers),
        await live.http.put(f"/notification/{UNKNOWN_ID}/read", headers=carla.headers),
    ):
        assert_error(response, 404, "notification_not_found")
    assert (await live.http.get("/notification", headers=dan.headers)).json()["notifications"] == []
    assert await unread(live, carla.headers) == 1
