"""Helpers for the REST tests: signed-in callers, agents with a live connection, the error shape.

An agent is only assigned chats while connected. Until a test needs the websocket itself, a
connection is a domain `Session` whose events land in a list, attached with `System.connect`
(exactly what the websocket edge does for each socket).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from actors import Event, Session
from api import DEMO_PASSWORD
from store import Role, User, new_id
from tests.conftest import Live

ADMIN = "admin@switchboard.example"
ANN = "ann@switchboard.example"  # max load 3
BOB = "bob@switchboard.example"  # max load 4
CY = "cy@switchboard.example"  # max load 2
UMA = "uma@switchboard.example"  # a plain user
CUSTOMER_1 = "shop-customer-1"  # Carla Customer
CUSTOMER_2 = "shop-customer-2"


WAIT_SECONDS = 5.0


class Inbox:
    """What the domain pushed to a caller's live connections, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = trio.Event()

    def offer(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait_for(self, wanted: Callable[[Event], bool], count: int = 1) -> list[Event]:
        """Wait (bounded) until `count` events match; returns the matches."""
        with trio.fail_after(WAIT_SECONDS):
            while len(found := [event for event in self.events if wanted(event)]) < count:
                await self._arrived.wait()
        return found


@dataclass
class Caller:
    """Someone signed in: their record and the Authorization header to send."""

    user: User
    headers: dict[str, str]
    inbox: Inbox = field(default_factory=Inbox)
    closed: list[int] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return self.inbox.events

    @property
    def id(self) -> str:
        return self.user.id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def staff(live: Live, email: str, password: str = DEMO_PASSWORD) -> Caller:
    token = await live.login(email, password, admin=email == ADMIN)
    user = await live.services.store.get_user_by_email(email)
    assert user is not None
    return Caller(user, bearer(token))


async def customer(live: Live, external_id: str = CUSTOMER_1) -> Caller:
    headers = bearer(await live.customer_token(external_id))
    profile = await live.http.get("/profile", headers=headers)
    assert profile.status_code == 200, profile.text
    user = await live.services.store.get_user(profile.json()["id"])
    assert user is not None
    return Caller(user, headers)


async def connect(live: Live, caller: Caller) -> Session:
    """A live connection of the caller: their events land in `caller.inbox`."""
    session = Session(
        id=new_id(),
        user_id=caller.id,
        offer=caller.inbox.offer,
        close=lambda code, reason: caller.closed.append(code),
    )
    await live.services.system.connect(session, caller.user.role)
    return session


async def available_agent(live: Live, email: str, password: str = DEMO_PASSWORD) -> Caller:
    """An agent, connected and available, so chats are assigned to them."""
    agent = await staff(live, email, password)
    await connect(live, agent)
    response = await live.http.put("/profile/agent/available", headers=agent.headers)
    assert response.status_code == 200, response.text
    return agent


async def open_chat(live: Live, caller: Caller, **body: Any) -> dict[str, Any]:
    response = await live.http.post(
        "/chats/customer", headers=caller.headers, json={"title": "Help", **body}
    )
    assert response.status_code in (200, 201), response.text
    chat: dict[str, Any] = response.json()
    return chat


async def send(
    live: Live, caller: Caller, chat_id: str, content: str, **extra: Any
) -> httpx.Response:
    side = "customer" if caller.user.role is Role.CUSTOMER else "agent"
    return await live.http.post(
        f"/messages/{side}/send",
        headers=caller.headers,
        json={"chatId": chat_id, "content": content, **extra},
    )


async def walk_pages(live: Live, caller: Caller, url: str, limit: int) -> list[str]:
    """The ids of a list, page by page of `limit` by X-Next-Cursor, until the last page."""
    ids: list[str] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        page = await live.http.get(url, headers=caller.headers, params=params)
        assert page.status_code == 200, page.text
        assert len(page.json()) <= limit
        ids += [item["id"] for item in page.json()]
        if "X-Next-Cursor" not in page.headers:
            return ids
        params = {"limit": limit, "cursor": page.headers["X-Next-Cursor"]}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The common error shape, with the given status (and code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str)
    assert body["message"] == error["message"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


UNKNOWN_ID = "0" * 24
