"""Password hashing cannot be turned into a CPU and memory weapon: a registration flood against
a real server (a subprocess, so its RSS is its own) keeps its memory bounded and its health
check answering; callers past the queue's deadline get 503 `busy`; each address registers a
bounded number of accounts (429 with Retry-After)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.api.support import assert_error
from tests.conftest import Live, make_settings, running_server
from tools.bench_register import flood

MIB = 1024
# Two argon2id hashes at once (this machine's cores) cost 2 x 64 MiB; 40 at once cost 2.4 GiB.
RSS_GROWTH_BOUND_KIB = 320 * MIB
HEALTH_BOUND_MS = 2500


def registration(index: int) -> dict[str, Any]:
    return {
        "name": f"Reg {index}",
        "email": f"reg-{index}@example.com",
        "password": "correct horse battery staple",
        "confirmedPassword": "correct horse battery staple",
    }


@pytest.fixture
async def one_hasher(tmp_path: Path) -> AsyncIterator[Live]:
    settings = make_settings(
        tmp_path,
        password_hash_concurrency=1,
        password_queue_seconds=0.05,
        register_per_address=1000,
    )
    async with running_server(settings, seed=False) as live:
        yield live


@pytest.fixture
async def two_per_address(tmp_path: Path) -> AsyncIterator[Live]:
    async with running_server(make_settings(tmp_path, register_per_address=2)) as live:
        yield live


async def test_a_registration_flood_keeps_memory_bounded_and_health_answering() -> None:
    with trio.fail_after(120):
        result = await flood(requests=40, addresses=4)
    growth = result.rss_peak_kib - result.rss_before_kib
    assert growth < RSS_GROWTH_BOUND_KIB, f"RSS grew by {growth / MIB:.0f} MiB"
    assert result.statuses[201] >= 1
    assert set(result.statuses) <= {201, 503}, result.statuses
    if result.statuses[503]:
        assert result.retry_after == {"1"}
    assert result.health_ms, "no health check finished during the flood"
    assert set(result.health_statuses) == {200}
    assert max(result.health_ms) < HEALTH_BOUND_MS, max(result.health_ms)


async def test_callers_waiting_past_the_deadline_get_503_busy(one_hasher: Live) -> None:
    answers: list[httpx.Response] = []

    async def register(index: int) -> None:
        answers.append(await one_hasher.http.post("/auth/register", json=registration(index)))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for index in range(12):
                nursery.start_soon(register, index)
    statuses = sorted(answer.status_code for answer in answers)
    assert 201 in statuses
    busy = [answer for answer in answers if answer.status_code == 503]
    assert busy, statuses
    for answer in busy:
        assert_error(answer, 503, "busy")
        assert answer.headers["Retry-After"] == "1"
    assert set(statuses) == {201, 503}


async def test_registrations_are_throttled_per_address(two_per_address: Live) -> None:
    live = two_per_address
    for index in range(2):
        assert (await live.http.post("/auth/register", json=registration(index))).status_code == 201
    refused = await live.http.post("/auth/register", json=registration(2))
    assert_error(refused, 429, "too_many_registrations")
    # A burst of 2 refilled over an hour: the next one in 1,800 s.
    assert 1700 <= int(refused.headers["Retry-After"]) <= 1800
    assert await live.services.store.get_user_by_email("reg-2@example.com") is None
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=live.url, transport=elsewhere) as other:
        assert (await other.post("/auth/register", json=registration(3))).status_code == 201
