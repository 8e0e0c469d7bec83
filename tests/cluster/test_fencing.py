"""The arbiter's domain writes through the fenced store: once another node has claimed the
routing token, a decision of the former arbiter is refused whole, changes nothing in the store,
and tells the node to step down (here, without waiting for its lease renewal to fail). And once
its lease may have run out, nothing of the domain reaches the store at all: no message, no chat."""

from __future__ import annotations

from typing import cast

import pytest
import trio

from actors import Speaker, SystemConfig, open_system
from cluster._fencing import FencedStore
from router import RestartPolicy
from store import (
    ActedBy,
    AgentStatus,
    Backend,
    Fenced,
    MemoryStore,
    Priority,
    Role,
    StoreUnavailable,
)
from tests.actors.conftest import Recorder, seed_agents


async def test_a_former_arbiter_cannot_write_a_decision_and_steps_down() -> None:
    store = MemoryStore()
    await seed_agents(store)
    stepped_down = trio.Event()
    old = await store.claim_routing("node-a")
    fenced = FencedStore(store, old, on_fenced=lambda why: stepped_down.set())
    config = SystemConfig(assignment_restarts=RestartPolicy(max_restarts=100, within_seconds=1))
    async with open_system(cast(Backend, fenced), config) as system:
        ann = Recorder("ann")
        await system.connect(ann.session, Role.AGENT)
        await system.set_agent_status("ann", AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id="ann")
        opened = await system.open_chat("cust-1", title="t", description="", priority=Priority.LOW)
        assert opened.chat.agent_id == "ann"

        await store.claim_routing("node-b")  # node-a was paused past its lease; node-b took over
        before = (await store.get_user("ann"), await store.get_chat(opened.chat.id))
        # Refused whole: the asker hears 503 (retry, which reaches the new arbiter), and the
        # actor takes its decision back instead of crashing.
        with pytest.raises(StoreUnavailable) as refused:
            await system.set_agent_status("ann", AgentStatus.AWAY, by=ActedBy.SELF, actor_id="ann")
        assert isinstance(refused.value.__cause__, Fenced)
        assert stepped_down.is_set()
        after = (await store.get_user("ann"), await store.get_chat(opened.chat.id))
        assert after == before  # the chat is still ann's, and ann is not away


async def test_a_node_past_its_lease_stores_no_message_and_no_chat() -> None:
    store = MemoryStore()
    await seed_agents(store)
    reasons: list[str] = []
    fenced = FencedStore(store, await store.claim_routing("node-a"), on_fenced=reasons.append)
    async with open_system(cast(Backend, fenced), SystemConfig()) as system:
        ann = Recorder("ann")
        await system.connect(ann.session, Role.AGENT)
        await system.set_agent_status("ann", AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id="ann")
        opened = await system.open_chat("cust-1", title="t", description="", priority=Priority.LOW)
        customer = Speaker("cust-1", Role.CUSTOMER)
        await system.send_message(opened.chat.id, customer, client_msg_id="m1", content="before")

        # Paused (SIGSTOP) past the lease: on waking, the conversation still runs here, and
        # another node may own the chat already. Its next append must not reach the store.
        fenced.valid_until = trio.current_time()
        with pytest.raises(StoreUnavailable):
            await system.send_message(opened.chat.id, customer, client_msg_id="m2", content="late")
        with pytest.raises(StoreUnavailable):
            await system.open_chat("cust-2", title="t", description="", priority=Priority.LOW)
        assert reasons
        assert all("lease" in why for why in reasons)

    stored = await store.list_messages(opened.chat.id)
    assert [m.content for m in stored] == ["before"]
    assert [c.customer_id for c in (await store.list_chats(limit=10)).items] == ["cust-1"]
