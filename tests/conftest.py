"""Shared fixtures: a real Switchboard on 127.0.0.1 (Hypercorn, trio worker) and clients."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from api import DEMO_PASSWORD, Services, Settings, open_services, seed_demo_data, serve
from api._seed import Hashing
from store import utcnow

TEST_SECRET = "t" * 40
TEST_CUSTOMER_SECRET = "c" * 40


class Clock:
    """A throttle's clock (a datetime), moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": tmp_path,
        "store": f"sqlite:///{tmp_path / 'test.db'}",
        "jwt_secret": TEST_SECRET,
        "customer_jwt_secret": TEST_CUSTOMER_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Live:
    """A running server: its base URL, an HTTP client, and the services behind it."""

    url: str
    http: httpx.AsyncClient
    services: Services

    async def login(self, email: str, password: str = DEMO_PASSWORD, *, admin: bool = False) -> str:
        path = "/admin/auth/login" if admin else "/auth/login"
        response = await self.http.post(path, json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def customer_token(self, customer_id: str, name: str | None = None) -> str:
        response = await self.http.post(
            "/dev/customer-token", json={"customerId": customer_id, "name": name}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


@asynccontextmanager
async def running_server(settings: Settings, *, seed: bool = True) -> AsyncIterator[Live]:
    """Serve `settings` on a real port until the block ends."""
    async with open_services(settings) as found, trio.open_nursery() as nursery:
        if seed:
            await seed_demo_data(found.store, _RememberedHashes(found.passwords), found.system)
        binds = await nursery.start(lambda task_status: serve(found, task_status=task_status))
        async with httpx.AsyncClient(base_url=binds[0]) as http:
            yield Live(url=binds[0], http=http, services=found)
        nursery.cancel_scope.cancel()


_demo_hashes: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class _RememberedHashes:
    """The demo accounts' password hashes, made once per test process: every server a test
    starts seeds the same two passwords, and each argon2id hash is about 0.13 s of a core (a
    quarter of a quick test). Signing in still verifies against them for real."""

    passwords: Hashing

    async def hash(self, password: str) -> str:
        if password not in _demo_hashes:
            _demo_hashes[password] = await self.passwords.hash(password)
        return _demo_hashes[password]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with running_server(make_settings(tmp_path)) as server:
        yield server


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs a command (`tools.cli.main`) configures logging for the process: put the
    root logger back, so no later test writes into a stream that test captured."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
