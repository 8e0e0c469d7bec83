"""The shop (ZiadGamalDev/ecommerce-react) against a live Switchboard: what it asks of the
support backend, exactly as its source does, from its origin, and every field it reads back.

Replayed from:
- src/components/ChatIcon/ChatIcon.jsx: `POST ${VITE_SOCKET_URL}chats/customer` with
  `Authorization: Bearer <shop token>`, `Content-Type: application/json` and `{title,
  description}`; on success it reads `id`, `title` and `description` and opens the widget with
  `?chatId=&userId=&token=`; on failure it reads `message` (`"No agents available"`).
- src/components/Navbar/Navbar.jsx: `GET ${VITE_SOCKET_URL}messages/customer/{chatId}` with the
  token, keeping `senderRole === "agent"` messages sorted by `createdAt` (`_id || id`, `content`);
  its socket (src/utils/socket.jsx: `autoConnect: false`, no token) then `joinChat {chatId,
  userType: "customer"}` and `messageReceived {message}` (`senderRole`, `content`, `chatId`).
- src/hooks/useSocket.jsx: `authenticate {userId}`, `fetchNotifications` answered by
  `userNotifications {notifications, pagination, unreadCount}`, live `notification` (`id`,
  `content`, `createdAt`, as src/components/Notifications/Notifications.jsx shows them),
  `markNotificationRead {notificationId}`, `markAllNotificationsRead`. (The hook imports a
  NotificationContext missing from the repository, so its socket is one with the shop's token.)
- src/context/AuthContext.jsx: the token and `userId` come from the shop's own backend; the
  token is `{id, iat}` signed with the shop's secret.
"""

from __future__ import annotations

from datetime import datetime

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

AGENT = "ahmedfrag@example.com"
CHAT = {"title": "Broken zipper", "description": "The zipper of my bag broke on day one."}


async def agent_on_duty(live: Live, node: NodeClients) -> tuple[str, str]:
    """An agent connected and available (the dashboard's own replay is elsewhere)."""
    signed_in = await live.http.post(
        "/auth/login", json={"email": AGENT, "password": ORIGINAL_PASSWORD}
    )
    token, agent_id = signed_in.json()["token"], signed_in.json()["user"]["id"]
    await Browser(live, "agent-dashboard").connect(node, "agent", auth={"token": token})
    await node.expect("agent", "connect")
    # As the dashboard does on connect; chats assigned to the agent come to that room.
    await node.emit("agent", "joinNotification", agent_id)
    await node.emit("agent", "joinRoom", agent_id)
    await no_errors(node, "agent", agent_id)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await live.http.put("/profile/agent/available", headers=headers)).status_code == 200
    return token, agent_id


async def test_the_shop_opens_a_chat_and_shows_the_agents_replies(
    live: Live, node: NodeClients
) -> None:
    shop_id = object_id(2)
    token = shop_token(shop_id)
    shop = Browser(live, "shop")

    # No agent on duty: the chat waits in the queue (the original refused with "No agents
    # available"), so the shop opens the widget either way.
    opened = await shop.json("POST", "/chats/customer", token=token, body=CHAT, status=201)
    assert (opened["title"], opened["description"]) == (CHAT["title"], CHAT["description"])
    assert opened["status"] == "new"
    chat_id = opened["id"]
    # Asked again (the shop keeps the last title and description): the same chat.
    again = await shop.json("POST", "/chats/customer", token=token, body=CHAT)
    assert again["id"] == chat_id

    _, agent_id = await agent_on_duty(live, node)
    created = await node.event("agent", "chatCreated")
    assert (created["_id"], created["customer"]) == (chat_id, shop_id)
    assert await node.call("agent", "joinChat", {"chatId": chat_id, "userType": "agent"}) == {
        "room": chat_id
    }
    await node.emit("agent", "sendMessage", {"chatId": chat_id, "message": "Sorry! A new one?"})
    await node.event("agent", "messageDelivered")

    # The navbar's bell: the agent's messages, newest first, five at most.
    messages = await shop.json("GET", f"/messages/customer/{chat_id}", token=token)
    from_agent = sorted(
        (m for m in messages if m["senderRole"] == "agent"),
        key=lambda m: datetime.fromisoformat(m["createdAt"]),
        reverse=True,
    )[:5]
    assert [(m.get("_id") or m["id"], m["content"]) for m in from_agent] == [
        (from_agent[0]["id"], "Sorry! A new one?")
    ]

    # The navbar's own socket has no token: refused, as the original refused it.
    await shop.connect(node, "navbar", autoConnect=True)
    refused = await node.expect("navbar", "connect_error")
    assert "token" in refused["message"].lower()
    assert node.seen("navbar", "connect") == []

    # The same socket with the shop's token (what the notifications hook would need).
    await shop.connect(node, "shop", auth={"token": token})
    await node.expect("shop", "connect")
    # Joined before the agent writes (answered: an emit alone could be taken after the message).
    joined = await node.call("shop", "joinChat", {"chatId": chat_id, "userType": "customer"})
    assert joined == {"room": chat_id}
    await node.emit("agent", "sendMessage", {"chatId": chat_id, "message": "It is on its way."})
    received = (await node.event("shop", "messageReceived"))["message"]
    assert (received["chatId"], received["senderRole"], received["content"]) == (
        chat_id,
        "agent",
        "It is on its way.",
    )
    assert received["_id"] == received["id"]
    datetime.fromisoformat(received["createdAt"])
    await no_errors(node, "shop", shop_id)
    await no_errors(node, "agent", agent_id)


async def test_the_shops_notifications_hook(live: Live, node: NodeClients) -> None:
    shop_id = object_id(3)
    token = shop_token(shop_id)
    shop = Browser(live, "shop")
    await agent_on_duty(live, node)
    chat_id = await shop_opens_chat(live, token, CHAT["title"], CHAT["description"])
    await node.event("agent", "chatCreated")
    await node.call("agent", "joinChat", {"chatId": chat_id, "userType": "agent"})
    # The customer is not connected: each message leaves a notification (one per chat unread).
    await node.call("agent", "sendMessage", {"chatId": chat_id, "message": "Which size?"})

    await shop.connect(node, "hook", auth={"token": token})
    await node.expect("hook", "connect")
    await node.emit("hook", "authenticate", {"userId": shop_id})
    assert await node.event("hook", "authenticated") == {"userId": shop_id, "role": "customer"}
    await node.emit("hook", "fetchNotifications")
    listed = await node.event("hook", "userNotifications")
    assert set(listed) >= {"notifications", "pagination", "unreadCount"}
    assert listed["unreadCount"] == 1
    [stored] = listed["notifications"]
    assert (stored["content"], stored["read"]) == ("Which size?", False)
    datetime.fromisoformat(stored["createdAt"])

    # Live, while the hook listens in the customer's room and not in the chat's.
    await node.call("agent", "sendMessage", {"chatId": chat_id, "message": "We have M and L."})
    live_notice = await node.event("hook", "notification")
    assert live_notice["content"] == "We have M and L."
    assert live_notice["id"]
    datetime.fromisoformat(live_notice["createdAt"])

    await node.emit("hook", "markNotificationRead", {"notificationId": stored["id"]})
    await node.emit("hook", "fetchNotifications")
    assert (await node.event("hook", "userNotifications"))["unreadCount"] == 0
    await node.emit("hook", "markAllNotificationsRead")
    await no_errors(node, "hook", shop_id)
