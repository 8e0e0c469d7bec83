"""Nodes on a bus over TLS (`rediss://`, Valkey behind a TLS terminator): a node with the CA
named in the URL serves and leads; one given a certificate it does not trust stops at start in
one line, exit status 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio
import trustme

from bus import Lease, open_bus
from cluster import ARBITER_LEASE
from tests.cluster.conftest import Cluster, MongoServer
from tests.store.mongo_server import fresh_database_url
from tests.tls_terminator import server_context, tls_terminator
from tests.valkey_server import Valkey
from tools.chaos import free_port

ROOT = Path(__file__).resolve().parents[2]
START_LIMIT_SECONDS = 60


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


async def test_serve_refuses_a_bus_certificate_it_does_not_trust_in_one_line(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    async with tls_terminator(server_context(trustme.CA(), "127.0.0.1"), valkey.port) as tls:
        bus_url = f"rediss://127.0.0.1:{tls.port}/0"
        env = os.environ | {
            "SWITCHBOARD_BUS_URL": bus_url,
            "SWITCHBOARD_STORE": fresh_database_url(mongo.url),
            "SWITCHBOARD_DATA_DIR": str(tmp_path),
        }
        with trio.fail_after(START_LIMIT_SECONDS):
            done = await trio.run_process(
                [sys.executable, "-m", "tools.cli", "serve", "--port", str(free_port())],
                cwd=ROOT,
                env=env,
                check=False,
                capture_stdout=True,
                capture_stderr=True,
            )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert err.splitlines() == [
        f"switchboard: error: the bus at {bus_url} presented a TLS certificate this node does "
        "not trust (unable to get local issuer certificate); name the CA that signed it in the "
        "URL: ?ssl_ca_certs=/path/to/ca.pem"
    ]
