"""An ask under way on the arbiter when it steps down (a refused decision, a lost lease) is
answered by the next arbiter: the domain stopping under it is not the asker's error. Before, the
conversation it needed could not be started any more and the client got `internal`
("an internal error occurred"), which the 3-node chaos run met on sends and resumes. One node
in this process on a real Valkey."""

from __future__ import annotations

import trio

from actors import Speaker, SystemConfig
from bus import open_bus
from cluster import ClusterConfig, open_cluster
from store import Backend, MemoryStore, Priority, Role
from tests.actors.conftest import seed_agents
from tests.valkey_server import Valkey

WAIT_SECONDS = 20


async def test_an_ask_caught_by_a_step_down_is_answered_by_the_next_arbiter(
    valkey: Valkey,
) -> None:
    async with open_bus(valkey.url) as bus:
        await bus.client.flushdb()
    store: Backend = MemoryStore()
    await seed_agents(store)
    with trio.fail_after(WAIT_SECONDS):
        async with open_cluster(
            store, valkey.url, ClusterConfig("node-a", lease_seconds=1.5), SystemConfig()
        ) as system:
            node = system.node
            while node.system is None:  # noqa: ASYNC110 (the lease is Valkey's)
                await trio.sleep(0.02)
            opened = await system.open_chat(
                "cust-1", title="t", description="", priority=Priority.LOW
            )
            first_token = node.token
            assert first_token is not None
            assert node._step_down is not None

            # Step down as a refused decision makes it, with the send already asked.
            node._step_down.cancel()
            customer = Speaker("cust-1", Role.CUSTOMER)
            sent = await system.send_message(
                opened.chat.id, customer, client_msg_id="m1", content="hi"
            )

            assert (node.token or 0) > first_token  # answered under the next lease
    assert sent.message.seq == 1
    assert [m.client_msg_id for m in await store.list_messages(opened.chat.id)] == ["m1"]
