"""Why a load balancer must keep a Socket.IO client that polls on one node: an Engine.IO session
lives in the node that opened it. Its own node takes the session's packets; any other node
answers 400 session_unknown (Engine.IO code 1), so the client opens a new session."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.cluster.conftest import MongoServer, running_cluster
from tests.valkey_server import Valkey

PATH = "/socket.io/"


async def test_a_polling_session_is_known_only_to_the_node_that_opened_it(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(90):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b = await cluster.start_nodes(nursery, "node-a", "node-b")
            token = await b.customer_token("shop-sticky-1")
            auth = {"Authorization": f"Bearer {token}"}
            opened = await b.http.get(
                PATH, params={"EIO": "4", "transport": "polling"}, headers=auth
            )
            assert opened.status_code == 200, opened.text
            assert opened.text.startswith("0")
            sid = json.loads(opened.text[1:])["sid"]
            query = {"EIO": "4", "transport": "polling", "sid": sid}

            elsewhere = await a.http.post(PATH, params=query, content="40", headers=auth)
            at_home = await b.http.post(PATH, params=query, content="40", headers=auth)

    assert elsewhere.status_code == 400
    error = elsewhere.json()["error"]
    assert error["code"] == "session_unknown"
    assert error["details"]["engineIoCode"] == 1
    assert (at_home.status_code, at_home.text) == (200, "ok")
