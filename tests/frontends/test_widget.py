"""The customer chat widget (ZiadGamalDev/ecommerce-chat-angular), replayed against a live
Switchboard: its requests and Socket.IO events, exactly as its source makes them, from its origin,
and every field it reads back.

Replayed from:
- src/app/chat.service.ts: the socket (`auth: {token}`, websocket then polling), `joinChat
  {chatId, userType: "customer"}`, `sendMessage {chatId, message}`, `startTyping`/`stopTyping`
  with the bare chat id, `GET /messages/customer/{chatId}` with the shop's token; what it reads
  of `messageReceived`/`messageDelivered` (`{message}`: `_id || id`, `chatId`, `senderId`,
  `receiverId`, `content`, `status`, `createdAt`) and that `typingStarted`/`typingStopped` come.
- src/app/chat/chat.component.ts: `isMyMessage` (a message is the customer's own when `senderId`
  equals the `userId` the shop put in the URL, the shop's customer id).
- The shop opens it with `?chatId=&userId=&token=` (ecommerce-react ChatIcon.jsx).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.conftest import Live
from tests.frontends.browser import (
    ORIGINAL_PASSWORD,
    Browser,
    no_errors,
    object_id,
    shop_opens_chat,
    shop_token,
)
from tests.sio.node import NodeClients

# chat.service.ts: the socket's options (reconnection is left to the harness).
WIDGET_SOCKET = {
    "autoConnect": True,
    "transports": ["websocket", "polling"],
    "forceNew": True,
    "timeout": 20000,
    "upgrade": True,
    "secure": False,
}
AGENT = "sarakhaled@example.com"


def as_widget_shows(message: dict[str, Any], user_id: str) -> tuple[Any, ...]:
    """What chat.service.ts keeps of a message and which side chat.component.ts draws it on."""
    sender = (
        message["senderId"]["_id"] if isinstance(message["senderId"], dict) else message["senderId"]
    )
    receiver = message["receiverId"]
    mine = sender == user_id or (not sender and receiver != user_id)  # isMyMessage
    datetime.fromisoformat(message["createdAt"])  # `new Date(createdAt)` must parse it
    return (message.get("_id") or message["id"], message["chatId"], message["content"], mine)


async def test_the_widget_converses_and_draws_each_message_on_its_side(
    live: Live, node: NodeClients
) -> None:
    shop_id = object_id(1)
    token = shop_token(shop_id)
    widget = Browser(live, "widget")

    # An agent on duty, so the chat is assigned (the dashboard's own replay is elsewhere).
    agent_token = (
        await live.http.post("/auth/login", json={"email": AGENT, "password": ORIGINAL_PASSWORD})
    ).json()["token"]
    await Browser(live, "agent-dashboard").connect(node, "agent", auth={"token": agent_token})
    agent_id = (
        await live.http.get("/profile", headers={"Authorization": f"Bearer {agent_token}"})
    ).json()["id"]
    await node.expect("agent", "connect")
    await live.http.put(
        "/profile/agent/available", headers={"Authorization": f"Bearer {agent_token}"}
    )

    chat_id = await shop_opens_chat(live, token, "Order", "Where is it?")

    # The widget opens with ?chatId=&userId=&token= and connects at once.
    await widget.connect(node, "widget", auth={"token": token}, **WIDGET_SOCKET)
    await node.expect("widget", "connect")
    await node.emit("widget", "joinChat", {"chatId": chat_id, "userType": "customer"})
    assert await widget.json("GET", f"/messages/customer/{chat_id}", token=token) == []
    assert await node.call("agent", "joinChat", {"chatId": chat_id, "userType": "agent"}) == {
        "room": chat_id
    }

    await node.emit("widget", "sendMessage", {"chatId": chat_id, "message": "Where is my order?"})
    mine = (await node.event("widget", "messageDelivered"))["message"]
    assert mine["senderId"] == shop_id  # the shop's id: the widget draws it on its own side
    assert mine["receiverId"] == agent_id
    assert mine["status"] == "sent"
    assert as_widget_shows(mine, shop_id)[1:] == (chat_id, "Where is my order?", True)
    assert (await node.event("agent", "messageReceived"))["message"]["id"] == mine["id"]

    # Typing, as the widget sends it: the chat id alone, once per keystroke.
    for _ in range(3):
        await node.emit("widget", "startTyping", chat_id)
    await node.event("agent", "typingStarted")
    await node.emit("widget", "stopTyping", chat_id)
    await node.event("agent", "typingStopped")

    await node.emit("agent", "startTyping", chat_id)
    await node.event("widget", "typingStarted")
    await node.emit("agent", "sendMessage", {"chatId": chat_id, "message": "It ships today."})
    await node.emit("agent", "stopTyping", chat_id)
    theirs = (await node.event("widget", "messageReceived"))["message"]
    await node.event("widget", "typingStopped")
    assert (theirs["senderId"], theirs["receiverId"]) == (agent_id, shop_id)
    assert as_widget_shows(theirs, shop_id)[1:] == (chat_id, "It ships today.", False)

    # A reload: the history from REST, each message on the same side as before.
    history = await widget.json("GET", f"/messages/customer/{chat_id}", token=token)
    assert [as_widget_shows(m, shop_id) for m in history] == [
        as_widget_shows(mine, shop_id),
        as_widget_shows(theirs, shop_id),
    ]
    assert {m["status"] for m in history} <= {"sent", "delivered", "seen"}
    await no_errors(node, "widget", shop_id)
    await no_errors(node, "agent", agent_id)
