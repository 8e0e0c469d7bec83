"""The agent dashboard (ZiadGamalDev/customer-support-agent-react) against a live Switchboard:
its requests and Socket.IO events exactly as its source makes them, from its origin, and every
field it reads back.

Replayed from:
- src/services/authService.ts: `POST /auth/login {email, password}` (reads `user`, `token`),
  `POST /auth/register {name, email, password, confirmedPassword}`, `GET /profile/` (trailing
  slash), `PUT /profile/agent/{status}` with `{}`, `PUT /profile {name, phone}`,
  `POST /password/update {oldPassword, newPassword, confirmPassword}`,
  `POST /password/forgot {email}`.
- src/services/apiService.ts (axios, `Content-Type: application/json` on every request):
  `GET /chats/agent`, `GET /chats/agent/show/{id}`, `PUT /chats/agent/{id}/{status}`,
  `GET /messages/agent/{id}` (reads `id`, `chatId`, `content`, `createdAt`, `senderId`,
  `senderRole`; errors' `message`).
- src/pages/Dashboard.tsx: `GET /dashboard/statistics` (`statistics.chat.{total, resolved,
  pending, open, new}`), `GET /dashboard/recent-chats` (`id`, `title`, `createdAt`, `priority`,
  `agent.name`, `description`). src/pages/TicketsPage.tsx and ChatPage.tsx: a chat's `id`,
  `title`, `description`, `status`, `priority`, `createdAt`, `customer`.
- src/pages/Settings.tsx: `POST /email/report {email, subject, message}`.
- src/services/socketService.ts: the socket (`auth: {token}`, websocket then polling); on
  connect `joinNotification` and `joinRoom` with the agent's id; `joinChat {chatId, userType:
  "agent"}`, `sendMessage {chatId, message}`, `leaveChat {chatId}`, `markNotificationRead
  {notificationId}`, `markAllNotificationsRead`; what it reads of `messageReceived {message}`,
  `notification` (`_id`, `title`, `content`, `createdAt`, `read`, `type`, `reference.id`),
  `chatCreated` (`_id`) and `error` (`message`: anything but "Failed to join chat" is a toast).
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

AGENT = "sarakhaled@example.com"
# socketService.ts: the socket's options (reconnection is left to the harness).
DASHBOARD_SOCKET = {
    "transports": ["websocket", "polling"],
    "forceNew": True,
    "timeout": 20000,
    "upgrade": True,
    "secure": False,
}
CHAT_FIELDS = {"id", "title", "description", "status", "priority", "createdAt", "customer"}
STATUSES = {"new", "open", "pending", "resolved"}


def parses(when: str) -> datetime:
    return datetime.fromisoformat(when)  # `new Date(...)` in the dashboard


def as_ticket(chat: dict[str, Any]) -> dict[str, Any]:
    """What the tickets and chat pages keep of a chat."""
    assert set(chat) >= CHAT_FIELDS, chat
    assert chat["status"] in STATUSES
    parses(chat["createdAt"])
    return {key: chat[key] for key in CHAT_FIELDS}


async def test_an_agent_signs_in_takes_a_chat_and_answers(live: Live, node: NodeClients) -> None:
    dashboard = Browser(live, "agent-dashboard")

    # Login.tsx (a password of at least 8 characters: the seeded account's has 8).
    signed_in = await dashboard.json(
        "POST", "/auth/login", body={"email": AGENT, "password": ORIGINAL_PASSWORD}
    )
    user, token = signed_in["user"], signed_in["token"]
    assert (user["email"], user["role"], user["name"]) == (AGENT, "agent", "Sara Khaled")
    assert user["status"] in {"available", "away", "busy"}
    agent_id = user["id"]
    # Header.tsx and Profile.tsx: the profile, at the path with its trailing slash.
    profile = await dashboard.json("GET", "/profile/", token=token)
    assert (profile["id"], profile["name"], profile["email"], profile["role"]) == (
        agent_id,
        "Sara Khaled",
        AGENT,
        "agent",
    )
    assert {"status", "phone", "image"} <= set(profile)

    await dashboard.connect(node, "agent", auth={"token": token}, **DASHBOARD_SOCKET)
    await node.expect("agent", "connect")
    await node.emit("agent", "joinNotification", agent_id)
    await node.emit("agent", "joinRoom", agent_id)  # a red toast on every connect, before
    await no_errors(node, "agent", agent_id)
    await dashboard.json("PUT", "/profile/agent/available", token=token, body={})
    assert (await dashboard.json("GET", "/profile/", token=token))["status"] == "available"

    # A customer opens a chat from the shop: it is the agent's at once.
    shop_id = object_id(4)
    customer_token = shop_token(shop_id)
    chat_id = await shop_opens_chat(live, customer_token, "Late parcel", "Ordered two weeks ago.")
    created = await node.event("agent", "chatCreated")
    assert created["_id"] == chat_id

    statistics = (await dashboard.json("GET", "/dashboard/statistics", token=token))["statistics"]
    assert statistics["chat"] == {"total": 1, "resolved": 0, "pending": 0, "open": 1, "new": 0}
    [recent] = await dashboard.json("GET", "/dashboard/recent-chats", token=token)
    assert (recent["id"], recent["title"], recent["priority"], recent["description"]) == (
        chat_id,
        "Late parcel",
        "medium",
        "Ordered two weeks ago.",
    )
    assert recent["agent"]["name"] == "Sara Khaled"
    parses(recent["createdAt"])
    [listed] = await dashboard.json("GET", "/chats/agent", token=token, body=None)
    shown = await dashboard.json("GET", f"/chats/agent/show/{chat_id}", token=token)
    assert as_ticket(listed) == as_ticket(shown)
    # The customer is the shop's id: ChatPage asks the shop's API for /profile/{customer}.
    assert (shown["customer"], shown["status"]) == (shop_id, "open")

    # ChatPage: join the chat's room, load its messages, converse.
    await node.emit("agent", "joinChat", {"chatId": chat_id, "userType": "agent"})
    assert await dashboard.json("GET", f"/messages/agent/{chat_id}", token=token) == []
    await Browser(live, "widget").connect(node, "customer", auth={"token": customer_token})
    await node.expect("customer", "connect")
    await node.emit("customer", "joinChat", {"chatId": chat_id, "userType": "customer"})
    await node.emit("customer", "sendMessage", {"chatId": chat_id, "message": "Any news?"})
    received = (await node.event("agent", "messageReceived"))["message"]
    assert (received["chatId"], received["content"], received["senderRole"]) == (
        chat_id,
        "Any news?",
        "customer",
    )
    assert received["senderId"] == shop_id  # a string: the dashboard reads it as the id
    parses(received["createdAt"])
    await node.emit("agent", "sendMessage", {"chatId": chat_id, "message": "It left today."})
    delivered = (await node.event("agent", "messageDelivered"))["message"]
    assert delivered["content"] == "It left today."
    history = await dashboard.json("GET", f"/messages/agent/{chat_id}", token=token)
    assert [(m["id"], m["chatId"], m["content"], m["senderRole"]) for m in history] == [
        (received["id"], chat_id, "Any news?", "customer"),
        (delivered["id"], chat_id, "It left today.", "agent"),
    ]
    assert [m["senderId"] for m in history] == [shop_id, agent_id]

    # Leaving the chat's page: its messages come as notifications to the agent's room.
    await node.emit("agent", "leaveChat", {"chatId": chat_id})
    await no_errors(node, "agent", agent_id)
    await node.emit("customer", "sendMessage", {"chatId": chat_id, "message": "Thanks!"})
    notice = await node.event("agent", "notification")
    assert (notice["content"], notice["type"], notice["read"]) == ("Thanks!", "message", False)
    assert notice["reference"]["id"] == chat_id  # "View" opens /chat?ticket=<this>
    assert notice["_id"]
    assert notice["title"]
    parses(notice["createdAt"])
    await node.emit("agent", "markNotificationRead", {"notificationId": notice["_id"]})
    await node.emit("agent", "markAllNotificationsRead")
    await no_errors(node, "agent", agent_id)

    # TicketStatusDialog: resolve it.
    resolved = await dashboard.json("PUT", f"/chats/agent/{chat_id}/resolved", token=token)
    assert resolved["status"] == "resolved"
    statistics = (await dashboard.json("GET", "/dashboard/statistics", token=token))["statistics"]
    assert (statistics["chat"]["total"], statistics["chat"]["resolved"]) == (1, 1)
    assert node.seen("agent", "error") == []


async def test_the_dashboards_account_pages(live: Live, node: NodeClients) -> None:
    dashboard = Browser(live, "agent-dashboard")
    signed_in = await dashboard.json(
        "POST", "/auth/login", body={"email": AGENT, "password": ORIGINAL_PASSWORD}
    )
    token, agent_id = signed_in["token"], signed_in["user"]["id"]
    await dashboard.connect(node, "agent", auth={"token": token}, **DASHBOARD_SOCKET)
    await node.expect("agent", "connect")

    # Profile.tsx: name and phone.
    await dashboard.json(
        "PUT", "/profile", token=token, body={"name": "Sara K", "phone": "01012345678"}
    )
    profile = await dashboard.json("GET", "/profile/", token=token)
    assert (profile["name"], profile["phone"]) == ("Sara K", "01012345678")

    # Settings.tsx: the report form; success is all it reads.
    report = {"email": AGENT, "subject": "Printer", "message": "The label printer is jammed."}
    answer = await dashboard.request("POST", "/email/report", token=token, body=report)
    assert answer.is_success, answer.text
    answer.json()

    # Profile.tsx: a new password; the answer's `message` is shown.
    changed = await dashboard.json(
        "POST",
        "/password/update",
        token=token,
        body={
            "oldPassword": ORIGINAL_PASSWORD,
            "newPassword": "N3w-password",
            "confirmPassword": "N3w-password",
        },
    )
    assert changed["message"]
    # The dashboard keeps its token (it does not read the fresh one in the answer): it still
    # works, and its socket stays. Refused, Header.tsx's profile call would send it to the
    # login page and AuthLayout back home, in a loop of requests.
    assert (await dashboard.request("GET", "/profile/", token=token)).status_code == 200
    await no_errors(node, "agent", agent_id)
    assert node.seen("agent", "disconnect") == []
    with_new_password = await dashboard.request(
        "POST", "/auth/login", body={"email": AGENT, "password": "N3w-password"}
    )
    assert with_new_password.status_code == 200

    # A wrong password: the login form shows the answer's `message`.
    wrong = await dashboard.request(
        "POST", "/auth/login", body={"email": AGENT, "password": ORIGINAL_PASSWORD}
    )
    assert wrong.status_code == 401
    assert wrong.json()["message"]

    # Register.tsx and ForgotPassword.tsx.
    registered = await dashboard.json(
        "POST",
        "/auth/register",
        body={
            "name": "Nour Hany",
            "email": "nour@example.com",
            "password": "Nour-2024x",
            "confirmedPassword": "Nour-2024x",
        },
        status=201,
    )
    assert (registered["user"]["email"], registered["user"]["role"]) == (
        "nour@example.com",
        "user",
    )
    assert registered["token"]
    forgot = await dashboard.json("POST", "/password/forgot", body={"email": "nour@example.com"})
    assert forgot["message"]
