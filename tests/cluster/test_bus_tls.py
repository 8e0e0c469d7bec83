"""Nodes on a bus over TLS (`rediss://`, Valkey behind a TLS terminator): a node with the CA
named in the URL serves and leads."""

from __future__ import annotations

from pathlib import Path

import trio
import trustme

from bus import Lease, open_bus
from cluster import ARBITER_LEASE
from tests.cluster.conftest import Cluster, MongoServer
from tests.store.mongo_server import fresh_database_url
from tests.tls_terminator import server_context, tls_terminator
from tests.valkey_server import Valkey


async def test_a_node_leads_on_a_bus_over_tls(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "bus-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with open_bus(valkey.url) as plain:
        await plain.client.flushdb()
    async with (
        tls_terminator(server_context(ca, "127.0.0.1"), valkey.port) as tls,
        trio.open_nursery() as nursery,
    ):
        bus_url = f"rediss://127.0.0.1:{tls.port}/0?ssl_ca_certs={ca_file}"
        cluster = Cluster(tmp_path, fresh_database_url(mongo.url), bus_url)
        try:
            await cluster.start_nodes(nursery, "tls-1")
            # Read without TLS: the node's lease reached the Valkey behind the terminator.
            async with open_bus(valkey.url) as plain:
                assert await Lease(plain, ARBITER_LEASE, "reader", 1).current_holder() == "tls-1"
            answer = await cluster.nodes["tls-1"].http.get("/readyz")
            assert answer.status_code == 200, answer.text
        finally:
            with trio.CancelScope(shield=True):
                await cluster.close()
        nursery.cancel_scope.cancel()
