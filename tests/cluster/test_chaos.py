"""Three nodes under websocket traffic, clients spread over them, a node SIGKILLed again and
again (every other time the arbiter's, on purpose) and started again (tools/chaos/): the crash
checker's guarantees hold as on one process (every ack stored once, seqs 1, 2, 3, ..., no chat
with two agents and no agent over max load by the activity-log replay, the arbiter agreeing with
the store), and each takeover is timed against its target, the lease + 1 s.

nx-27017 is a standalone server, so, as for one process on it, the kills wait until every chat
has its agent and there is no churn (tests/chaos/test_crash_restart.py says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chaos.test_crash_restart import SEED, survive
from tests.cluster.conftest import MongoServer
from tests.store.mongo_server import fresh_database_url
from tests.valkey_server import Valkey
from tools.chaos import ChaosPlan


def cluster_plan(mongo: MongoServer, valkey: Valkey, **sizes: Any) -> ChaosPlan:
    return ChaosPlan(
        seed=SEED,
        store=fresh_database_url(mongo.url),
        atomic_routing=False,
        nodes=3,
        bus=valkey.url,
        **sizes,
    )


async def test_three_nodes_with_nodes_killed_under_traffic(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    plan = cluster_plan(mongo, valkey, chats=6, messages=60, kills=4, time_limit=240)
    report = await survive(plan, tmp_path)
    assert len(report.stats.takeover_seconds) >= 1
    assert max(report.stats.takeover_seconds) <= plan.lease_seconds + 1.0


@pytest.mark.slow
async def test_three_nodes_killed_often_under_heavy_traffic(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    plan = cluster_plan(mongo, valkey, chats=30, messages=300, kills=16, time_limit=1800)
    report = await survive(plan, tmp_path)
    assert max(report.stats.takeover_seconds) <= plan.lease_seconds + 1.0
