"""Accounts for admins: list, create agents, approve, edit, demote, delete."""

from __future__ import annotations

from typing import Any, cast

import pytest

from actors import ChatUnassigned
from actors.events import CLOSE_SIGNED_OUT
from api import DEMO_STAFF
from store import AgentStatus, Backend, Role, StoreUnavailable
from tests.api.support import (
    ADMIN,
    ANN,
    UMA,
    UNKNOWN_ID,
    Caller,
    assert_error,
    available_agent,
    connect,
    customer,
    open_chat,
    staff,
    walk_pages,
)
from tests.conftest import Live

NINA_EMAIL = "nina@switchboard.example"
NINA_PASSWORD = "a long enough secret"
NEW_AGENT = {
    "role": "agent",
    "name": "Nina New",
    "email": NINA_EMAIL,
    "password": NINA_PASSWORD,
    "confirmPassword": NINA_PASSWORD,
    "phone": "0102",
    "maxLoad": 5,
}


async def test_users_are_listed_by_role_and_paged(live: Live) -> None:
    admin = await staff(live, ADMIN)
    agents = await live.http.get("/admin/users", headers=admin.headers, params={"role": "agent"})
    assert sorted(u["email"] for u in agents.json()) == sorted(
        a.email for a in DEMO_STAFF if a.role is Role.AGENT
    )
    seen = await walk_pages(live, admin, "/admin/users", 3)
    store = live.services.store
    managed = await store.count_users(role=Role.USER) + await store.count_users(role=Role.AGENT)
    assert len(seen) == len(set(seen)) == managed
    assert seen == sorted(seen)
    # Without `limit`, users and agents in one answer, as the original's admin panel expects.
    everyone = await live.http.get("/admin/users", headers=admin.headers)
    assert [u["id"] for u in everyone.json()] == seen
    assert {u["role"] for u in everyone.json()} == {"user", "agent"}
    assert "X-Next-Cursor" not in everyone.headers
    # Admins and customers on request.
    for role in ("admin", "customer"):
        listed = await live.http.get("/admin/users", headers=admin.headers, params={"role": role})
        assert {u["role"] for u in listed.json()} == {role}
        assert len(listed.json()) == await store.count_users(role=Role(role))


async def test_admin_creates_an_agent_who_can_take_chats(live: Live) -> None:
    admin = await staff(live, ADMIN)
    created = await live.http.post("/admin/users", headers=admin.headers, json=NEW_AGENT)
    assert created.status_code == 201, created.text
    nina = created.json()
    assert (nina["role"], nina["status"], nina["maxLoad"]) == ("agent", "away", 5)
    fetched = await live.http.get(f"/admin/users/{nina['id']}", headers=admin.headers)
    assert fetched.json() == nina

    # The assignment actor knows her at once: she can go available and get a chat.
    agent = await available_agent(live, NINA_EMAIL, NINA_PASSWORD)
    chat = await open_chat(live, await customer(live))
    assert chat["agent"]["_id"] == agent.id

    again = await live.http.post("/admin/users", headers=admin.headers, json=NEW_AGENT)
    assert_error(again, 409, "email_taken")
    mismatch = {**NEW_AGENT, "email": "other@switchboard.example", "confirmPassword": "nope"}
    assert_error(await live.http.post("/admin/users", headers=admin.headers, json=mismatch), 400)
    assert await live.services.store.get_user_by_email("other@switchboard.example") is None


async def test_approving_a_user_makes_them_an_agent(live: Live) -> None:
    admin = await staff(live, ADMIN)
    approved = await live.http.put(
        "/admin/users/approve", headers=admin.headers, json={"email": UMA}
    )
    assert approved.status_code == 200, approved.text
    assert (approved.json()["role"], approved.json()["status"]) == ("agent", "away")
    uma = await available_agent(live, UMA)
    assert (await live.http.get("/dashboard/statistics", headers=uma.headers)).is_success

    twice = await live.http.put("/admin/users/approve", headers=admin.headers, json={"email": UMA})
    assert_error(twice, 409, "not_a_user")
    nobody = await live.http.put(
        "/admin/users/approve", headers=admin.headers, json={"email": "no@body.example"}
    )
    assert_error(nobody, 404, "user_not_found")


