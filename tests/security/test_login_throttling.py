"""Sign-in throttling against a live server: delays that grow per (account, client), per client
and per account, never a lock that an attacker can turn against the owner; counts that survive a
restart, that a second login door, a forged forwarded-for header, a change of case or a burst of
parallel guesses do not get around; the client behind a trusted proxy; the same answers for an
unknown email and a wrong password, throttled or not.

Client addresses are real: the test clients bind to other loopback addresses (127.0.0.2, ...)
and talk to the server on 127.0.0.1. The throttle's clock is the test's, so that a delay passes
without waiting for it. (tests/api/test_auth.py has the basic throttle test.)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from api import Settings
from tests.conftest import Clock, Live, make_settings, running_server

FREE = 3  # per account and client
CLIENT_FREE = 6  # per client, every account
ACCOUNT_FREE = 5  # per account, every client
ANN = "ann@switchboard.example"
UMA = "uma@switchboard.example"
ADMIN = "admin@switchboard.example"
RIGHT = "switchboard-demo"
WRONG = "not-the-password"


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        login_free_failures=FREE,
        login_client_free_failures=CLIENT_FREE,
        login_account_free_failures=ACCOUNT_FREE,
        login_delay_seconds=1,
        login_max_delay_seconds=60,
        login_window_seconds=3600,
        # Under load, argon2 checks queue for the hashers: long waits here are not refusals.
        password_queue_seconds=60,
        **overrides,
    )


@asynccontextmanager
async def guarded_server(
    settings: Settings, clock: Clock | None = None
) -> AsyncIterator[tuple[Live, Clock]]:
    async with running_server(settings) as live:
        clock = clock or Clock()
        live.services.signins.clock = clock
        yield live, clock


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Live]:
    async with guarded_server(settings_for(tmp_path)) as (live, _):
        yield live


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Live, Clock]]:
    async with guarded_server(settings_for(tmp_path)) as found:
        yield found


@asynccontextmanager
async def client_at(live: Live, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from `address` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    # No timeout of httpx's own (5 s): each sign-in is bounded by `sign_in`, as long as a loaded
    # machine may need for the argon2 checks queued before it.
    async with httpx.AsyncClient(base_url=live.url, transport=transport, timeout=None) as client:
        yield client


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str, *, door: str = "/auth/login", **how: Any
) -> httpx.Response:
    with trio.fail_after(60):
        return await client.post(door, json={"email": email, "password": password}, **how)


def throttled(response: httpx.Response) -> int | None:
    """The Retry-After of a 429 (always there), else None."""
    if response.status_code != 429:
        return None
    assert response.json()["error"]["code"] == "too_many_attempts"
    return int(response.headers["Retry-After"])


async def test_an_attacker_cannot_lock_the_admin_out(guarded: Live) -> None:
    statuses: list[int] = []
    async with client_at(guarded, "127.0.0.2") as attacker:
        for n in range(100):
            response = await sign_in(attacker, ADMIN, f"{WRONG}-{n}", door="/admin/auth/login")
            if response.status_code == 429:
                assert throttled(response) is not None
            statuses.append(response.status_code)
    # The attacker's clock never moved: only the free failures were checked at all.
    assert statuses == [401] * FREE + [429] * (100 - FREE)
    async with client_at(guarded, "127.0.0.3") as admin:
        assert (await sign_in(admin, ADMIN, RIGHT, door="/admin/auth/login")).status_code == 200


async def test_delays_double_with_each_failure_up_to_the_ceiling(
    clocked: tuple[Live, Clock],
) -> None:
    live, clock = clocked
    async with client_at(live, "127.0.0.4") as guesser:
        for _ in range(FREE):
            assert (await sign_in(guesser, UMA, WRONG)).status_code == 401
        waits = []
        for _ in range(8):
            wait = throttled(await sign_in(guesser, UMA, WRONG))
            assert wait is not None
            waits.append(wait)
            clock.advance(wait - 0.5)
            assert throttled(await sign_in(guesser, UMA, RIGHT)) == 1  # not yet, even right
            clock.advance(0.5)
            assert (await sign_in(guesser, UMA, WRONG)).status_code == 401
        assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
        # After the wait, the right password signs in.
        clock.advance(60)
        assert (await sign_in(guesser, UMA, RIGHT)).status_code == 200


async def test_an_address_is_slowed_for_every_account(guarded: Live) -> None:
    async with client_at(guarded, "127.0.0.5") as guesser, client_at(guarded, "127.0.0.6") as ann:
        for n in range(CLIENT_FREE):  # one guess per account: no account reaches its limit
            response = await sign_in(guesser, f"nobody{n}@example.com", WRONG)
            assert response.status_code == 401
        assert throttled(await sign_in(guesser, ANN, RIGHT)) == 1
        # Saying it came from elsewhere changes nothing: the server trusts no proxy.
        assert throttled(
            await sign_in(guesser, ANN, RIGHT, headers={"X-Forwarded-For": "10.9.8.7"})
        )
        assert (await sign_in(ann, ANN, RIGHT)).status_code == 200


async def test_an_accounts_ceiling_slows_failing_clients_never_a_clean_one(guarded: Live) -> None:
    """Guesses from many addresses, one each: none reaches its own limit, the account's count
    does; those addresses wait, the owner from an address that has not failed does not."""
    for n in range(ACCOUNT_FREE):
        async with client_at(guarded, f"127.0.1.{n + 1}") as guesser:
            assert (await sign_in(guesser, UMA, WRONG)).status_code == 401
    async with client_at(guarded, "127.0.1.1") as guesser:
        assert throttled(await sign_in(guesser, UMA, RIGHT)) == 1
        assert (await sign_in(guesser, ANN, RIGHT)).status_code == 200  # other accounts: free
    async with client_at(guarded, "127.0.1.99") as owner:
        assert (await sign_in(owner, UMA, RIGHT)).status_code == 200


async def test_guesses_through_a_trusted_proxy_are_counted_per_forwarded_client(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, trusted_proxies=["127.0.0.20"])
    async with guarded_server(settings) as (live, _):
        async with client_at(live, "127.0.0.20") as proxy:

            async def through(client: str, email: str, password: str) -> httpx.Response:
                # What the client wrote, then what the proxy appended: the proxy's is believed.
                forwarded = f"203.0.113.66, {client}"
                return await sign_in(proxy, email, password, headers={"X-Forwarded-For": forwarded})

            for _ in range(FREE):
                assert (await through("198.51.100.1", UMA, WRONG)).status_code == 401
            assert throttled(await through("198.51.100.1", UMA, RIGHT)) == 1
            # Another client behind the same proxy is not the guesser.
            assert (await through("198.51.100.2", UMA, RIGHT)).status_code == 200
            for n in range(CLIENT_FREE):
                await through("198.51.100.3", f"nobody{n}@example.com", WRONG)
            assert throttled(await through("198.51.100.3", ANN, RIGHT))
            assert (await through("198.51.100.4", ANN, RIGHT)).status_code == 200
        # An address that is no trusted proxy cannot pass for the forwarded client.
        async with client_at(live, "127.0.0.21") as direct:
            forged = {"X-Forwarded-For": "198.51.100.9"}
            for _ in range(FREE):
                assert (await sign_in(direct, ANN, WRONG, headers=forged)).status_code == 401
            assert throttled(await sign_in(direct, ANN, RIGHT, headers=forged))
        async with client_at(live, "127.0.0.20") as proxy:
            sent = {"X-Forwarded-For": "198.51.100.9"}
            assert (await sign_in(proxy, ANN, RIGHT, headers=sent)).status_code == 200


async def test_both_login_doors_count_towards_the_same_limits(guarded: Live) -> None:
    async with client_at(guarded, "127.0.0.7") as guesser:
        for n in range(FREE):
            door = "/admin/auth/login" if n % 2 else "/auth/login"
            email = ADMIN if n % 2 else ADMIN.upper()  # a change of case is the same account
            assert (await sign_in(guesser, email, WRONG, door=door)).status_code == 401
        assert throttled(await sign_in(guesser, ADMIN, RIGHT, door="/admin/auth/login"))


async def test_signing_in_to_an_own_account_does_not_clear_the_addresss_failures(
    guarded: Live,
) -> None:
    async with client_at(guarded, "127.0.0.8") as guesser:
        for n in range(CLIENT_FREE - 1):
            assert (await sign_in(guesser, f"victim{n}@example.com", WRONG)).status_code == 401
        assert (await sign_in(guesser, ANN, RIGHT)).status_code == 200
        assert (await sign_in(guesser, "victim9@example.com", WRONG)).status_code == 401
        assert throttled(await sign_in(guesser, "victim10@example.com", WRONG))


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_free_checks(
    guarded: Live,
) -> None:
    """Guesses sent all at once must not all pass the check before any failure is counted."""
    statuses: list[int] = []
    async with client_at(guarded, "127.0.0.9") as guesser:

        async def guess(n: int) -> None:
            statuses.append((await sign_in(guesser, UMA, f"{WRONG}-{n}")).status_code)

        async with trio.open_nursery() as nursery:
            for n in range(FREE * 5):
                nursery.start_soon(guess, n)
    assert sorted(statuses) == [401] * FREE + [429] * (FREE * 4)


async def test_parallel_sign_ins_that_succeed_are_never_refused(guarded: Live) -> None:
    """Many people behind one address signing in at once: none is refused, and as many are
    checked at once as the address has free failures."""
    statuses: list[int] = []
    people = [ANN, UMA, "bob@switchboard.example", "cy@switchboard.example"]
    async with client_at(guarded, "127.0.0.13") as office:

        async def sign_in_one(email: str) -> None:
            statuses.append((await sign_in(office, email, RIGHT)).status_code)

        async with trio.open_nursery() as nursery:
            for email in people * 3:
                nursery.start_soon(sign_in_one, email)
    assert statuses == [200] * len(people) * 3


async def test_failure_counts_survive_a_restart(tmp_path: Path) -> None:
    settings, clock = settings_for(tmp_path), Clock()
    async with (
        guarded_server(settings, clock) as (live, _),
        client_at(live, "127.0.0.10") as guesser,
    ):
        for n in range(FREE):
            assert (await sign_in(guesser, UMA, f"{WRONG}-{n}")).status_code == 401
        assert throttled(await sign_in(guesser, UMA, RIGHT))
    async with guarded_server(settings, clock) as (live, _):
        async with client_at(live, "127.0.0.10") as guesser:
            assert throttled(await sign_in(guesser, UMA, RIGHT))
        async with client_at(live, "127.0.0.11") as elsewhere:
            assert (await sign_in(elsewhere, UMA, RIGHT)).status_code == 200


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
            for _ in range(FREE - 1):
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
            assert len(checked) == 2 * FREE
    finally:
        del passwords.verify


def _headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "date"}


async def test_an_admin_unlocks_an_account_while_the_server_runs(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with guarded_server(settings) as (live, _), client_at(live, "127.0.0.14") as owner:
        for n in range(FREE + 3):
            await sign_in(owner, UMA, f"{WRONG}-{n}")
        assert throttled(await sign_in(owner, UMA, RIGHT))

        async def unlock(email: str) -> subprocess.CompletedProcess[bytes]:
            command = [sys.executable, "-m", "tools.cli", "unlock", email]
            with trio.fail_after(60):
                return await trio.run_process(
                    [*command, "--store", settings.store_url],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )

        done = await unlock(UMA.upper())
        assert done.returncode == 0, done.stderr
        assert b"unlocked" in done.stdout
        assert (await sign_in(owner, UMA, RIGHT)).status_code == 200
        unknown = await unlock("nobody@example.com")
        assert unknown.returncode == 2
        assert unknown.stderr.decode().count("\n") == 1
        assert "no account" in unknown.stderr.decode()
