"""`switchboard loadsim` against a cluster: the simulated people spread over the nodes (`--also`),
the servers' CPU read from each node's process (`--server-pid`), and every invariant holding
with customers and agents on different nodes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import trio

from api import DEMO_PASSWORD
from tests.cluster.conftest import MongoServer, running_cluster
from tests.tools.test_loadsim import SMALL
from tests.valkey_server import Valkey
from tools._remote import DEMO_ADMIN_EMAIL, Credentials
from tools._sim_scenario import PRESETS
from tools.loadsim import Target, simulate

SERVER_PID = re.compile(r"server\.started .* pid=(\d+)")


async def test_loadsim_spreads_over_the_nodes_and_every_invariant_holds(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(150):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b = await cluster.start_nodes(nursery, "node-a", "node-b")
            pids = []
            for name in ("node-a", "node-b"):
                found = SERVER_PID.search(cluster.log(name))
                assert found is not None
                pids.append(int(found.group(1)))
            small: dict[str, Any] = SMALL | {"customers": 6, "agents": 3, "max_messages": 60}
            scenario = dataclasses.replace(PRESETS["steady"], **small)
            target = Target(
                url=a.server.url,
                spawn=False,
                credentials=Credentials(token=None, email=DEMO_ADMIN_EMAIL, password=DEMO_PASSWORD),
                also=(b.server.url,),
                server_pids=tuple(pids),
            )
            report, _ = await simulate(scenario, target)
            connects = {name: cluster.log(name).count("ws.connect ") for name in cluster.nodes}

    assert [outcome for outcome in report.invariants if not outcome.ok] == []
    assert report.messages.acked == report.messages.sent > 0
    # Nine people in turn over two nodes: five on the first, four on the second.
    assert connects["node-a"] >= 5
    assert connects["node-b"] >= 4
    assert report.url == f"{a.server.url} {b.server.url}"
    assert report.cpu is not None
    assert report.cpu.server_seconds is not None
    assert report.cpu.server_seconds > 0
