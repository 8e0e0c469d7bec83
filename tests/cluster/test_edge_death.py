"""An edge node (not the arbiter) SIGKILLed with two agents on it: Bob reconnects to another node
at once, resumes exactly what was said meanwhile and keeps his chat; Ann does not come back, so
her grace period runs on the arbiter (which outlived her node) and her chat is re-queued when it
ends, then given to Bob."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import trio

from store import (
    ActedBy,
    Activity,
    ActivityFilter,
    ActivityKind,
    ChatStatus,
    Store,
    open_store,
    pages,
)
from tests.cluster.conftest import MongoServer, available, running_cluster, text, ws
from tests.e2e.wsclient import WsClient, say
from tests.valkey_server import Valkey

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
GRACE = 3.0


async def open_chat(customer: WsClient, agent: WsClient, title: str) -> str:
    opened = await customer.request({"type": "chat.open", "title": title}, "chat.opened")
    chat_id: str = opened["chat"]["id"]
    assigned = await agent.expect("chat.assigned")
    assert assigned["chat"]["id"] == chat_id
    return chat_id


async def put_away(store: Store, agent_id: str) -> list[Activity]:
    """The agent's changes to away in the activity log, oldest first."""
    return [
        entry
        async for page in pages(
            lambda cursor: store.list_activity(
                ActivityFilter(agent_id=agent_id), limit=200, cursor=cursor
            )
        )
        for entry in page
        if entry.kind == ActivityKind.AGENT_STATUS and entry.to_value == "away"
    ]


async def test_an_edge_node_killed_with_agents_on_it(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(150):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b, c = await cluster.start_nodes(nursery, "node-a", "node-b", "node-c", grace=GRACE)
            bob_token = await b.login(BOB)

            async with (
                ws(a, await a.customer_token("shop-edge-1")) as customer1,
                ws(c, await c.customer_token("shop-edge-2")) as customer2,
            ):
                async with ws(b, await b.login(ANN)) as ann, ws(b, bob_token) as bob:
                    await available(ann)
                    chat1 = await open_chat(customer1, ann, "Ann's")
                    await available(bob)
                    chat2 = await open_chat(customer2, bob, "Bob's")  # least loaded
                    assert (await say(customer2, chat2, "c2-1", "hello bob"))["seq"] == 1
                    await bob.expect("message", chatId=chat2, seq=1)
                    assert (await say(customer1, chat1, "c1-1", "hello ann"))["seq"] == 1
                    await ann.expect("message", chatId=chat1, seq=1)

                    await b.server.kill()  # both agents' node, not the arbiter
                    killed_at = datetime.now(UTC)

                # Said while Bob had no connection: stored, and waiting for his resume.
                assert (await say(customer2, chat2, "c2-2", "are you there?"))["seq"] == 2
                async with ws(c, bob_token) as bob_again:
                    resumed = await bob_again.request(
                        {"type": "resume", "chatId": chat2, "afterSeq": 1}, "resumed"
                    )
                    assert resumed["recovered"] is True
                    missed = [(m["seq"], text(m)) for m in bob_again.of_type("message")]
                    assert missed == [(2, "are you there?")]
                    assert (await say(bob_again, chat2, "b2-1", "still here"))["seq"] == 3
                    got = await customer2.expect("message", chatId=chat2, seq=3)
                    assert text(got) == "still here"

                    # Ann stays away: when her grace ends on the arbiter, her chat is
                    # re-queued and Bob, the one agent with room, gets it.
                    with trio.fail_after(GRACE + 15):
                        reassigned = await bob_again.expect("chat.assigned")
                    assert reassigned["chat"]["id"] == chat1
                    assert (await say(bob_again, chat1, "b1-1", "Bob here"))["seq"] == 2
                    got = await customer1.expect("message", chatId=chat1, seq=2)
                    assert text(got) == "Bob here"
                    assert (await say(customer1, chat1, "c1-2", "thanks"))["seq"] == 3

            async with open_store(cluster.store_url) as store:
                ann_user = await store.get_user_by_email(ANN)
                bob_user = await store.get_user_by_email(BOB)
                assert ann_user is not None
                assert bob_user is not None
                chats = [await store.get_chat(chat1), await store.get_chat(chat2)]
                entries = {user.id: await put_away(store, user.id) for user in (ann_user, bob_user)}
    assert [(chat.status, chat.agent_id) for chat in chats if chat is not None] == [
        (ChatStatus.OPEN, bob_user.id),
        (ChatStatus.OPEN, bob_user.id),
    ]
    away = entries[ann_user.id]
    assert [(entry.actor, entry.reason) for entry in away] == [
        (ActedBy.SYSTEM, "disconnected for grace period")
    ]
    # Not before her node's membership expired and her whole grace period ran after it.
    assert (away[0].at - killed_at).total_seconds() >= GRACE
    # Bob was never put away: he came back (to another node) within his grace period.
    assert entries[bob_user.id] == []
