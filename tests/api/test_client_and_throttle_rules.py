"""The pure parts of the sign-in throttle (its delays) and of the client address."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api._client import client_address, networks
from api._signin_throttle import Rule
from store import utcnow

RULE = Rule(free=3, delay=1.0, max_delay=900.0)


def test_failures_are_free_then_each_doubles_the_wait_up_to_the_ceiling() -> None:
    assert [RULE.step(n) for n in range(3)] == [0.0, 0.0, 0.0]
    assert [RULE.step(n) for n in range(3, 14)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 900.0
    ]  # fmt: skip
    assert RULE.step(10_000) == 900.0


def test_the_wait_counts_from_the_latest_failure() -> None:
    now = utcnow()
    assert RULE.wait(5, now - timedelta(seconds=1), now) == 3.0
    assert RULE.wait(5, now - timedelta(seconds=10), now) == 0.0
    assert RULE.wait(0, None, now) == 0.0


def test_as_many_checks_at_once_as_free_failures_are_left() -> None:
    assert [RULE.at_once(n) for n in range(6)] == [3, 2, 1, 1, 1, 1]


PROXIES = networks(("10.0.0.7", "10.1.0.0/16"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.1", ["198.51.100.9"], "192.0.2.1"),  # not a proxy: its header is ignored
        ("10.0.0.7", ["198.51.100.9"], "198.51.100.9"),
        ("10.0.0.7", ["203.0.113.5, 198.51.100.9"], "198.51.100.9"),  # the client's own: no
        ("10.0.0.7", ["198.51.100.9, 10.1.2.3"], "198.51.100.9"),  # past a chain of proxies
        ("10.0.0.7", ["203.0.113.5", "198.51.100.9"], "198.51.100.9"),  # repeated headers
        ("10.0.0.7", ["not-an-address"], "10.0.0.7"),
        ("10.0.0.7", [], "10.0.0.7"),
        ("10.0.0.7", ["2001:db8::1"], "2001:db8::1"),
        (None, ["198.51.100.9"], "unknown"),
    ],
)
def test_the_client_is_the_first_address_no_trusted_proxy_wrote(
    peer: str | None, forwarded: list[str], client: str
) -> None:
    assert client_address(peer, forwarded, PROXIES) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("10.0.0.7", ["198.51.100.9"], ()) == "10.0.0.7"
