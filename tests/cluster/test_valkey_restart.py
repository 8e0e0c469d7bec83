"""Valkey itself restarting under cluster traffic (killed, then started again empty on the same
port): meanwhile asks wait, and past the edge's wait for an arbiter answer `unavailable` / 503;
reads of stored data still answer;
afterwards a node leads again with a newer token, the conversation carries on, and every
acknowledged message is stored once at the seq its ack named, with no gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from store import open_store
from tests.cluster.conftest import MongoServer, available, running_cluster, ws
from tests.cluster.test_cluster_view import admin_headers, leader_token
from tests.e2e.wsclient import WsClient
from tests.valkey_server import Valkey

ANN = "ann@switchboard.example"


async def send_until_acked(
    client: WsClient, chat_id: str, client_msg_id: str, refused: list[str]
) -> int:
    """Send, and send again under the same id after each `unavailable`: the seq acknowledged."""
    while True:
        answer = await client.sent(chat_id, client_msg_id, f"message {client_msg_id}")
        if answer["type"] == "ack":
            seq: int = answer["seq"]
            return seq
        assert answer["code"] == "unavailable", answer
        refused.append(client_msg_id)


async def test_valkey_restarting_under_traffic_loses_nothing_acknowledged(
    tmp_path: Path, mongo: MongoServer, valkey: Valkey
) -> None:
    acked: dict[str, int] = {}
    refused: list[str] = []
    during: dict[str, Any] = {}
    with trio.fail_after(150):
        async with running_cluster(tmp_path, mongo, valkey) as (cluster, nursery):
            a, b = await cluster.start_nodes(nursery, "node-a", "node-b")
            headers = await admin_headers(b)
            token_before = await leader_token(b, headers)

            customer_token = await b.customer_token("shop-valkey-1")
            async with ws(a, await a.login(ANN)) as agent, ws(b, customer_token) as customer:
                await available(agent)
                opened = await customer.request(
                    {"type": "chat.open", "title": "Valkey restarts"}, "chat.opened"
                )
                chat_id = opened["chat"]["id"]
                await agent.expect("chat.assigned")
                for n in range(3):
                    acked[f"before-{n}"] = await send_until_acked(
                        customer, chat_id, f"before-{n}", refused
                    )

                valkey.kill()
                # The arbiter cannot renew: it steps down before its lease could expire.
                await cluster.wait_log("node-a", "no longer arbitrates")
                # Stored data still reads on the edge, straight from MongoDB.
                listed = await b.http.get(
                    f"/messages/customer/{chat_id}",
                    headers={"Authorization": f"Bearer {customer_token}"},
                )
                during["list"] = (listed.status_code, [m["seq"] for m in listed.json()])

                async def send_meanwhile() -> None:
                    acked["during"] = await send_until_acked(customer, chat_id, "during", refused)

                async with trio.open_nursery() as asks:
                    asks.start_soon(send_meanwhile)
                    # Valkey stays away longer than an edge waits for an arbiter: the ask is
                    # refused as unavailable, and so is the send, which is sent again.
                    answer = await b.http.get("/admin/system", headers=headers)
                    during["system"] = (answer.status_code, answer.json())
                    # Valkey comes back, empty, while the send is being sent again.
                    await trio.to_thread.run_sync(valkey.start)

                leader, _ = await cluster.wait_leader()
                for n in range(3):
                    acked[f"after-{n}"] = await send_until_acked(
                        customer, chat_id, f"after-{n}", refused
                    )
                # Events between nodes are at most once: the agent's resume fills any hole.
                await agent.send({"type": "resume", "chatId": chat_id, "afterSeq": 0})
                await agent.expect("resumed", chatId=chat_id)
                agent_seqs = {f["seq"] for f in agent.of_type("message") if f["chatId"] == chat_id}
            # A newer one within a few beats (until then b may still know the old one).
            token_after = await leader_token(b, headers, newer_than=token_before)

    assert during["list"] == (200, [1, 2, 3])
    status, body = during["system"]
    assert (status, body["error"]["code"]) == (503, "unavailable"), body
    assert "during" in refused  # the send too; its resend was acknowledged once
    print(f"refused while Valkey was away: {refused}; leader after: {leader}")
    assert token_after > token_before
    # Every ack is a distinct seq, the seqs run 1..n, and the agent has each of them.
    assert sorted(acked.values()) == list(range(1, len(acked) + 1))
    assert agent_seqs == set(acked.values())
    async with open_store(cluster.store_url) as store:
        stored = await store.list_messages(chat_id, after_seq=0, limit=100)
        chat = await store.get_chat(chat_id)
    assert [m.seq for m in stored] == list(range(1, len(acked) + 1))
    assert {m.client_msg_id: m.seq for m in stored} == acked
    assert chat is not None
    assert chat.agent_id is not None  # the agent kept the chat through the outage
