"""schemathesis against a live server: every operation of /openapi.json, its default checks.

schemathesis calls the API synchronously (requests), so the server runs on its own Trio loop in a
thread for the module. Each operation is called with a token of a role it allows (its `x-roles`),
so the generated requests get past the guard and exercise the handlers; schemathesis itself
checks the guard by repeating requests without and with a bad token.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import Settings, create_app, open_services
from api._json_body import MAX_DEPTH
from store import Role
from tests.conftest import TEST_CUSTOMER_SECRET, TEST_SECRET, Live, make_settings, running_server

ADMIN = "admin@switchboard.example"
AGENT = "ann@switchboard.example"
USER = "uma@switchboard.example"
CUSTOMER = "shop-customer-1"
# Signing out revokes the token used, so those operations get a token of their own each call.
SIGN_OUTS = frozenset({"/auth/logout", "/admin/auth/logout"})
STARTUP_SECONDS = 60.0


@dataclass
class BackgroundServer:
    live: Live
    tokens: dict[Role, str]

    def token_for(self, roles: list[str], path: str) -> str:
        role = Role(roles[0])
        if path not in SIGN_OUTS:
            return self.tokens[role]
        if role is Role.CUSTOMER:
            return self.live.services.tokens.mint_customer(CUSTOMER)
        email = {Role.ADMIN: ADMIN, Role.AGENT: AGENT, Role.USER: USER}[role]
        return self.live.services.tokens.issue(self._users[email])

    _users: dict[str, Any]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    started: queue.Queue[tuple[BackgroundServer, trio.lowlevel.TrioToken, trio.Event]] = (
        queue.Queue()
    )

    async def serve_until_done() -> None:
        async with running_server(make_settings(data_dir)) as live:
            store = live.services.store
            users = {email: await store.get_user_by_email(email) for email in (ADMIN, AGENT, USER)}
            tokens = {
                Role.ADMIN: await live.login(ADMIN, admin=True),
                Role.AGENT: await live.login(AGENT),
                Role.USER: await live.login(USER),
                Role.CUSTOMER: await live.customer_token(CUSTOMER),
            }
            done = trio.Event()
            started.put(
                (BackgroundServer(live, tokens, users), trio.lowlevel.current_trio_token(), done)
            )
            await done.wait()

    thread = threading.Thread(target=trio.run, args=(serve_until_done,), daemon=True)
    thread.start()
    background, trio_token, done = started.get(timeout=STARTUP_SECONDS)
    yield background
    trio.from_thread.run_sync(done.set, trio_token=trio_token)
    thread.join(timeout=STARTUP_SECONDS)
    assert not thread.is_alive()


def _served_openapi() -> dict[str, Any]:
    """/openapi.json as a server answers it; schemathesis needs the operations at collection time,
    before the live server exists."""

    async def fetch() -> dict[str, Any]:
        settings = Settings(
            store="memory://", jwt_secret=TEST_SECRET, customer_jwt_secret=TEST_CUSTOMER_SECRET
        )
        async with open_services(settings) as found:
            response = await create_app(found).test_client().get("/openapi.json")
            document: dict[str, Any] = await response.get_json()
            return document

    return trio.run(fetch)


_DOCUMENT = _served_openapi()
schema = schemathesis.openapi.from_dict(_DOCUMENT)
# The token is ours to send (one of a role each operation allows); schemathesis still tries
# every guarded operation without it and with a bad one (its ignored_auth check).
schema.config.generation.update(with_security_parameters=False)


# "password and its confirmation differ" cannot be said in JSON Schema, so a generated body the
# schema allows may rightly get 400 here; every other check still runs on these operations.
# Nor can it know a mailed code or the current password: a wrong one is rightly refused with 400.
CROSS_FIELD_RULES = frozenset(
    {
        ("POST", "/auth/register"),
        ("POST", "/admin/users"),
        ("POST", "/password/reset"),
        ("POST", "/password/confirm"),
        ("POST", "/password/update"),
        ("POST", "/email/verify"),
    }
)


def _call(case: Any, server: BackgroundServer) -> None:
    roles: list[str] = case.operation.definition.raw["x-roles"]
    headers = (
        {"Authorization": f"Bearer {server.token_for(roles, case.operation.path)}"}
        if roles
        else None
    )
    excluded = (
        [positive_data_acceptance]
        if (case.method.upper(), case.operation.path) in CROSS_FIELD_RULES
        else None
    )
    case.call_and_validate(base_url=server.live.url, headers=headers, excluded_checks=excluded)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: Any, server: BackgroundServer) -> None:
    _call(case, server)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_thoroughly(case: Any, server: BackgroundServer) -> None:
    _call(case, server)


# --- beyond the schema: depth, extreme dates, claim types ---------------------------------------
# schemathesis generates what the schema describes; these generate what it does not, and no
# answer may be a 500.

_WITH_BODY = sorted(
    (
        method.upper(),
        re.sub(r"\{[^}]+\}", "0" * 24, path),
        operation.get("x-roles", []),
        "requestBody" in operation,
    )
    for path, item in _DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in ("post", "put", "patch")
)


def _nested(depth: int, shape: str) -> str:
    if shape == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@given(
    operation=st.sampled_from(_WITH_BODY),
    depth=st.integers(1, 5000),
    shape=st.sampled_from(["[", "{"]),
    signed_in=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_nested_bodies_are_never_a_500(
    operation: tuple[str, str, list[str], bool],
    depth: int,
    shape: str,
    signed_in: bool,
    server: Any,
) -> None:
    method, path, roles, reads_body = operation
    headers = {"Content-Type": "application/json"}
    if signed_in and roles:
        headers["Authorization"] = f"Bearer {server.token_for(roles, path)}"
    response = httpx.request(
        method, server.live.url + path, content=_nested(depth, shape), headers=headers
    )
    assert response.status_code < 500, response.text
    if depth > MAX_DEPTH and reads_body and (signed_in or not roles):
        assert response.status_code == 400, response.text


@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    offset_minutes=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
    field=st.sampled_from(["createdFrom", "createdTo"]),
)
@example(moment=datetime(1, 1, 1), offset_minutes=1, field="createdFrom")  # 0001-01-01T00:00+00:01
@example(moment=datetime(9999, 12, 31, 23, 59, 59), offset_minutes=-1, field="createdTo")
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_extreme_dates_are_400_or_answered_never_a_500(
    moment: datetime, offset_minutes: int, field: str, server: Any
) -> None:
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{moment.isoformat()}{sign}{hours:02}:{minutes:02}"
    try:
        moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).astimezone(UTC)
        expected = 200
    except OverflowError:
        expected = 400
    response = httpx.get(
        server.live.url + "/admin/chats",
        params={field: text},
        headers={"Authorization": f"Bearer {server.tokens[Role.ADMIN]}"},
    )
    assert response.status_code == expected, (text, response.text)


_CLAIM_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["1700000000", "9999999999", "access", "customer", "shop-customer-1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)
_CLAIMS = st.dictionaries(
    st.sampled_from(["sub", "id", "exp", "iat", "nbf", "typ", "jti", "gen", "name", "role"]),
    _CLAIM_VALUES,
)


@given(claims=_CLAIMS, staff_secret=st.booleans())
@example(
    claims={"sub": "shop-customer-1", "exp": "9999999999", "iat": 1700000000}, staff_secret=False
)
@example(claims={"sub": "shop-customer-1", "exp": 10**12, "iat": 10**12 - 60}, staff_secret=False)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_signed_tokens_with_claims_of_any_type_are_401_or_accepted(
    claims: dict[str, Any], staff_secret: bool, server: Any
) -> None:
    token = jwt.encode(claims, TEST_SECRET if staff_secret else TEST_CUSTOMER_SECRET)
    response = httpx.get(server.live.url + "/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401), (claims, response.text)