async def test_editing_a_profile_and_refusing_nulls(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann = await staff(live, ANN)
    edited = await live.http.put(
        f"/admin/users/{ann.id}", headers=admin.headers, json={"name": "Ann B", "phone": "9"}
    )
    assert (edited.json()["name"], edited.json()["phone"], edited.json()["role"]) == (
        "Ann B",
        "9",
        "agent",
    )
    cleared = await live.http.put(
        f"/admin/users/{ann.id}", headers=admin.headers, json={"phone": None}
    )
    assert (cleared.json()["name"], cleared.json()["phone"]) == ("Ann B", None)
    for body in ({"name": None}, {"email": "not an email"}, {"role": "admin"}):
        refused = await live.http.put(f"/admin/users/{ann.id}", headers=admin.headers, json=body)
        assert_error(refused, 400, "invalid_body")
    taken = await live.http.put(
        f"/admin/users/{ann.id}", headers=admin.headers, json={"email": UMA, "role": "user"}
    )
    assert_error(taken, 409, "email_taken")
    stored = await live.services.store.get_user(ann.id)
    assert stored is not None
    assert (stored.name, stored.email, stored.role) == ("Ann B", ANN, "agent")


async def _agent_with_a_chat(live: Live) -> tuple[Caller, str]:
    ann = await available_agent(live, ANN)
    chat = await open_chat(live, await customer(live))
    assert chat["agent"]["_id"] == ann.id
    return ann, chat["id"]


async def test_demoting_an_agent_requeues_their_chats_and_closes_their_connections(
    live: Live,
) -> None:
    admin = await staff(live, ADMIN)
    ann, chat_id = await _agent_with_a_chat(live)
    demoted = await live.http.put(
        f"/admin/users/{ann.id}", headers=admin.headers, json={"role": "user"}
    )
    assert demoted.json()["role"] == "user"
    assert any(isinstance(e, ChatUnassigned) and e.chat_id == chat_id for e in ann.events)
    assert ann.closed == [CLOSE_SIGNED_OUT]
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert (chat.status, chat.agent_id) == ("pending", None)
    assert_error(await live.http.get("/chats/agent", headers=ann.headers), 403, "forbidden")


async def test_a_demoted_agent_is_stored_away(live: Live) -> None:
    """The assignment actor writes the demotion's routing: the record does not stay `available`."""
    admin = await staff(live, ADMIN)
    ann = await available_agent(live, ANN)
    demoted = await live.http.put(
        f"/admin/users/{ann.id}", headers=admin.headers, json={"role": "user"}
    )
    assert demoted.status_code == 200, demoted.text
    assert (demoted.json()["role"], demoted.json()["status"]) == ("user", "away")
    stored = await live.services.store.get_user(ann.id)
    assert stored is not None
    assert (stored.role, stored.status) == (Role.USER, AgentStatus.AWAY)
    # Approved again, they are an agent the assignment actor knows, away until they say otherwise.
    again = await live.http.put("/admin/users/approve", headers=admin.headers, json={"email": ANN})
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "away"
    assert await available_agent(live, ANN)


def _routing_fails_once(live: Live, monkeypatch: pytest.MonkeyPatch) -> list[Exception]:
    """The assignment actor's next routing write is refused; the list empties when it was."""
    # The edge holds it as a Store; the assignment actor writes through the same object.
    store = cast(Backend, live.services.system.store)
    record_routing = store.record_routing
    failures: list[Exception] = [StoreUnavailable("the database is restarting")]

    async def fails_once(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        await record_routing(*args, **kwargs)

    monkeypatch.setattr(store, "record_routing", fails_once)
    return failures


async def test_an_approval_whose_ask_fails_can_be_made_again(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refuses the assignment actor's write once: the approval answers 503 and changes
    nothing, so approving again works and the assignment actor knows the new agent."""
    admin = await staff(live, ADMIN)
    failures = _routing_fails_once(live, monkeypatch)
    failed = await live.http.put("/admin/users/approve", headers=admin.headers, json={"email": UMA})
    assert failed.status_code == 503, failed.text
    assert not failures
    uma = await live.services.store.get_user_by_email(UMA)
    assert uma is not None
    assert uma.role is Role.USER
    approved = await live.http.put(
        "/admin/users/approve", headers=admin.headers, json={"email": UMA}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["role"] == "agent"
    snapshot = await live.services.system.snapshot()
    assert uma.id in {agent.agent_id for agent in snapshot.core.agents}
    await available_agent(live, UMA)


async def test_a_demotion_whose_ask_fails_changes_nothing(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused by the store, a demotion leaves an agent with their chat (the role is not
    changed apart from the routing); made again, it completes."""
    admin = await staff(live, ADMIN)
    ann, chat_id = await _agent_with_a_chat(live)
    failures = _routing_fails_once(live, monkeypatch)
    path = f"/admin/users/{ann.id}"
    failed = await live.http.put(path, headers=admin.headers, json={"role": "user"})
    assert failed.status_code == 503, failed.text
    assert not failures
    stored = await live.services.store.get_user(ann.id)
    assert stored is not None
    assert (stored.role, stored.status) == (Role.AGENT, AgentStatus.AVAILABLE)
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert chat.agent_id == ann.id
    demoted = await live.http.put(path, headers=admin.headers, json={"role": "user"})
    assert demoted.status_code == 200, demoted.text
    assert (demoted.json()["role"], demoted.json()["status"]) == ("user", "away")
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert (chat.status, chat.agent_id) == ("pending", None)
    snapshot = await live.services.system.snapshot()
    assert ann.id not in {agent.agent_id for agent in snapshot.core.agents}


async def test_deleting_an_agent_requeues_their_chats(live: Live) -> None:
    admin = await staff(live, ADMIN)
    ann, chat_id = await _agent_with_a_chat(live)
    deleted = await live.http.delete(f"/admin/users/{ann.id}", headers=admin.headers)
    assert deleted.status_code == 200, deleted.text
    assert ann.closed == [CLOSE_SIGNED_OUT]
    assert await live.services.store.get_user(ann.id) is None
    chat = await live.services.store.get_chat(chat_id)
    assert chat is not None
    assert (chat.status, chat.agent_id) == ("pending", None)
    gone = await live.http.get(f"/admin/users/{ann.id}", headers=admin.headers)
    assert_error(gone, 404, "user_not_found")


async def test_admins_and_customers_are_not_managed_here(live: Live) -> None:
    admin = await staff(live, ADMIN)
    carla = await customer(live)
    for user_id in (admin.id, carla.id):
        assert_error(
            await live.http.delete(f"/admin/users/{user_id}", headers=admin.headers),
            409,
            "role_not_managed",
        )
        assert await live.services.store.get_user(user_id) is not None
    for response in (
        await live.http.delete(f"/admin/users/{UNKNOWN_ID}", headers=admin.headers),
        await live.http.put(f"/admin/users/{UNKNOWN_ID}", headers=admin.headers, json={}),
    ):
        assert_error(response, 404, "user_not_found")
    malformed = await live.http.get("/admin/users/not-an-id", headers=admin.headers)
    assert_error(malformed, 404)
    await connect(live, carla)  # still a customer with a working token
    assert (await live.http.get("/profile", headers=carla.headers)).is_success


async def test_the_original_panels_add_and_edit_forms(live: Live) -> None:
    admin = await staff(live, ADMIN)
    # Its add form lets the role be user; its edit form sends the agent's status.
    plain = {**NEW_AGENT, "role": "user"}
    del plain["maxLoad"]
    created = await live.http.post("/admin/users", headers=admin.headers, json=plain)
    assert created.status_code == 201, created.text
    nina = created.json()
    assert (nina["role"], nina["status"], nina["maxLoad"]) == ("user", "away", None)
    refused = await live.http.put(
        f"/admin/users/{nina['id']}", headers=admin.headers, json={"status": "available"}
    )
    assert_error(refused, 409, "not_an_agent")
    approved = await live.http.put(
        f"/admin/users/{nina['id']}",
        headers=admin.headers,
        json={"role": "agent", "status": "available", "phone": "01012345678"},
    )
    assert approved.status_code == 200, approved.text
    assert (approved.json()["role"], approved.json()["status"]) == ("agent", "available")
    assert approved.json()["phone"] == "01012345678"
    away = await live.http.put(
        f"/admin/users/{nina['id']}", headers=admin.headers, json={"status": "away"}
    )
    assert away.json()["status"] == "away"
    history = await live.http.get(f"/admin/agents/{nina['id']}/history", headers=admin.headers)
    changes = [
        (e["from"], e["to"], e["actor"]) for e in history.json() if e["kind"] == "agent_status"
    ]
    assert ("away", "available", "admin") in changes
    assert ("available", "away", "admin") in changes
