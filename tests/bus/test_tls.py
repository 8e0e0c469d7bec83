"""The bus over TLS (`rediss://`) against a real Valkey behind a TLS terminator: what works with
the CA the URL names."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trustme

from bus import Lease, Published, key, open_bus
from tests.tls_terminator import server_context, tls_terminator
from tests.valkey_server import Valkey

QUICKLY = 10.0


def ca_file(ca: trustme.CA, folder: Path) -> Path:
    path = folder / f"ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize("scheme", ["rediss", "valkeys"])
async def test_with_the_ca_named_the_bus_works_over_tls(
    valkey: Valkey, tmp_path: Path, scheme: str
) -> None:
    ca = trustme.CA()
    channel, lease = key("test", "tls"), key("test", "tls-lease")
    async with tls_terminator(server_context(ca, "127.0.0.1"), valkey.port) as tls:
        url = f"{scheme}://127.0.0.1:{tls.port}/0?ssl_ca_certs={ca_file(ca, tmp_path)}"
        async with open_bus(url) as bus, bus.subscribe(channel) as deliveries:
            assert await bus.publish(channel, b"over tls") == 1
            with trio.fail_after(QUICKLY):
                assert await deliveries.receive() == Published(channel, b"over tls")
            assert await Lease(bus, lease, "node-tls", ttl_seconds=30).acquire()
    # The same Valkey, read without TLS: the lease went through the terminator to it.
    async with open_bus(valkey.url) as plain:
        assert await Lease(plain, lease, "reader", 1).current_holder() == "node-tls"
        await plain.client.delete([lease])
