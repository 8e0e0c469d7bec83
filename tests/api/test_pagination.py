"""Pagination, the same on every list: limit 1..100, an opaque cursor, X-Next-Cursor."""

from __future__ import annotations

from typing import Any

import pytest

from api import _pages
from store import Role, User, new_id, utcnow
from tests.api.support import (
    ADMIN,
    ANN,
    UNKNOWN_ID,
    assert_error,
    available_agent,
    customer,
    open_chat,
    staff,
    walk_pages,
)
from tests.conftest import Live


async def _lists(live: Live) -> list[tuple[str, Role | None]]:
    """Every operation that takes `limit`, with a concrete URL and a role allowed on it (None:
    a public list, such as the development outbox)."""
    document: dict[str, Any] = (await live.http.get("/openapi.json")).json()
    lists = []
    for path, item in document["paths"].items():
        operation = item.get("get", {})
        if any(p["name"] == "limit" for p in operation.get("parameters", [])):
            url = path.replace("{chatId}", UNKNOWN_ID).replace("{agentId}", UNKNOWN_ID)
            roles = operation["x-roles"]
            lists.append((url, Role(roles[0]) if roles else None))
    return lists


async def test_every_list_refuses_a_bad_limit_or_cursor(live: Live) -> None:
    callers = {
        Role.ADMIN: await staff(live, ADMIN),
        Role.AGENT: await staff(live, ANN),
        Role.CUSTOMER: await customer(live),
    }
    lists = await _lists(live)
    assert len(lists) >= 12
    for url, role in lists:
        for params in ({"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "../etc"}):
            headers = callers[role].headers if role is not None else None
            response = await live.http.get(url, headers=headers, params=params)
            assert_error(response, 400, "invalid_query")


async def test_pages_neither_skip_nor_repeat(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    await live.http.put(f"/admin/agents/{ann.id}/max-load", headers=admin.headers, json={
        "maxLoad": 10
    })  # fmt: skip
    for i in range(7):
        chat = await open_chat(live, await customer(live, f"pager-{i}"))
        assert chat["agent"]["_id"] == ann.id
    everything = await walk_pages(live, admin, "/admin/chats", 100)
    assert len(everything) == 7
    assert everything == sorted(everything, reverse=True)  # newest first
    for limit in (1, 2, 3):
        assert await walk_pages(live, admin, "/admin/chats", limit) == everything
        assert await walk_pages(live, ann, "/chats/agent", limit) == everything


async def test_without_limit_a_list_is_whole_up_to_its_cap(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original's admin panel asks for every user and chat at once and pages in the
    browser: beyond the old default of 20, nothing may be missing."""
    admin = await staff(live, ADMIN)
    store = live.services.store
    managed = await store.count_users(role=Role.USER) + await store.count_users(role=Role.AGENT)
    for i in range(25 - managed):
        now = utcnow()
        await store.create_user(
            User(new_id(), f"u{i}@shop.example", f"User {i}", Role.USER, created_at=now)
        )
    everyone = await live.http.get("/admin/users", headers=admin.headers)
    assert len(everyone.json()) == 25
    assert "X-Next-Cursor" not in everyone.headers

    # Beyond the cap (1,000; 20 here), the rest is one X-Next-Cursor away.
    monkeypatch.setattr(_pages._Sized, "default_size", 20)
    first = await live.http.get("/admin/users", headers=admin.headers)
    assert len(first.json()) == 20
    rest = await live.http.get(
        "/admin/users", headers=admin.headers, params={"cursor": first.headers["X-Next-Cursor"]}
    )
    assert len(rest.json()) == 5
    assert "X-Next-Cursor" not in rest.headers
    assert [u["id"] for u in first.json() + rest.json()] == [u["id"] for u in everyone.json()]
    assert _pages.WHOLE_LIST == 1000
