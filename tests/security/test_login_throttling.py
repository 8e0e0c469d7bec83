"""Sign-in throttling, per account and per client address, against a live server: counters that
survive a restart, that another address, a second login door, a forwarded-for header, a change
of case or a burst of parallel guesses do not get around, and the same answers for an unknown
email and a wrong password, throttled or not.

Client addresses are real: the test clients bind to other loopback addresses (127.0.0.2, ...)
and talk to the server on 127.0.0.1. (tests/api/test_auth.py has the basic throttle test.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from api import Settings
from tests.conftest import Live, make_settings, running_server

LIMIT = 3
ANN = "ann@switchboard.example"
UMA = "uma@switchboard.example"
ADMIN = "admin@switchboard.example"
RIGHT = "switchboard-demo"
WRONG = "not-the-password"


def settings_for(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, login_max_failures=LIMIT, login_window_seconds=3600)


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Live]:
    async with running_server(settings_for(tmp_path)) as live:
        yield live


@asynccontextmanager
async def client_at(live: Live, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from `address` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=live.url, transport=transport) as client:
        yield client


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str, *, door: str = "/auth/login", **how: Any
) -> httpx.Response:
    with trio.fail_after(30):
        return await client.post(door, json={"email": email, "password": password}, **how)


def throttled(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    assert response.json()["error"]["code"] == "too_many_attempts"
    return True


async def test_an_account_is_throttled_from_every_address(guarded: Live) -> None:
    async with client_at(guarded, "127.0.0.2") as guesser, client_at(guarded, "127.0.0.3") as uma:
        # A change of case is the same account.
        for email in (UMA, UMA.upper(), "Uma@Switchboard.Example")[:LIMIT]:
            assert (await sign_in(guesser, email, WRONG)).status_code == 401
        assert throttled(await sign_in(uma, UMA, RIGHT))
        # The other address is not throttled itself: another account signs in from it.
        assert (await sign_in(uma, ANN, RIGHT)).status_code == 200


async def test_an_address_is_throttled_for_every_account(guarded: Live) -> None:
    async with client_at(guarded, "127.0.0.4") as guesser, client_at(guarded, "127.0.0.5") as ann:
        for n in range(LIMIT):  # one guess per account: no account reaches its limit
            response = await sign_in(guesser, f"nobody{n}@example.com", WRONG)
            assert response.status_code == 401
        assert throttled(await sign_in(guesser, ANN, RIGHT))
        # Saying it came from elsewhere changes nothing: the address is the connection's.
        assert throttled(
            await sign_in(guesser, ANN, RIGHT, headers={"X-Forwarded-For": "10.9.8.7"})
        )
        assert (await sign_in(ann, ANN, RIGHT)).status_code == 200


async def test_both_login_doors_count_towards_the_same_limits(guarded: Live) -> None:
    async with client_at(guarded, "127.0.0.6") as guesser:
        for n in range(LIMIT):
            door = "/admin/auth/login" if n % 2 else "/auth/login"
            assert (await sign_in(guesser, ADMIN, WRONG, door=door)).status_code == 401
        assert throttled(await sign_in(guesser, ADMIN, RIGHT, door="/admin/auth/login"))


async def test_signing_in_to_an_own_account_does_not_clear_the_addresss_failures(
    guarded: Live,
) -> None:
    async with client_at(guarded, "127.0.0.7") as guesser:
        for n in range(LIMIT - 1):
            assert (await sign_in(guesser, f"victim{n}@example.com", WRONG)).status_code == 401
        assert (await sign_in(guesser, ANN, RIGHT)).status_code == 200
        assert (await sign_in(guesser, "victim9@example.com", WRONG)).status_code == 401
        assert throttled(await sign_in(guesser, "victim10@example.com", WRONG))


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(guarded: Live) -> None:
    """Guesses sent all at once must not all pass the check before any failure is counted."""
    statuses: list[int] = []
    async with client_at(guarded, "127.0.0.8") as guesser:

        async def guess(n: int) -> None:
            statuses.append((await sign_in(guesser, UMA, f"{WRONG}-{n}")).status_code)

        async with trio.open_nursery() as nursery:
            for n in range(LIMIT * 5):
                nursery.start_soon(guess, n)
    assert sorted(set(statuses)) == [401, 429]
    assert statuses.count(401) <= LIMIT, statuses


async def test_parallel_sign_ins_that_succeed_are_never_refused(guarded: Live) -> None:
    """Many people behind one address signing in at once wait their turn; none is refused."""
    statuses: list[int] = []
    async with client_at(guarded, "127.0.0.13") as office:

        async def sign_in_one(email: str) -> None:
            statuses.append((await sign_in(office, email, RIGHT)).status_code)

        async with trio.open_nursery() as nursery:
            for email in [ANN, UMA, "bob@switchboard.example", "cy@switchboard.example"] * LIMIT:
                nursery.start_soon(sign_in_one, email)
    assert statuses == [200] * 4 * LIMIT


async def test_failure_counts_survive_a_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with running_server(settings) as live, client_at(live, "127.0.0.9") as guesser:
        for n in range(LIMIT):
            assert (await sign_in(guesser, UMA, f"{WRONG}-{n}")).status_code == 401
        assert throttled(await sign_in(guesser, UMA, RIGHT))
    async with running_server(settings) as live:
        async with client_at(live, "127.0.0.10") as elsewhere:
            assert throttled(await sign_in(elsewhere, UMA, RIGHT))  # the account's count
            assert (await sign_in(elsewhere, ANN, RIGHT)).status_code == 200
        async with client_at(live, "127.0.0.9") as guesser:
            assert throttled(await sign_in(guesser, ANN, RIGHT))  # the address's count


async def test_unknown_email_and_wrong_password_answer_alike_and_cost_alike(
    guarded: Live,
) -> None:
    passwords = guarded.services.passwords
    checked: list[str | None] = []
    verify = passwords.verify

    async def counting(password_hash: str | None, password: str) -> bool:
        checked.append(password_hash)
        return await verify(password_hash, password)

    passwords.verify = counting  # type: ignore[method-assign]
    try:
        async with client_at(guarded, "127.0.0.11") as one, client_at(guarded, "127.0.0.12") as two:
            unknown = await sign_in(one, "nobody@example.com", WRONG)
            wrong = await sign_in(two, UMA, WRONG)
            assert unknown.status_code == wrong.status_code == 401
            assert unknown.content == wrong.content
            assert _headers(unknown) == _headers(wrong)
            # Each ran one password check (the unknown email against a decoy hash).
            assert len(checked) == 2
            for _ in range(LIMIT - 1):
                await sign_in(one, "nobody@example.com", WRONG)
                await sign_in(two, UMA, WRONG)
            # Throttled alike: the refusal does not tell which accounts exist.
            unknown, known = (
                await sign_in(one, "nobody@example.com", WRONG),
                await sign_in(two, UMA, WRONG),
            )
            assert throttled(unknown)
            assert throttled(known)
            assert unknown.content == known.content
            assert _headers(unknown) == _headers(known)
    finally:
        del passwords.verify


def _headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "date"}
