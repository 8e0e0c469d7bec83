"""The bus over TLS (`rediss://`) against a real Valkey behind a TLS terminator: what works with
the CA the URL names, and the one-line refusals of a certificate the node must not trust."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trustme

from bus import BusError, Lease, Published, key, open_bus
from tests.store.mongo_server import free_port
from tests.tls_terminator import Terminator, server_context, tls_terminator
from tests.valkey_server import Valkey

QUICKLY = 10.0
UNKNOWN_CA = "unable to get local issuer certificate"


def ca_file(ca: trustme.CA, folder: Path) -> Path:
    path = folder / f"ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


async def refused_handshake(terminator: Terminator) -> None:
    """The terminator saw the client give up in TLS: the refusal was the certificate's, not a
    closed port's."""
    with trio.fail_after(QUICKLY):
        await terminator.handshakes_failed.receive()


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


@pytest.mark.parametrize("named_ca", [False, True], ids=["system CAs", "another CA named"])
async def test_a_certificate_from_a_ca_not_trusted_is_refused_in_one_line(
    valkey: Valkey, tmp_path: Path, named_ca: bool
) -> None:
    query = f"?ssl_ca_certs={ca_file(trustme.CA(), tmp_path)}" if named_ca else ""
    async with tls_terminator(server_context(trustme.CA(), "127.0.0.1"), valkey.port) as tls:
        with trio.fail_after(QUICKLY), pytest.raises(BusError) as refused:
            async with open_bus(f"rediss://127.0.0.1:{tls.port}/0{query}"):
                pass
        await refused_handshake(tls)
    assert str(refused.value) == (
        f"the bus at rediss://127.0.0.1:{tls.port}/0 presented a TLS certificate this node does "
        f"not trust ({UNKNOWN_CA}); name the CA that signed it in the URL: "
        "?ssl_ca_certs=/path/to/ca.pem"
    )


async def test_a_trusted_certificate_for_another_host_is_refused_unless_the_url_allows_it(
    valkey: Valkey, tmp_path: Path
) -> None:
    ca = trustme.CA()
    async with tls_terminator(server_context(ca, "valkey.example"), valkey.port) as tls:
        url = f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={ca_file(ca, tmp_path)}"
        with trio.fail_after(QUICKLY), pytest.raises(BusError) as refused:
            async with open_bus(url):
                pass
        await refused_handshake(tls)
        assert str(refused.value) == (
            f"the bus at rediss://127.0.0.1:{tls.port}/0 presented a TLS certificate this node "
            "does not trust (IP address mismatch, certificate is not valid for '127.0.0.1'); "
            "the URL must name the host as its certificate does"
        )
        # coredis's own option, for a server reached by an address its certificate omits.
        async with open_bus(url + "&ssl_check_hostname=false") as bus:
            assert await bus.publish(key("test", "tls"), b"x") == 0


async def test_a_ca_file_that_is_not_there_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    port = free_port()
    with pytest.raises(BusError) as refused:
        async with open_bus(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={missing}"):
            pass
    assert str(refused.value) == (
        f"cannot use the TLS files of the bus URL rediss://127.0.0.1:{port}/0 "
        f"(ssl_ca_certs={missing}): No such file or directory"
    )
