"""schemathesis against a live server: every operation of /openapi.json, its default checks.

schemathesis calls the API synchronously (requests), so the server runs on its own Trio loop in a
thread for the module. Each operation is called with a token of a role it allows (its `x-roles`),
so the generated requests get past the guard and exercise the handlers; schemathesis itself
checks the guard by repeating requests without and with a bad token.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import Settings, create_app, open_services
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


schema = schemathesis.openapi.from_dict(_served_openapi())
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
