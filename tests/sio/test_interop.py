"""The stock socket.io-client (Node.js) against a live Switchboard: connect over every transport,
join, converse with `messageDelivered`/`messageReceived`, talk to a /ws agent, and be refused
what is not yours.

Every wait is bounded (`NodeClients.expect`, acks time out on the Node side) and waits for
something a socket saw, never for time to pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store import ActedBy, AgentStatus, Priority
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import connect as ws_connect
from tests.e2e.wsclient import ready_agent, say
from tests.sio.node import NodeClients, node_clients

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
UMA = "uma@switchboard.example"

# How a client reaches the server: the stock default (polling, then the websocket upgrade),
# websocket only, and polling only.
TRANSPORTS: dict[str, dict[str, Any]] = {
    "polling-then-upgrade": {},
    "websocket": {"transports": ["websocket"]},
    "polling": {"transports": ["polling"]},
}


async def user_id(live: Live, token: str) -> str:
    return (await live.services.tokens.authenticate(token)).user.id


async def connected(node: NodeClients, name: str, token: str, **opts: Any) -> dict[str, Any]:
    await node.connect(name, auth={"token": token}, **opts)
    return await node.expect(name, "connect")


async def make_available(live: Live, agent_id: str) -> None:
    await live.services.system.set_agent_status(
        agent_id, AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id=agent_id
    )


async def open_chat(live: Live, customer_id: str) -> str:
    opened = await live.services.system.open_chat(
        customer_id, title="Where is my order?", description="", priority=Priority.MEDIUM
    )
    return opened.chat.id


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_agent_and_customer_converse(live: Live, node: NodeClients, transport: str) -> None:
    opts = TRANSPORTS[transport]
    agent_token = await live.login(ANN)
    customer_token = await live.customer_token("shop-customer-1")
    agent_id, customer_id = await user_id(live, agent_token), await user_id(live, customer_token)

    first = "websocket" if transport == "websocket" else "polling"
    for name, token in (("agent", agent_token), ("customer", customer_token)):
        await connected(node, name, token, **opts)
        await node.expect(name, "open", transport=first)
        if transport == "polling-then-upgrade":
            await node.expect(name, "upgrade", transport="websocket")

    assert await node.call("agent", "joinNotification", agent_id) == {"room": agent_id}
    await make_available(live, agent_id)
    chat_id = await open_chat(live, customer_id)
    created = await node.event("agent", "chatCreated")
    assert (created["id"], created["customer"], created["agent"]["_id"]) == (
        chat_id,
        customer_id,
        agent_id,
    )

    joined = await node.call("customer", "joinChat", {"chatId": chat_id, "userType": "customer"})
    assert joined == {"room": chat_id}
    assert await node.call("agent", "joinChat", {"chatId": chat_id, "userType": "agent"}) == {
        "room": chat_id
    }

    acked = await node.call("customer", "sendMessage", {"chatId": chat_id, "message": "hello"})
    message = acked["message"]
    assert (message["content"], message["seq"], message["senderRole"]) == ("hello", 1, "customer")
    assert (message["senderId"], message["receiverId"]) == (customer_id, agent_id)
    assert await node.event("customer", "messageDelivered") == acked
    assert await node.event("agent", "messageReceived") == acked

    # Without an ack, as the original's dashboard sends.
    await node.emit("agent", "sendMessage", {"chatId": chat_id, "message": "hi, how can I help?"})
    delivered = (await node.event("agent", "messageDelivered"))["message"]
    received = (await node.event("customer", "messageReceived"))["message"]
    assert delivered == received
    assert (received["content"], received["seq"], received["senderRole"]) == (
        "hi, how can I help?",
        2,
        "agent",
    )

    stored = await live.services.store.list_messages(chat_id, after_seq=0, limit=10)
    assert [(m.seq, m.content, m.id) for m in stored] == [
        (1, "hello", message["id"]),
        (2, "hi, how can I help?", received["id"]),
    ]
    assert node.seen("customer", "error") == node.seen("agent", "error") == []
    if transport != "polling-then-upgrade":
        assert node.seen("agent", "upgrade") == node.seen("customer", "upgrade") == []


async def test_a_socketio_customer_talks_to_a_native_ws_agent(
    live: Live, node: NodeClients
) -> None:
    customer_token = await live.customer_token("shop-customer-1")
    customer_id = await user_id(live, customer_token)
    async with ws_connect(live, await live.login(ANN)) as agent:
        await ready_agent(live, agent)
        await connected(node, "customer", customer_token)
        chat_id = await open_chat(live, customer_id)
        assert (await agent.expect("chat.assigned"))["chat"]["id"] == chat_id
        await node.call("customer", "joinChat", {"chatId": chat_id})

        acked = await node.call("customer", "sendMessage", {"chatId": chat_id, "message": "hi"})
        frame = await agent.expect("message", chatId=chat_id, seq=1)
        # The same message; Socket.IO also carries the original's `_id`.
        assert frame["message"] == {k: v for k, v in acked["message"].items() if k != "_id"}
        assert acked["message"]["_id"] == acked["message"]["id"]

        ack = await say(agent, chat_id, "a1", "hello from /ws")
        received = (await node.event("customer", "messageReceived"))["message"]
        assert (received["id"], received["seq"], received["content"]) == (
            ack["messageId"],
            2,
            "hello from /ws",
        )
        # Written to the Socket.IO customer's socket: the /ws agent learns it was delivered.
        customer = received["receiverId"]
        await agent.expect("read", readerId=customer, seq=2, status="delivered")


async def test_tokens_in_the_connect_packet_or_the_header_and_refusals(
    live: Live, node: NodeClients
) -> None:
    await node.connect("garbage", auth={"token": "not-a-jwt"})
    assert (await node.expect("garbage", "connect_error"))["message"].startswith("invalid token")
    await node.connect("none", transports=["websocket"])
    refused = await node.expect("none", "connect_error")
    assert refused["message"].startswith("missing token")
    await node.connect("user", auth={"token": await live.login(UMA)})
    refused = await node.expect("user", "connect_error")
    assert "you are signed in as user" in refused["message"]

    # The header is sent on every polling request and on the websocket upgrade.
    bearer = {"Authorization": f"Bearer {await live.customer_token('shop-customer-2')}"}
    await node.connect("header", extraHeaders=bearer)
    await node.expect("header", "connect")
    await node.expect("header", "upgrade", transport="websocket")
    await node.connect("bad-header", extraHeaders={"Authorization": "Basic abc"})
    refused = await node.expect("bad-header", "connect_error")
    assert "Bearer" in refused["message"]
    assert [r["name"] for r in node.records if r["event"] == "connect"] == ["header"]


async def test_a_socket_joins_only_what_its_own_user_belongs_to(
    live: Live, node: NodeClients
) -> None:
    ann_token, bob_token = await live.login(ANN), await live.login(BOB)
    carla_token = await live.customer_token("shop-customer-1")
    dan_token = await live.customer_token("shop-customer-2")
    ann_id, bob_id = await user_id(live, ann_token), await user_id(live, bob_token)
    carla_id = await user_id(live, carla_token)
    for name, token in (("ann", ann_token), ("bob", bob_token), ("dan", dan_token)):
        await connected(node, name, token)
    await make_available(live, ann_id)
    carlas_chat = await open_chat(live, carla_id)

    not_yours = {"error": {"code": "chat_not_found", "message": f"no chat {carlas_chat} of yours"}}
    assert await node.call("dan", "joinChat", {"chatId": carlas_chat}) == not_yours
    assert await node.call("bob", "joinChat", {"chatId": carlas_chat, "userType": "agent"}) == (
        not_yours
    )
    assert await node.call("dan", "joinChat", {"chatId": "no-such-chat"}) == {
        "error": {"code": "chat_not_found", "message": "no chat no-such-chat of yours"}
    }
    mismatch = await node.call("ann", "joinChat", {"chatId": carlas_chat, "userType": "customer"})
    assert mismatch["error"]["code"] == "forbidden"
    # Without an ack, the original's `error` event says it, in its words (the agent dashboard
    # shows no toast for this one), with the reason beside.
    await node.emit("dan", "joinChat", {"chatId": carlas_chat, "userType": "customer"})
    assert await node.event("dan", "error") == {
        "message": "Failed to join chat",
        "error": f"no chat {carlas_chat} of yours",
        "code": "chat_not_found",
    }

    # Rooms named after users: only your own.
    assert (await node.call("bob", "joinNotification", ann_id))["error"]["code"] == "forbidden"
    assert (await node.call("bob", "authenticate", {"userId": ann_id}))["error"]["code"] == (
        "forbidden"
    )
    assert await node.call("bob", "authenticate", {"userId": bob_id}) == {"room": bob_id}
    assert await node.event("bob", "authenticated") == {"userId": bob_id, "role": "agent"}
    # The refusal above was the only answer to it: one `authenticated`, for bob's own id.
    assert len(node.seen("bob", "authenticated")) == 1
    await node.emit("bob", "authenticate", {"userId": ann_id})
    refused_auth = await node.event("bob", "error")
    assert (refused_auth["message"], refused_auth["code"]) == ("Authentication failed", "forbidden")
    await node.call("bob", "joinNotification")  # a round trip: whatever followed it is in
    assert len(node.seen("bob", "authenticated")) == 1

    # Writing into someone else's chat is refused by the core, whatever the room.
    refused = await node.call("dan", "sendMessage", {"chatId": carlas_chat, "message": "psst"})
    assert refused == not_yours
    # Carla's message reaches only the chat's agent, Ann: as a notification, since Ann is in
    # her own room but in no chat room.
    await node.call("ann", "joinNotification")
    await connected(node, "carla", carla_token)
    await node.call("carla", "joinChat", {"chatId": carlas_chat})
    await node.call("carla", "sendMessage", {"chatId": carlas_chat, "message": "where is it?"})
    notice = await node.event("ann", "notification")
    assert (notice["type"], notice["content"], notice["reference"]) == (
        "message",
        "where is it?",
        {"model": "Chat", "type": "chat", "id": carlas_chat},
    )
    await node.call("bob", "joinNotification")  # a round trip: bob's earlier events are in
    for name in ("bob", "dan"):
        assert node.seen(name, "messageReceived") == node.seen(name, "notification") == []
    stored = await live.services.store.list_messages(carlas_chat, after_seq=0, limit=10)
    assert [m.content for m in stored] == ["where is it?"]


async def test_bad_payloads_and_unknown_events_get_errors_and_the_socket_stays(
    live: Live, node: NodeClients
) -> None:
    carla_token = await live.customer_token("shop-customer-1")
    carla_id = await user_id(live, carla_token)
    await connected(node, "carla", carla_token)
    missing = await node.call("carla", "sendMessage")
    assert missing["error"]["code"] == "invalid_payload"
    empty = await node.call("carla", "sendMessage", {"chatId": "c", "message": ""})
    assert empty["error"] == {
        "code": "invalid_payload",
        "message": "sendMessage: message: String should have at least 1 character",
    }
    spaced = await node.call(
        "carla", "sendMessage", {"chatId": "c", "message": "hi", "clientMsgId": "two words"}
    )
    assert spaced["error"]["code"] == "invalid_payload"  # the key REST and /ws take, no other
    typo = await node.call("carla", "joinChat", {"chatID": "c"})
    assert "chatId: Field required" in typo["error"]["message"]
    # Unknown events are ignored, as the original did; asked for an ack, it says so.
    unknown = await node.call("carla", "shout", {"chatId": "c"})
    assert unknown["error"]["code"] == "unknown_event"
    assert unknown["error"]["message"].startswith("unknown event 'shout'; known: authenticate")
    await node.emit("carla", "shout", "hello?")
    assert (await node.call("carla", "joinNotification"))["room"] == carla_id
    assert node.seen("carla", "error") == node.seen("carla", "disconnect") == []


async def test_a_fast_typist_is_never_cut_but_a_typing_flood_is(
    tmp_path: Path, node_modules: Path
) -> None:
    # A flood limit of 4 packets (1 a second): typing has four times that to itself.
    settings = make_settings(tmp_path, ws_max_frames_per_second=1, ws_frame_burst=4)
    async with running_server(settings) as live, node_clients(node_modules, live.url) as node:
        agent_token = await live.login(ANN)
        customer_token = await live.customer_token("shop-customer-1")
        agent_id = await user_id(live, agent_token)
        websocket = TRANSPORTS["websocket"]
        await connected(node, "agent", agent_token, **websocket)
        assert await node.call("agent", "joinNotification", agent_id) == {"room": agent_id}
        await make_available(live, agent_id)
        customer_id = await user_id(live, customer_token)
        chat_id = await open_chat(live, customer_id)
        await node.event("agent", "chatCreated")
        assert await node.call("agent", "joinChat", {"chatId": chat_id}) == {"room": chat_id}
        await connected(node, "customer", customer_token, **websocket)
        await node.call("customer", "joinChat", {"chatId": chat_id, "userType": "customer"})

        # The widget: one startTyping per keystroke (12 at once, three times the flood
        # limit's burst), then stopTyping and the message. Nothing is cut.
        for _ in range(12):
            await node.emit("customer", "startTyping", chat_id)
        await node.emit("customer", "stopTyping", chat_id)
        await node.emit("customer", "sendMessage", {"chatId": chat_id, "message": "hello"})
        assert await node.event("agent", "typingStarted") == {
            "chatId": chat_id,
            "userId": customer_id,
        }
        await node.event("agent", "typingStopped")
        assert (await node.event("agent", "messageReceived"))["message"]["content"] == "hello"
        assert (await node.event("customer", "messageDelivered"))["message"]["content"] == "hello"
        assert node.seen("customer", "error") == node.seen("customer", "disconnect") == []

        # Far beyond the allowance (it refills 4 a second), typing counts as flooding.
        for _ in range(150):
            await node.emit("customer", "startTyping", chat_id)
        cut = await node.event("customer", "error")
        assert cut["code"] == "rate_limited"
        assert (await node.expect("customer", "disconnect"))["reason"] == "io server disconnect"
        assert node.seen("agent", "disconnect") == []


async def test_signing_out_ends_the_socket_for_good(live: Live, node: NodeClients) -> None:
    token = await live.login(ANN)
    await connected(node, "ann", token)
    response = await live.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert (await node.event("ann", "error"))["code"] == "signed_out"
    # A server-side disconnect: the stock client does not reconnect by itself.
    assert (await node.expect("ann", "disconnect"))["reason"] == "io server disconnect"


async def test_a_resend_with_the_same_client_msg_id_is_stored_once(
    live: Live, node: NodeClients
) -> None:
    agent_token = await live.login(ANN)
    customer_token = await live.customer_token("shop-customer-1")
    agent_id, customer_id = await user_id(live, agent_token), await user_id(live, customer_token)
    await connected(node, "agent", agent_token)
    await connected(node, "customer", customer_token)
    await make_available(live, agent_id)
    chat_id = await open_chat(live, customer_id)
    await node.call("customer", "joinChat", {"chatId": chat_id})

    send = {"chatId": chat_id, "message": "only once", "clientMsgId": "widget-1"}
    first = await node.call("customer", "sendMessage", send)
    again = await node.call("customer", "sendMessage", send)  # e.g. after a reconnect
    assert again == first
    # Without a clientMsgId every emit is a message of its own, the same text included.
    plain = {"chatId": chat_id, "message": "only once"}
    third = await node.call("customer", "sendMessage", plain)
    fourth = await node.call("customer", "sendMessage", plain)
    assert [m["message"]["seq"] for m in (first, third, fourth)] == [1, 2, 3]
    stored = await live.services.store.list_messages(chat_id, after_seq=0, limit=10)
    assert [m.content for m in stored] == ["only once"] * 3
    assert stored[0].client_msg_id == "widget-1"
    assert stored[1].client_msg_id is not None
    assert stored[1].client_msg_id.startswith("sio:")


async def test_an_agent_connecting_to_a_waiting_chat_gets_it_at_once(
    live: Live, node: NodeClients
) -> None:
    agent_token = await live.login(ANN)
    customer_token = await live.customer_token("shop-customer-1")
    agent_id, customer_id = await user_id(live, agent_token), await user_id(live, customer_token)
    chat_id = await open_chat(live, customer_id)  # nobody connected: it waits
    await make_available(live, agent_id)
    # Connecting makes Ann assignable: her CONNECT tells the assignment actor, which hands her
    # the chat when it handles that news, not necessarily before the CONNECT is answered. Its
    # mailbox is first in, first out, so an answer to a later question comes after that step.
    await connected(node, "agent", agent_token, transports=["websocket"])
    await live.services.system.snapshot()
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert chat.agent_id == agent_id
    assert await node.call("agent", "joinChat", {"chatId": chat_id}) == {"room": chat_id}
    await connected(node, "customer", customer_token)
    await node.call("customer", "joinChat", {"chatId": chat_id})
    await node.call("customer", "sendMessage", {"chatId": chat_id, "message": "still there?"})
    assert (await node.event("agent", "messageReceived"))["message"]["content"] == "still there?"


async def test_a_customer_is_known_by_the_shops_id(live: Live, node: NodeClients) -> None:
    """The widget marks a message as its own when senderId is the shop's id (its token's subject,
    a MongoDB ObjectId in the original shop): that id is the customer's id on every shape."""
    shop_id = "65f1c2a9e4b0a1b2c3d4e5f6"
    customer_token = await live.customer_token(shop_id, "Mona Shopper")
    agent_token = await live.login(ANN)
    agent_id = await user_id(live, agent_token)
    assert await user_id(live, customer_token) == shop_id
    await connected(node, "customer", customer_token)
    await connected(node, "agent", agent_token)

    await node.emit("customer", "authenticate", {"userId": shop_id})
    assert await node.event("customer", "authenticated") == {"userId": shop_id, "role": "customer"}
    assert await node.call("customer", "joinNotification", shop_id) == {"room": shop_id}
    assert await node.call("agent", "joinNotification", agent_id) == {"room": agent_id}

    await make_available(live, agent_id)
    chat_id = await open_chat(live, shop_id)
    assert (await node.event("agent", "chatCreated"))["customer"] == shop_id
    await node.call("customer", "joinChat", {"chatId": chat_id, "userType": "customer"})
    await node.call("agent", "joinChat", {"chatId": chat_id, "userType": "agent"})
    acked = await node.call("customer", "sendMessage", {"chatId": chat_id, "message": "mine"})
    assert (acked["message"]["senderId"], acked["message"]["receiverId"]) == (shop_id, agent_id)
    await node.emit("agent", "sendMessage", {"chatId": chat_id, "message": "theirs"})
    received = (await node.event("customer", "messageReceived"))["message"]
    assert (received["senderId"], received["receiverId"]) == (agent_id, shop_id)

    # REST, both sides: the chat's customer and the messages' ids are the shop's id.
    for side, token in (("customer", customer_token), ("agent", agent_token)):
        headers = {"Authorization": f"Bearer {token}"}
        listed = (await live.http.get(f"/messages/{side}/{chat_id}", headers=headers)).json()
        assert [(m["senderId"], m["receiverId"]) for m in listed] == [
            (shop_id, agent_id),
            (agent_id, shop_id),
        ]
    headers = {"Authorization": f"Bearer {agent_token}"}
    chat = (await live.http.get(f"/chats/agent/show/{chat_id}", headers=headers)).json()
    assert chat["customer"] == shop_id


async def test_other_shop_ids_are_accepted_where_the_original_took_them(
    live: Live, node: NodeClients
) -> None:
    """A shop id that is not 24 hex digits cannot be a record id (routes, cursors and rooms name
    records by those): the customer gets one of ours, and its shop id still joins its room."""
    token = await live.customer_token("shop-customer-1")
    record_id = await user_id(live, token)
    assert record_id != "shop-customer-1"
    await connected(node, "customer", token)
    assert await node.call("customer", "joinNotification", "shop-customer-1") == {"room": record_id}
    await node.emit("customer", "authenticate", {"userId": "shop-customer-1"})
    assert (await node.event("customer", "authenticated"))["role"] == "customer"


async def test_a_shop_id_that_is_another_accounts_id_is_refused(live: Live) -> None:
    agent_id = await user_id(live, await live.login(ANN))
    response = await live.http.post("/dev/customer-token", json={"customerId": agent_id})
    token = response.json()["token"]
    refused = await live.http.get("/profile", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert "already the id of another account" in refused.json()["error"]["message"]
    assert (await live.services.store.get_user(agent_id)).role.value == "agent"  # type: ignore[union-attr]
