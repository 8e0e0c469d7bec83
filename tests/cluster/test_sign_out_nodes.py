"""Signing a user's connections out reaches every node: a password change made on one node
closes the account's connections on another, but those of the token that made the change (its
holder stays signed in, as the original front ends expect)."""

from __future__ import annotations

from pathlib import Path

import trio

from api import DEMO_PASSWORD
from tests.api.support import ANN
from tests.cluster.conftest import MongoServer, running_cluster, ws
from tests.valkey_server import Valkey

NEW_PASSWORD = "a-new-password-22"


async def test_a_password_change_closes_the_other_tokens_connections_on_every_node(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(120):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b = await cluster.start_nodes(nursery, "node-a", "node-b")
            caller, other_token = await a.login(ANN), await a.login(ANN)
            async with ws(b, caller) as kept, ws(b, other_token) as other:
                await kept.ping()
                await other.ping()
                changed = await a.http.post(
                    "/password/update",
                    headers={"Authorization": f"Bearer {caller}"},
                    json={
                        "oldPassword": DEMO_PASSWORD,
                        "newPassword": NEW_PASSWORD,
                        "confirmPassword": NEW_PASSWORD,
                    },
                )
                other_closed = (await other.closed()).code
                await kept.ping()  # still open on node b
                kept_pinged = True
    assert changed.status_code == 200, changed.text
    assert other_closed == 4401
    assert kept_pinged
