"""The bus against a real Valkey: publish and subscribe (and a subscription surviving a Valkey
restart), leases, membership and presence with their TTLs, and the one-line errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from bus import (
    Bus,
    BusError,
    BusUnavailable,
    Lease,
    Membership,
    Published,
    Resubscribed,
    key,
    open_bus,
)
from tests.store.mongo_server import free_port
from tests.valkey_server import Valkey

QUICKLY = 10.0
SHORT_TTL = 0.3


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` until it holds: TTLs run out on Valkey's clock, which sends no event."""
    with trio.fail_after(QUICKLY):
        while not await check():  # noqa: ASYNC110 (nothing to wait on but the server's clock)
            await trio.sleep(0.02)


# publish and subscribe


async def test_a_subscriber_gets_what_is_published_in_order(bus: Bus) -> None:
    channel = key("test", "orders")
    assert await bus.publish(channel, b"nobody listens") == 0
    async with bus.subscribe(channel) as deliveries:
        assert await bus.publish(channel, b"one") == 1
        await bus.publish(channel, b"two")
        with trio.fail_after(QUICKLY):
            got = [await deliveries.receive(), await deliveries.receive()]
    assert got == [Published(channel, b"one"), Published(channel, b"two")]


async def test_publications_sent_together_arrive_in_order(bus: Bus) -> None:
    first, second = key("test", "first"), key("test", "second")
    sent = [(first if n % 2 else second, str(n).encode()) for n in range(200)]
    async with bus.subscribe(first, second) as deliveries:
        await bus.publish_all(sent)
        with trio.fail_after(QUICKLY):
            got = [await deliveries.receive() for _ in sent]
    assert got == [Published(channel, data) for channel, data in sent]


async def test_a_subscription_outlives_a_valkey_restart_and_says_what_was_lost(
    own_valkey: Valkey,
) -> None:
    channel = key("test", "restart")
    async with (
        open_bus(own_valkey.url, call_seconds=1.0) as bus,
        bus.subscribe(channel) as deliveries,
    ):
        await trio.to_thread.run_sync(own_valkey.restart)
        with trio.fail_after(QUICKLY):
            assert await deliveries.receive() == Resubscribed()

        async def delivered_again() -> bool:
            return await bus.publish(channel, b"after") == 1

        await eventually(delivered_again)
        with trio.fail_after(QUICKLY):
            assert await deliveries.receive() == Published(channel, b"after")


# errors


async def test_an_unreachable_bus_is_one_line_naming_it_without_the_password() -> None:
    url = f"redis://switchboard:s3cret@127.0.0.1:{free_port()}/0"
    with trio.fail_after(QUICKLY), pytest.raises(BusUnavailable) as refused:
        async with open_bus(url, call_seconds=0.5):
            pass
    message = str(refused.value)
    assert message.startswith("cannot reach the bus at redis://switchboard@127.0.0.1:")
    assert "s3cret" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url", ["http://localhost:6379", "redis://", "localhost:6379", "mongodb://localhost/x"]
)
async def test_a_bus_url_of_another_kind_is_refused_with_the_forms_accepted(url: str) -> None:
    with pytest.raises(BusError, match="use 'redis://host:6379/0', 'valkey://"):
        async with open_bus(url):
            pass


async def test_valkey_urls_are_accepted(valkey: Valkey) -> None:
    async with open_bus(valkey.url.replace("redis://", "valkey://")) as bus:
        assert await bus.publish(key("test", "scheme"), b"x") == 0


# leases


async def test_one_holder_at_a_time_until_it_releases(bus: Bus) -> None:
    first = Lease(bus, key("test", "lease"), "node-a", ttl_seconds=30)
    second = Lease(bus, key("test", "lease"), "node-b", ttl_seconds=30)
    assert await first.acquire()
    assert await first.acquire()  # again: still its own (a retried call cannot lose it)
    assert not await second.acquire()
    assert not await second.renew()
    assert not await second.release()  # a late release cannot free another's lease
    assert await first.current_holder() == "node-a"
    assert await first.renew()
    assert await first.release()
    assert await second.acquire()
    assert await first.current_holder() == "node-b"


async def test_a_lease_not_renewed_expires_and_another_takes_it(bus: Bus) -> None:
    first = Lease(bus, key("test", "expiring"), "node-a", ttl_seconds=SHORT_TTL)
    second = Lease(bus, key("test", "expiring"), "node-b", ttl_seconds=SHORT_TTL)
    assert await first.acquire()
    assert not await second.acquire()
    await eventually(second.acquire)
    assert not await first.renew()  # the former holder learns it lost the lease


# membership and presence


async def test_members_are_the_nodes_beating_and_a_silent_one_drops_out(bus: Bus) -> None:
    staying = Membership(bus, "node-a", ttl_seconds=30)
    silent = Membership(bus, "node-b", ttl_seconds=SHORT_TTL)
    await staying.beat(b'{"node": "a"}')
    await silent.beat(b'{"node": "b"}')
    assert await staying.members() == {"node-a": b'{"node": "a"}', "node-b": b'{"node": "b"}'}

    async def dropped_out() -> bool:
        return set(await staying.members()) == {"node-a"}

    await eventually(dropped_out)
    await staying.leave()
    assert await staying.members() == {}


async def test_presence_is_per_node_and_dies_with_its_node(bus: Bus) -> None:
    here = Membership(bus, "node-a", ttl_seconds=30)
    there = Membership(bus, "node-b", ttl_seconds=SHORT_TTL)
    await here.beat(b"a")
    await there.beat(b"b")
    await here.set_presence("ann", 2)
    await there.set_presence("ann", 1)
    await there.set_presence("cy", 1)
    await here.set_presence("bob", 1)
    await here.set_presence("bob", 0)
    assert await here.presence(["node-a", "node-b"]) == {
        "node-a": {"ann": 2},
        "node-b": {"ann": 1, "cy": 1},
    }

    async def gone_with_its_node() -> bool:
        return (await here.presence(["node-b"]))["node-b"] == {}

    await eventually(gone_with_its_node)
    # After the bus lost everything, a beat with the node's presence puts it back whole.
    await here.beat(b"a", presence={"ann": 2, "dan": 1, "eve": 0})
    assert await here.presence(["node-a"]) == {"node-a": {"ann": 2, "dan": 1}}
