"""Every route's allowed roles, as a table, checked three ways: the table lists exactly the app's
routes (a new route without an entry fails here), each route's `requires` rule says what the
table says, and a live server answers each (role x route) pair accordingly: 401 without a token,
403 for a role not allowed, anything else (the handler ran) for a role allowed."""

from __future__ import annotations

import re

import pytest

from api import create_app
from store import Role, User
from tests.api.support import ANN, UMA, UNKNOWN_ID, bearer
from tests.conftest import Live

ANYONE = frozenset[Role]()  # public: no token needed
# Real-time transports authenticate in their own handshake (tested with those edges).
OWN_HANDSHAKE = frozenset({Role.USER, Role.AGENT, Role.ADMIN, Role.CUSTOMER})
ADMIN = frozenset({Role.ADMIN})
AGENT = frozenset({Role.AGENT})
CUSTOMER = frozenset({Role.CUSTOMER})
NOTIFIED = AGENT | CUSTOMER
SIGNED_IN = frozenset({Role.USER, Role.AGENT, Role.CUSTOMER})
STAFF = frozenset({Role.USER, Role.AGENT, Role.ADMIN})

ROUTES: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/openapi.json"): ANYONE,
    ("GET", "/docs"): ANYONE,
    ("GET", "/docs/assets/{name}"): ANYONE,
    ("GET", "/"): ANYONE,
    ("GET", "/console"): ANYONE,
    ("GET", "/console/agent"): ANYONE,
    ("GET", "/console/customer"): ANYONE,
    ("GET", "/console/assets/{name}"): ANYONE,
    ("GET", "/uploads/{key}"): ANYONE,  # profile images, under random keys
    ("GET", "/dev/test"): ANYONE,
    ("GET", "/healthz"): ANYONE,
    ("GET", "/readyz"): ANYONE,
    ("GET", "/metrics"): ANYONE,  # loopback only, or SWITCHBOARD_METRICS_TOKEN (tests/ops)
    ("GET", "/dev/seed"): ANYONE,
    ("POST", "/dev/customer-token"): ANYONE,
    ("POST", "/auth/register"): ANYONE,
    ("POST", "/auth/login"): ANYONE,
    ("POST", "/admin/auth/login"): ANYONE,
    ("GET", "/ws"): OWN_HANDSHAKE,
    ("GET", "/socket.io/"): OWN_HANDSHAKE,
    ("POST", "/socket.io/"): OWN_HANDSHAKE,
    ("POST", "/auth/logout"): SIGNED_IN,
    ("POST", "/admin/auth/logout"): ADMIN,
    ("GET", "/profile"): SIGNED_IN,
    ("PUT", "/profile"): SIGNED_IN,
    ("GET", "/admin/profile"): ADMIN,
    ("PUT", "/admin/profile"): ADMIN,
    ("PUT", "/profile/agent/{status}"): AGENT,
    ("GET", "/chats/agent"): AGENT,
    ("GET", "/chats/agent/show/{chat_id}"): AGENT,
    ("PUT", "/chats/agent/read/{chat_id}"): AGENT,
    ("PUT", "/chats/agent/{chat_id}/{status}"): AGENT,
    ("POST", "/chats/customer"): CUSTOMER,
    ("PUT", "/chats/customer/read/{chat_id}"): CUSTOMER,
    ("GET", "/messages/agent/{chat_id}"): AGENT,
    ("POST", "/messages/agent/send"): AGENT,
    ("PUT", "/messages/agent/{message_id}/{status}"): AGENT,
    ("GET", "/messages/customer/{chat_id}"): CUSTOMER,
    ("POST", "/messages/customer/send"): CUSTOMER,
    ("PUT", "/messages/customer/{message_id}/{status}"): CUSTOMER,
    ("GET", "/notification"): NOTIFIED,
    ("GET", "/notification/unread"): NOTIFIED,
    ("PUT", "/notification/read-all"): NOTIFIED,
    ("PUT", "/notification/{notification_id}/read"): NOTIFIED,
    ("DELETE", "/notification/{notification_id}"): NOTIFIED,
    ("GET", "/dashboard/statistics"): AGENT,
    ("GET", "/dashboard/recent-chats"): AGENT,
    ("GET", "/admin/dashboard/statistics"): ADMIN,
    ("GET", "/admin/dashboard/recent-chats"): ADMIN,
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("PUT", "/admin/users/approve"): ADMIN,
    ("GET", "/admin/users/{user_id}"): ADMIN,
    ("PUT", "/admin/users/{user_id}"): ADMIN,
    ("DELETE", "/admin/users/{user_id}"): ADMIN,
    ("GET", "/admin/chats"): ADMIN,
    ("GET", "/admin/chats/{chat_id}"): ADMIN,
    ("PUT", "/admin/chats/{chat_id}"): ADMIN,
    ("DELETE", "/admin/chats/{chat_id}"): ADMIN,
    ("POST", "/admin/chats/{chat_id}/reassign"): ADMIN,
    ("POST", "/admin/chats/{chat_id}/close"): ADMIN,
    ("GET", "/admin/chats/{chat_id}/history"): ADMIN,
    ("GET", "/admin/agents"): ADMIN,
    ("PUT", "/admin/agents/{agent_id}/max-load"): ADMIN,
    ("PUT", "/admin/agents/{agent_id}/status"): ADMIN,
    ("GET", "/admin/agents/{agent_id}/history"): ADMIN,
    ("GET", "/admin/queue"): ADMIN,
    ("GET", "/admin/system"): ADMIN,
    ("GET", "/dev/mail"): ANYONE,
    ("POST", "/email/send"): STAFF,
    ("POST", "/email/verify"): STAFF,
    ("POST", "/email/report"): STAFF,
    ("POST", "/password/forgot"): ANYONE,
    ("POST", "/password/reset"): ANYONE,
    ("POST", "/password/confirm"): STAFF,
    ("POST", "/password/update"): STAFF,
}

