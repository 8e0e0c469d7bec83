"""Sign-up, sign-in, sign-out, profiles and role guards, over HTTP against a live server.

Rules: every test talks to a real Hypercorn on 127.0.0.1; every refusal is checked for the common
error shape {"error": {"code", "message", "details"}} and for changing nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from api import DEMO_CUSTOMERS, DEMO_STAFF
from store import Priority, Role
from tests.api.support import assert_error, bearer
from tests.conftest import Live

SEEDED = len(DEMO_STAFF) + len(DEMO_CUSTOMERS)  # the records the demo data made

ADMIN = "admin@switchboard.example"
AGENT = "ann@switchboard.example"
USER = "uma@switchboard.example"


REGISTER = {
    "name": "Zed New",
    "email": "Zed@Example.com",
    "password": "correct horse battery",
    "confirmedPassword": "correct horse battery",
}


async def test_register_login_profile_logout_then_token_refused(live: Live) -> None:
    registered = await live.http.post("/auth/register", json=REGISTER)
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert set(body) == {"user", "token"}
    assert body["user"]["email"] == "zed@example.com"
    assert body["user"]["role"] == "user"
    assert "passwordHash" not in body["user"]
    assert "password_hash" not in body["user"]

    token = await live.login("zed@example.com", "correct horse battery")
    profile = await live.http.get("/profile", headers=bearer(token))
    assert profile.status_code == 200
    assert profile.json()["name"] == "Zed New"
    assert profile.json()["createdAt"].endswith("Z")

    updated = await live.http.put(
        "/profile", headers=bearer(token), json={"name": "Zed Renamed", "phone": "123"}
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["name"], updated.json()["phone"]) == ("Zed Renamed", "123")

    out = await live.http.post("/auth/logout", headers=bearer(token))
    assert out.status_code == 200
    assert_error(await live.http.get("/profile", headers=bearer(token)), 401, "unauthorized")


async def test_duplicate_email_refused(live: Live) -> None:
    assert (await live.http.post("/auth/register", json=REGISTER)).status_code == 201
    again = await live.http.post("/auth/register", json={**REGISTER, "email": "zed@EXAMPLE.com"})
    assert_error(again, 409, "email_taken")
    assert await live.services.store.count_users() == SEEDED + 1  # and one registration


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**REGISTER, "email": "not-an-email"}, "email"),
        ({**REGISTER, "password": "short", "confirmedPassword": "short"}, "password"),
        ({**REGISTER, "confirmedPassword": "different one"}, ""),
        ({**REGISTER, "role": "admin"}, "role"),
        ({**REGISTER, "name": 42}, "name"),
        ({"email": "a@b.example"}, "name"),
        ([1, 2, 3], ""),
    ],
)
async def test_bad_register_bodies(live: Live, body: Any, field: str) -> None:
    error = assert_error(await live.http.post("/auth/register", json=body), 400, "invalid_body")
    fields = [item["field"] for item in error["details"]]
    assert any(name.startswith(field) for name in fields), fields
    assert await live.services.store.count_users() == SEEDED


async def test_malformed_json_and_oversized_body(live: Live) -> None:
    malformed = await live.http.post(
        "/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(malformed, 400)
    huge = await live.http.post(
        "/auth/register", json={**REGISTER, "name": "x" * (live.services.settings.max_body_bytes)}
    )
    assert_error(huge, 413, "payload_too_large")


async def test_unknown_email_and_wrong_password_answer_alike(live: Live) -> None:
    unknown = await live.http.post(
        "/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}
    )
    wrong = await live.http.post("/auth/login", json={"email": AGENT, "password": "whatever1"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


async def test_login_throttled_after_repeated_failures(live: Live) -> None:
    free = live.services.settings.login_free_failures
    for _ in range(free):
        response = await live.http.post(
            "/auth/login", json={"email": USER, "password": "nope-nope"}
        )
        assert_error(response, 401, "invalid_credentials")
    # The failing client waits before its next try, even with the right password.
    blocked = await live.http.post(
        "/auth/login", json={"email": USER, "password": "switchboard-demo"}
    )
    assert_error(blocked, 429, "too_many_attempts")
    assert blocked.headers["Retry-After"] == "1"


async def test_admin_and_staff_login_endpoints_are_separate(live: Live) -> None:
    admin_token = await live.login(ADMIN, admin=True)
    me = await live.http.get("/admin/profile", headers=bearer(admin_token))
    assert me.status_code == 200
    assert me.json()["role"] == "admin"
    wrong_door = await live.http.post(
        "/auth/login", json={"email": ADMIN, "password": "switchboard-demo"}
    )
    assert_error(wrong_door, 403, "wrong_login_endpoint")
    agent_at_admin = await live.http.post(
        "/admin/auth/login", json={"email": AGENT, "password": "switchboard-demo"}
    )
    assert_error(agent_at_admin, 403, "wrong_login_endpoint")


async def test_the_node_backends_seeded_accounts_sign_in(live: Live) -> None:
    """The original front ends' login forms refuse the demo addresses (the admin panel takes a
    few mail domains, gmail.com among them): the Node seeder's accounts sign in as they did."""
    expected = {
        "ziad.gamal.tech@gmail.com": ("admin", "/admin/auth/login", "/admin/profile"),
        "user@example.com": ("user", "/auth/login", "/profile"),
        "sarakhaled@example.com": ("agent", "/auth/login", "/profile"),
        "ahmedfrag@example.com": ("agent", "/auth/login", "/profile"),
    }
    for email, (role, login, profile) in expected.items():
        signed_in = await live.http.post(login, json={"email": email, "password": "123456zZ"})
        assert signed_in.status_code == 200, (email, signed_in.text)
        me = await live.http.get(profile, headers=bearer(signed_in.json()["token"]))
        assert (me.json()["email"], me.json()["role"]) == (email, role)


