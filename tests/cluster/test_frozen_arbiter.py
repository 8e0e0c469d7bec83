"""An arbiter frozen (SIGSTOP) past its lease, with a decision due (an agent's grace period), and
then let run again (SIGCONT): the other node has taken the lease, claimed a newer token, rebuilt
from the store and decided in its place; the woken node's late decisions are refused by the
token, it steps down, and the activity log replays with no chat given to two agents and no agent
over max load."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from store import ActivityFilter, ChatStatus, Role, open_store, pages
from tests.cluster.conftest import MongoServer, available, running_cluster, ws
from tests.e2e.wsclient import say
from tests.valkey_server import Valkey
from tools.chaos_check import replay, starting_max_loads

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
GRACE = 1.0


async def test_a_frozen_arbiter_woken_after_its_lease_cannot_write(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(120):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b = await cluster.start_nodes(nursery, "node-a", "node-b", grace=GRACE)

            customer_token = await b.customer_token("shop-frozen-1")
            # Signed in up front: a sign-in (argon2id) on a busy machine can take longer than
            # the grace period, and Ann must be back within hers at the end.
            ann_token = await b.login(ANN)
            async with ws(b, customer_token) as customer:
                async with ws(a, await a.login(BOB)) as bob:
                    await available(bob)
                    opened = await customer.request(
                        {"type": "chat.open", "title": "Frozen"}, "chat.opened"
                    )
                    chat_id = opened["chat"]["id"]
                    await bob.expect("chat.assigned")
                    assert (await say(customer, chat_id, "c1", "hi bob"))["seq"] == 1
                # Bob's socket closed: node-a starts his grace period, then freezes before it
                # ends, holding a decision (bob away, his chat re-queued) it has not made yet.
                a.server.send_signal(signal.SIGSTOP)
                try:
                    leader, _ = await cluster.wait_leader(not_="node-a")
                    assert leader == "node-b"
                    # node-b rebuilt from the store, ran bob's grace itself and gives the chat
                    # to ann, who is on node-b.
                    async with ws(b, ann_token) as ann:
                        await available(ann)
                        assigned = await ann.expect("chat.assigned")
                        assert assigned["chat"]["id"] == chat_id
                        assert (await say(ann, chat_id, "a1", "ann here"))["seq"] == 2
                finally:
                    a.server.send_signal(signal.SIGCONT)
                # Woken, node-a finds out it lost the lease (or the store refuses its decision
                # first) and steps down.
                await cluster.wait_log("node-a", "no longer arbitrates")
                assert await cluster.leader() == "node-b"
                async with ws(b, ann_token) as ann:
                    assert (await say(ann, chat_id, "a2", "still ann"))["seq"] == 3

            async with open_store(cluster.store_url) as store:
                chat = await store.get_chat(chat_id)
                assert chat is not None
                ann_user = await store.get_user_by_email(ANN)
                assert ann_user is not None
                assert (chat.status, chat.agent_id) == (ChatStatus.OPEN, ann_user.id)
                log = [
                    entry
                    async for page in pages(
                        lambda c: store.list_activity(ActivityFilter(), limit=500, cursor=c)
                    )
                    for entry in page
                ]
                agents = [
                    u
                    async for page in pages(
                        lambda c: store.list_users(role=Role.AGENT, limit=500, cursor=c)
                    )
                    for u in page
                ]
                replayed = replay(log, starting_max_loads(log, agents))
                assert replayed.broken == []
                assert replayed.owners.get(chat_id) == ann_user.id
            print(cluster.log("node-a").count("refused: another node arbitrates"), "refusals")
