"""The admin panel (ZiadGamalDev/customer-support-admin-angular) against a live Switchboard: its
requests exactly as its source makes them (it has no socket), from its origin, and every field
it reads back.

Replayed from:
- src/app/core/auth.service.ts: `POST /admin/auth/login {email, password}` (reads `token` and
  `user.role`; decodes the token's `id` and `exp`). The login form and the agent form take only
  a few mail domains (src/app/validators/email-domain.validator.ts), gmail.com among them.
- src/app/services/agent-profile/agent.profile.service.ts: `GET`/`PUT /admin/profile` (`name`,
  `email`, `phone`; the edit form sends `{name, phone}`).
- src/app/features/dashboard/dashboard.component.ts and .html: `GET /admin/dashboard/statistics`
  (`statistics.user.{totalAgents, totalUsers}`, `statistics.chat.{total, resolved, pending, open,
  new}`); src/app/services/tickets/tkt-service.service.ts: `GET /admin/dashboard/recent-chats`,
  `GET /admin/chats`, `PUT /admin/chats/{id}` with `{agentId, title, description}` (the edit
  form) or `{status}` (the table), `DELETE /admin/chats/{id}`; a chat's `id`, `title`,
  `description`, `status`, `priority`, `createdAt`, `agent.{name, email}`.
- src/app/services/users/users.service.ts and src/app/features/agents/agents.component.ts:
  `GET /admin/users` (every user and agent in one answer, paged in the page: `id`, `name`,
  `email`, `role`, `status`, `updatedAt`; the status filter lowercases `status`),
  `POST /admin/users {name, email, password, confirmPassword, role, phone}`,
  `GET /admin/users/{id}`, `PUT /admin/users/{id}` with the changed fields among `{name, email,
  phone, role, status}`, `PUT /admin/users/approve {email}`, `DELETE /admin/users/{id}`.
- src/app/services/forgetpassword.service.ts and reset-password.service.ts: `POST
  /password/forgot {email}`, `POST /password/confirm {password}`, `POST /password/update
  {oldPassword, newPassword, confirmPassword}` (each reads `message`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import jwt

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

ADMIN = "ziad.gamal.tech@gmail.com"
USER_FIELDS = {"id", "name", "email", "role", "status", "updatedAt"}


async def signed_in(panel: Browser) -> str:
    answer = await panel.json(
        "POST", "/admin/auth/login", body={"email": ADMIN, "password": ORIGINAL_PASSWORD}
    )
    assert answer["user"]["role"] == "admin"
    token: str = answer["token"]
    # The panel decodes the token itself (jwtDecode): `id` is stored, `exp` says signed in.
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["id"] == answer["user"]["id"]
    assert claims["exp"] > time.time()
    return token


def as_row(user: dict[str, Any]) -> tuple[str, str, str]:
    """What the agents table shows, and its status filter (`status.toLowerCase()`)."""
    assert set(user) >= USER_FIELDS, user
    datetime.fromisoformat(user["updatedAt"])
    return user["email"], user["role"], user["status"].lower()


async def test_the_admin_signs_in_and_manages_agents(live: Live) -> None:
    panel = Browser(live, "admin-panel")
    token = await signed_in(panel)

    profile = await panel.json("GET", "/admin/profile", token=token)
    assert (profile["name"], profile["email"]) == ("Ziad Gamal", ADMIN)
    assert "phone" in profile
    edited = await panel.json(
        "PUT", "/admin/profile", token=token, body={"name": "Ziad G", "phone": "01012345678"}
    )
    assert (edited["name"], edited["phone"]) == ("Ziad G", "01012345678")

    # The add-agent form (a password with upper and lower case and a digit, a gmail address).
    made = []
    for n in range(21):  # more than a page of 20: the panel pages in the browser, not here
        body = {
            "name": f"Agent {chr(65 + n)}",
            "email": f"agent.{n}@gmail.com",
            "password": "Agent1pass",
            "confirmPassword": "Agent1pass",
            "role": "agent",
            "phone": "01112345678",
        }
        made.append(await panel.json("POST", "/admin/users", token=token, body=body, status=201))
    users = await panel.json("GET", "/admin/users", token=token)
    rows = [as_row(user) for user in users]
    assert {email for email, _, _ in rows} >= {u["email"] for u in made}
    assert {role for _, role, _ in rows} == {"user", "agent"}
    assert ("user@example.com", "user", "away") in rows  # the Node seeder's user

    # The edit form: load one, send only what changed.
    agent_id = made[0]["id"]
    loaded = await panel.json("GET", f"/admin/users/{agent_id}", token=token)
    assert (loaded["name"], loaded["email"], loaded["phone"], loaded["role"], loaded["status"]) == (
        "Agent A",
        "agent.0@gmail.com",
        "01112345678",
        "agent",
        "away",
    )
    await panel.json(
        "PUT",
        f"/admin/users/{agent_id}",
        token=token,
        body={"name": "Agent Alpha", "status": "available"},
    )
    reloaded = await panel.json("GET", f"/admin/users/{agent_id}", token=token)
    assert (reloaded["name"], reloaded["status"]) == ("Agent Alpha", "available")

    # Approve the seeded user, delete an agent.
    await panel.json("PUT", "/admin/users/approve", token=token, body={"email": "user@example.com"})
    await panel.request("DELETE", f"/admin/users/{made[1]['id']}", token=token)
    after = {user["email"]: user for user in await panel.json("GET", "/admin/users", token=token)}
    assert after["user@example.com"]["role"] == "agent"
    assert "agent.1@gmail.com" not in after

    statistics = (await panel.json("GET", "/admin/dashboard/statistics", token=token))["statistics"]
    assert statistics["user"]["totalAgents"] == sum(u["role"] == "agent" for u in after.values())
    assert statistics["user"]["totalUsers"] == sum(u["role"] == "user" for u in after.values())


async def test_the_admin_reassigns_edits_and_closes_chats(live: Live, node: NodeClients) -> None:
    panel = Browser(live, "admin-panel")
    token = await signed_in(panel)
    customer = shop_token(object_id(5))
    chat_id = await shop_opens_chat(live, customer, "Refund", "I want my money back.")

    statistics = (await panel.json("GET", "/admin/dashboard/statistics", token=token))["statistics"]
    assert statistics["chat"] == {"total": 1, "resolved": 0, "pending": 0, "open": 0, "new": 1}
    [waiting] = await panel.json("GET", "/admin/chats", token=token)
    assert (waiting["id"], waiting["status"], waiting["agent"]) == (chat_id, "new", None)

    # An agent on duty (the dashboard's replay is its own module): the edit form picks them.
    agent = await live.http.post(
        "/auth/login", json={"email": "ahmedfrag@example.com", "password": ORIGINAL_PASSWORD}
    )
    agent_token, agent_id = agent.json()["token"], agent.json()["user"]["id"]
    await Browser(live, "agent-dashboard").connect(node, "agent", auth={"token": agent_token})
    await node.expect("agent", "connect")
    await no_errors(node, "agent", agent_id)

    # An agent who is away: the form compares the answer's `message` with the original's
    # words, and only then warns and clears its agent field instead of closing with an error.
    away = await panel.request(
        "PUT",
        f"/admin/chats/{chat_id}",
        token=token,
        body={"agentId": agent_id, "title": "Refund", "description": "I want my money back."},
    )
    assert away.status_code == 409
    assert away.json()["message"] == "The selected agent is not available"
    assert away.json()["error"]["code"] == "agent_away"
    assert away.json()["error"]["details"] == {"reason": f"agent {agent_id} is away"}
    unchanged = await live.services.store.get_chat(chat_id)
    assert unchanged is not None
    assert (unchanged.agent_id, unchanged.title) == (None, "Refund")

    await live.http.put(
        "/profile/agent/available", headers={"Authorization": f"Bearer {agent_token}"}
    )
    # Available and connected, the waiting chat went to them at once. The form always sends
    # the agent: with the chat's own agent, only the title and description change.
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert chat.agent_id == agent_id
    edited = await panel.json(
        "PUT",
        f"/admin/chats/{chat_id}",
        token=token,
        body={"agentId": agent_id, "title": "Refund please", "description": "Order 1234."},
    )
    assert (edited["id"], edited["title"], edited["description"], edited["status"]) == (
        chat_id,
        "Refund please",
        "Order 1234.",
        "open",
    )
    assert (edited["agent"]["name"], edited["agent"]["email"]) == (
        "Ahmed Frag",
        "ahmedfrag@example.com",
    )
    [recent] = await panel.json("GET", "/admin/dashboard/recent-chats", token=token)
    assert (recent["title"], recent["priority"], recent["agent"]["name"]) == (
        "Refund please",
        "medium",
        "Ahmed Frag",
    )
    datetime.fromisoformat(recent["createdAt"])

    # The table's status select: pending, then resolved.
    parked = await panel.json(
        "PUT", f"/admin/chats/{chat_id}", token=token, body={"status": "pending"}
    )
    assert parked["status"] == "pending"
    closed = await panel.json(
        "PUT", f"/admin/chats/{chat_id}", token=token, body={"status": "resolved"}
    )
    assert closed["status"] == "resolved"
    statistics = (await panel.json("GET", "/admin/dashboard/statistics", token=token))["statistics"]
    assert statistics["chat"] == {"total": 1, "resolved": 1, "pending": 0, "open": 0, "new": 0}

    await panel.request("DELETE", f"/admin/chats/{chat_id}", token=token)
    assert await panel.json("GET", "/admin/chats", token=token) == []


async def test_the_admins_security_pages(live: Live) -> None:
    panel = Browser(live, "admin-panel")
    token = await signed_in(panel)
    confirmed = await panel.json(
        "POST", "/password/confirm", token=token, body={"password": ORIGINAL_PASSWORD}
    )
    assert confirmed["message"]
    updated = await panel.json(
        "POST",
        "/password/update",
        token=token,
        body={
            "oldPassword": ORIGINAL_PASSWORD,
            "newPassword": "Adm1n-pass",
            "confirmPassword": "Adm1n-pass",
        },
    )
    assert updated["message"]
    forgot = await panel.json("POST", "/password/forgot", body={"email": ADMIN})
    assert forgot["message"]
    again = await panel.request(
        "POST", "/admin/auth/login", body={"email": ADMIN, "password": "Adm1n-pass"}
    )
    assert again.status_code == 200