async def test_the_seeded_object_id_customer_is_known_by_the_shops_id(live: Live) -> None:
    """The demo customer with an ObjectId, as the original shop's are: its record is the shop's
    id, so the original widget (which compares senderId with it) sees its messages as its own."""
    (shop_id,) = [i for i, _ in DEMO_CUSTOMERS if len(i) == 24]
    token = await live.customer_token(shop_id)
    opened = await live.http.post(
        "/chats/customer", json={"title": "My order"}, headers=bearer(token)
    )
    assert opened.status_code in (200, 201), opened.text
    chat = opened.json()
    assert chat["customer"] == shop_id
    sent = await live.http.post(
        "/messages/customer/send",
        json={"chatId": chat["id"], "content": "Hello"},
        headers=bearer(token),
    )
    assert sent.status_code in (200, 201), sent.text
    assert sent.json()["senderId"] == shop_id


async def test_role_guards(live: Live) -> None:
    agent = await live.login(AGENT)
    admin = await live.login(ADMIN, admin=True)
    customer = await live.customer_token("shop-customer-1")
    assert_error(await live.http.get("/admin/profile", headers=bearer(agent)), 403, "forbidden")
    assert_error(await live.http.get("/admin/profile"), 401, "unauthorized")
    assert_error(await live.http.get("/admin/profile", headers={"Authorization": "Basic abc"}), 401)
    assert_error(await live.http.get("/profile", headers=bearer(admin)), 403, "forbidden")
    assert_error(await live.http.get("/profile", headers=bearer("not.a.jwt")), 401)
    me = await live.http.get("/profile", headers=bearer(customer))
    assert me.status_code == 200
    assert me.json()["role"] == "customer"
    assert me.json()["name"] == "Carla Customer"


async def test_customer_record_created_on_first_use(live: Live) -> None:
    token = await live.customer_token("brand-new-7", "Nia New")
    first = await live.http.get("/profile", headers=bearer(token))
    second = await live.http.get("/profile", headers=bearer(token))
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["name"] == "Nia New"
    created = await live.services.store.get_customer_by_external_id("brand-new-7")
    assert created is not None
    assert created.id == first.json()["id"]


async def test_concurrent_first_requests_make_one_customer(live: Live) -> None:
    """First requests with one new shop token race: one customer record, so a chat opened under
    any of them is the customer's own (with two records, the later one's chat answered 404)."""
    token = await live.customer_token("brand-new-racer", "Rae Racer")
    user_ids: list[str] = []

    async def first_request() -> None:
        principal = await live.services.tokens.authenticate(token)
        user_ids.append(principal.user.id)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(first_request)
    customers = await live.services.store.list_users(role=Role.CUSTOMER, limit=100)
    racers = {user.id for user in customers.items if user.external_id == "brand-new-racer"}
    for user_id in dict.fromkeys(user_ids):
        opened = await live.services.system.open_chat(
            user_id, title="Help", description="", priority=Priority.MEDIUM
        )
        messages = await live.http.get(
            f"/messages/customer/{opened.chat.id}", headers=bearer(token)
        )
        assert messages.status_code == 200, messages.text
    assert racers == set(user_ids)
    assert len(racers) == 1