_PARAMETER = re.compile(r"<(?:([^<>:(]*)(?:\(([^<>]*)\))?:)?([^<>]+)>")


def _path(rule: str) -> str:
    return _PARAMETER.sub(lambda match: f"{{{match[3]}}}", rule)


def _url(rule: str) -> str:
    """A concrete URL for the rule: an unknown id, the first of a list of choices."""

    def value(match: re.Match[str]) -> str:
        converter, arguments, name = match[1], match[2], match[3]
        if converter == "oneof":
            return arguments.split(",")[0].strip()
        if converter == "id":
            return UNKNOWN_ID
        if name == "key":
            return f"{'0' * 32}.png"  # well formed, stored nowhere
        assert name == "name", f"no sample value for {match[0]}"
        return "swagger-ui.css"

    return _PARAMETER.sub(value, rule)


def _routes(live: Live) -> dict[tuple[str, str], tuple[str, frozenset[Role]]]:
    """(method, path) -> (a URL, the roles of the view's `requires` rule; none: public)."""
    app = create_app(live.services)
    found: dict[tuple[str, str], tuple[str, frozenset[Role]]] = {}
    for rule in app.url_map.iter_rules():
        roles = getattr(app.view_functions[rule.endpoint], "allowed_roles", ANYONE)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found[(method, _path(rule.rule))] = (_url(rule.rule), roles)
    return found


async def test_the_table_lists_every_route_with_its_rule(live: Live) -> None:
    routes = _routes(live)
    assert set(routes) == set(ROUTES), "add the new route, with its roles, to ROUTES"
    for key, (_, roles) in routes.items():
        assert roles == (ANYONE if ROUTES[key] is OWN_HANDSHAKE else ROUTES[key]), key


async def _token(live: Live, role: Role) -> str:
    """A fresh token each time: some routes revoke the one they are called with."""
    if role is Role.CUSTOMER:
        return live.services.tokens.mint_customer("shop-customer-1")
    emails = {Role.USER: UMA, Role.AGENT: ANN, Role.ADMIN: "admin@switchboard.example"}
    user: User | None = await live.services.store.get_user_by_email(emails[role])
    assert user is not None
    return live.services.tokens.issue(user)


@pytest.mark.parametrize("role", [None, *Role])
async def test_each_role_gets_what_the_table_says(live: Live, role: Role | None) -> None:
    for (method, path), (url, _) in _routes(live).items():
        allowed = ROUTES.get((method, path), OWN_HANDSHAKE)  # the test above names new ones
        if allowed is OWN_HANDSHAKE:
            continue
        headers = bearer(await _token(live, role)) if role else {}
        response = await live.http.request(method, url, headers=headers, json={})
        where = f"{role} {method} {path}: {response.status_code} {response.text[:200]}"
        if not allowed:
            assert response.status_code not in (401, 403), where
        elif role is None:
            assert response.status_code == 401, where
        elif role in allowed:
            assert response.status_code not in (401, 403), where
        else:
            assert response.status_code == 403, where
