"""Two real nodes on one MongoDB and one Valkey: a chat across nodes both ways, then the arbiter
SIGKILLed under live clients: the other node takes the lease after its expiry, rebuilds from the
store and carries on; the customer reconnects there, resumes without a gap, and nothing
acknowledged is lost."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.cluster.conftest import LEASE_SECONDS, MongoServer, available, running_cluster, text, ws
from tests.e2e.wsclient import say
from tests.valkey_server import Valkey

ANN = "ann@switchboard.example"


async def test_a_chat_across_two_nodes_survives_the_arbiter_killed(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(120):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b = await cluster.start_nodes(nursery, "node-a", "node-b")

            async with ws(b, await b.login(ANN)) as agent:
                await available(agent)
                customer_token = await a.customer_token("shop-cluster-1")
                async with ws(a, customer_token) as customer:
                    opened = await customer.request(
                        {"type": "chat.open", "title": "Across nodes"}, "chat.opened"
                    )
                    chat_id = opened["chat"]["id"]
                    assigned = await agent.expect("chat.assigned")
                    assert assigned["chat"]["id"] == chat_id
                    # Customer on the arbiter, agent on the edge node, and back.
                    assert (await say(customer, chat_id, "c1", "hello from a"))["seq"] == 1
                    got = await agent.expect("message", chatId=chat_id)
                    assert (got["seq"], text(got)) == (1, "hello from a")
                    assert (await say(agent, chat_id, "a1", "hello from b"))["seq"] == 2
                    got = await customer.expect("message", chatId=chat_id, seq=2)
                    assert text(got) == "hello from b"

                    await a.server.kill()  # the arbiter, with the customer's socket on it

                took_over, waited = await cluster.wait_leader(not_="node-a")
                assert took_over == "node-b"
                print(f"takeover after the kill: {waited:.2f} s (lease {LEASE_SECONDS} s)")
                assert waited <= LEASE_SECONDS + 1.0 + 1.0  # TTL + a renewal tick, and slack

                async with ws(b, customer_token) as customer:
                    resumed = await customer.request(
                        {"type": "resume", "chatId": chat_id, "afterSeq": 1}, "resumed"
                    )
                    assert resumed["recovered"] is True
                    replayed = customer.of_type("message")
                    assert [m["seq"] for m in replayed] == [2]  # exactly what was missed
                    assert (await say(customer, chat_id, "c2", "still there?"))["seq"] == 3
                    got = await agent.expect("message", chatId=chat_id, seq=3)
                    assert text(got) == "still there?"
                    # The agent kept the chat through the takeover: they answer in it.
                    assert (await say(agent, chat_id, "a2", "yes"))["seq"] == 4
