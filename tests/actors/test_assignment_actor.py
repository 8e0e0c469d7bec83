"""The AssignmentActor's wiring: decisions reach the store, the activity log and the sessions.

The decisions themselves are tested on AssignmentCore (test_assignment*.py); here each test
checks that the shell persists before it pushes, starts and honours timers, refuses without
changing anything, and rebuilds its state from the store after a crash or a restart.
Everything runs on the autojump clock: waiting out the grace period takes no real time.
"""

from __future__ import annotations

import gc

import pytest
import trio

from actors import ChatStatusEvent, ChatUnassigned, QueuePosition, System, open_system
from actors.assignment_actor import RETRY_SECONDS, _Batch
from actors.events import AgentStatusEvent, ChatAssigned
from router import Refused
from store import (
    ActedBy,
    ActivityFilter,
    ActivityKind,
    AgentStatus,
    ChatStatus,
    MemoryStore,
    Priority,
    Role,
    StoreUnavailable,
)
from tests.actors.conftest import GRACE, Recorder, online, settle


async def open_chat(system: System, customer_id: str, priority: Priority = Priority.MEDIUM) -> str:
    opened = await system.open_chat(
        customer_id, title="Where is my parcel?", description="", priority=priority
    )
    return opened.chat.id


async def test_open_chat_assigns_persists_logs_and_pushes(
    system: System, store: MemoryStore
) -> None:
    ann = await online(system, "ann")
    customer = Recorder("cust-1")
    await system.connect(customer.session, Role.CUSTOMER)

    chat_id = await open_chat(system, "cust-1")

    stored = await store.get_chat(chat_id)
    assert stored is not None
    assert (stored.status, stored.agent_id, stored.queued_at) == (ChatStatus.OPEN, "ann", None)
    assert ann.assigned_chats() == [chat_id]
    assert customer.assigned_chats() == [chat_id]
    assert [e.reason for e in customer.of(ChatAssigned)] == ["an agent has joined the chat"]
    log = (await store.list_activity(ActivityFilter(chat_id=chat_id))).items
    assignment = [entry for entry in log if entry.kind == ActivityKind.ASSIGNMENT]
    assert len(assignment) == 1
    assert assignment[0].to_value == "ann"
    assert assignment[0].reason.startswith("least loaded (0/3); candidates: ann 0/3")
    statuses = [(e.from_value, e.to_value) for e in log if e.kind == ActivityKind.CHAT_STATUS]
    assert statuses == [("new", "open")]
    route = system.route(chat_id)
    assert route is not None
    assert route.agent_id == "ann"


async def test_find_or_create_returns_the_active_chat(system: System) -> None:
    first = await system.open_chat("cust-1", title="a", description="", priority=Priority.LOW)
    again = await system.open_chat("cust-1", title="b", description="", priority=Priority.HIGH)
    assert first.created
    assert not again.created
    assert again.chat.id == first.chat.id


async def test_waiting_customers_get_queue_positions(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    customers = [Recorder(f"cust-{n}") for n in range(3)]
    chat_ids = []
    for customer in customers:
        await system.connect(customer.session, Role.CUSTOMER)
        chat_ids.append(await open_chat(system, customer.user_id))
    await trio.sleep(1)  # positions are pushed a moment after the queue changes
    latest = [customer.of(QueuePosition)[-1] for customer in customers]
    assert [(p.chat_id, p.position) for p in latest] == [(c, n) for n, c in enumerate(chat_ids, 1)]
    # Nobody online: the ETA grows with the position (default handling time, capacity 1).
    assert 0 < latest[0].eta_seconds < latest[1].eta_seconds < latest[2].eta_seconds
    await online(system, "cy")  # max load 1: takes the first chat, the others move up
    await trio.sleep(1)
    assert customers[0].assigned_chats() == [chat_ids[0]]
    assert [c.of(QueuePosition)[-1].position for c in customers[1:]] == [1, 2]


async def test_agent_status_changes_are_logged_and_pushed(
    system: System, store: MemoryStore
) -> None:
    cy = await online(system, "cy")
    await open_chat(system, "cust-1")  # cy's one slot: busy
    assert [(e.status, e.reason) for e in cy.of(AgentStatusEvent)] == [
        (AgentStatus.AVAILABLE, "set by the agent"),
        (AgentStatus.BUSY, "at max load (1/1)"),
    ]
    log = (await store.list_activity(ActivityFilter(agent_id="cy"))).items
    agent_log = [e for e in log if e.kind == ActivityKind.AGENT_STATUS]
    assert [(e.from_value, e.to_value, e.actor, e.actor_id) for e in agent_log] == [
        ("away", "available", ActedBy.SELF, "cy"),
        ("available", "busy", ActedBy.SYSTEM, None),
    ]
    user = await store.get_user("cy")
    assert user is not None
    assert user.status == AgentStatus.BUSY


async def test_grace_period_then_requeue_to_another_agent(
    system: System, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    ann = await online(system, "ann")
    chat_id = await open_chat(system, "cust-1")
    bob = await online(system, "bob")
    await system.disconnect(ann.session, Role.AGENT)
    await trio.sleep(GRACE - 1)
    assert system.route(chat_id).agent_id == "ann"  # type: ignore[union-attr]
    await trio.sleep(2)
    await settle()
    stored = await store.get_chat(chat_id)
    assert stored is not None
    assert stored.agent_id == "bob"
    assert bob.assigned_chats() == [chat_id]
    assert ann.of(ChatUnassigned) == []  # ann had no socket left to hear it on
    agent = await store.get_user("ann")
    assert agent is not None
    assert agent.status == AgentStatus.AWAY


async def test_reconnecting_within_grace_changes_nothing(
    system: System, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    ann = await online(system, "ann")
    chat_id = await open_chat(system, "cust-1")
    await online(system, "bob")
    await system.disconnect(ann.session, Role.AGENT)
    await trio.sleep(GRACE / 2)
    again = Recorder("ann")
    await system.connect(again.session, Role.AGENT)
    await trio.sleep(GRACE * 2)
    stored = await store.get_chat(chat_id)
    assert stored is not None
    assert stored.agent_id == "ann"
    agent = await store.get_user("ann")
    assert agent is not None
    assert agent.status == AgentStatus.AVAILABLE


async def test_going_away_reassigns_with_status_events(system: System, store: MemoryStore) -> None:
    ann = await online(system, "ann")
    customer = Recorder("cust-1")
    await system.connect(customer.session, Role.CUSTOMER)
    chat_id = await open_chat(system, "cust-1")
    bob = await online(system, "bob")
    await system.set_agent_status("ann", AgentStatus.AWAY, by=ActedBy.SELF, actor_id="ann")
    assert [e.chat_id for e in ann.of(ChatUnassigned)] == [chat_id]
    assert bob.assigned_chats() == [chat_id]
    assert [(e.status, e.agent_id) for e in customer.of(ChatStatusEvent)] == [
        (ChatStatus.OPEN, "ann"),
        (ChatStatus.PENDING, None),
        (ChatStatus.OPEN, "bob"),
    ]
    log = (await store.list_activity(ActivityFilter(chat_id=chat_id))).items
    moves = [(e.from_value, e.to_value) for e in log if e.kind == ActivityKind.ASSIGNMENT]
    assert moves == [(None, "ann"), ("ann", None), (None, "bob")]


@pytest.mark.parametrize(
    ("agent_id", "code"),
    [("bob", "agent_offline"), ("cy", "agent_away"), ("zed", "agent_not_found")],
)
async def test_refused_reassign_changes_nothing(
    system: System, store: MemoryStore, agent_id: str, code: str
) -> None:
    await online(system, "ann")
    bob = Recorder("bob")
    await system.connect(bob.session, Role.AGENT)
    await system.set_agent_status("bob", AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id="bob")
    await system.disconnect(bob.session, Role.AGENT)
    chat_id = await open_chat(system, "cust-1")
    before = (await store.list_activity(ActivityFilter(chat_id=chat_id))).items
    with pytest.raises(Refused) as refused:
        await system.reassign_chat(chat_id, agent_id, actor_id="admin")
    assert refused.value.code == code
    assert (await store.list_activity(ActivityFilter(chat_id=chat_id))).items == before
    assert system.route(chat_id).agent_id == "ann"  # type: ignore[union-attr]


async def test_agent_may_only_act_on_their_own_chat(system: System) -> None:
    await online(system, "ann")
    chat_id = await open_chat(system, "cust-1")
    with pytest.raises(Refused) as refused:
        await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id="bob")
    assert refused.value.code == "not_your_chat"
    resolved = await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id="ann")
    assert resolved.status == ChatStatus.RESOLVED
    assert resolved.resolved_at is not None
    assert system.route(chat_id) is None
    with pytest.raises(Refused) as again:
        await system.resolve_chat(chat_id, by=ActedBy.ADMIN, actor_id="admin")
    assert again.value.code == "chat_not_active"


async def test_parked_chat_is_queued_again_when_the_customer_writes(
    system: System, store: MemoryStore
) -> None:
    from actors import Speaker

    cy = await online(system, "cy")
    chat_id = await open_chat(system, "cust-1")
    parked = await system.park_chat(chat_id, by=ActedBy.SELF, actor_id="cy")
    assert (parked.status, parked.agent_id) == (ChatStatus.PENDING, None)
    customer = Speaker("cust-1", Role.CUSTOMER)
    await system.send_message(chat_id, customer, client_msg_id="m1", content="still there?")
    await settle()
    stored = await store.get_chat(chat_id)
    assert stored is not None
    assert (stored.status, stored.agent_id) == (ChatStatus.OPEN, "cy")
    assert cy.assigned_chats() == [chat_id, chat_id]


class FlakyStore(MemoryStore):
    """Fails `record_routing` while `failing` is positive (counting down), as a database that
    cannot be reached would."""

    failing = 0

    async def record_routing(self, *args: object, **kwargs: object) -> None:
        if self.failing:
            self.failing -= 1
            raise StoreUnavailable("connection lost")
        await super().record_routing(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_failed_write_answers_unavailable_and_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from tests.actors.conftest import seed_agents

    store = FlakyStore()
    await seed_agents(store)
    async with open_system(store) as system:
        await online(system, "ann")
        kept = await open_chat(system, "cust-1")
        before = await system.snapshot()
        store.failing = 1
        with pytest.raises(StoreUnavailable):
            await open_chat(system, "cust-2")
        # Taken back whole: no chat stored, no load taken, and no restart.
        after = await system.snapshot()
        assert after.core == before.core
        assert await store.count_chats() == 1
        assert [a.restarts for a in after.actors if a.name == "supervisor"] == [0]
        assert system.route(kept) is not None
        # The same ask again, once the store answers: the customer gets a chat, and ann has it.
        second = await open_chat(system, "cust-2")
        loads = {agent.agent_id: agent.chat_ids for agent in (await system.snapshot()).core.agents}
        assert loads["ann"] == (kept, second)


async def test_a_tell_in_a_failed_batch_is_decided_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from tests.actors.conftest import seed_agents

    store = FlakyStore()
    await seed_agents(store)
    async with open_system(store) as system:
        recorder = await online(system, "ann")
        chat_id = await open_chat(system, "cust-1")
        # ann's last tab closes; her grace period ends while the store is away for three writes:
        # the decision (away, her chat re-queued) is taken back each time and decided again
        # until it is stored.
        await system.disconnect(recorder.session, Role.AGENT)
        store.failing = 3
        await trio.sleep(GRACE + 4 * RETRY_SECONDS)
        assert store.failing == 0
        ann = next(a for a in (await system.snapshot()).core.agents if a.agent_id == "ann")
        assert (ann.status, ann.chat_ids) == (AgentStatus.AWAY, ())
        chat = await store.get_chat(chat_id)
        assert chat is not None
        assert (chat.status, chat.agent_id) == (ChatStatus.PENDING, None)
        stored = await store.get_user("ann")
        assert stored is not None
        assert stored.status == AgentStatus.AWAY


async def test_restart_rebuilds_loads_and_queue_from_the_store(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_system(store) as system:
        await online(system, "cy")
        first = await open_chat(system, "cust-1")
        second = await open_chat(system, "cust-2", Priority.URGENT)
        third = await open_chat(system, "cust-3")
        before = await system.snapshot()
    async with open_system(store) as system:
        after = await system.snapshot()
        cy = next(agent for agent in after.core.agents if agent.agent_id == "cy")
        assert cy.chat_ids == (first,)
        assert cy.connections == 0  # nobody is connected to a fresh process
        assert [entry.chat_id for entry in after.core.queue] == [second, third]
        assert [entry.chat_id for entry in before.core.queue] == [second, third]
        # cy's grace period runs from the restart; without a reconnect the chat is re-queued.
        await trio.sleep(GRACE + 1)
        queue = (await system.snapshot()).core.queue
        assert [entry.chat_id for entry in queue] == [first, second, third]
        assert queue[0].requeued


async def test_a_stored_batch_is_freed_at_once_not_left_for_the_collector(system: System) -> None:
    """A batch and what it holds (its activity entries, chats, effects, answers) go as soon as
    it is applied: an answer that kept its batch made a cycle of each, which survived the young
    collections and was found only by a full one, walking every live object."""
    await online(system, "ann")
    gc.collect()
    gc.disable()
    try:
        for n in range(5):
            chat_id = await open_chat(system, f"cust-{n}")
            await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id="ann")
        await settle()
        # type(), not isinstance: isinstance asks a weakref.proxy for its referent's class,
        # and a dead one left by an earlier test (tests/store run first) raises ReferenceError.
        assert [o for o in gc.get_objects() if type(o) is _Batch] == []
    finally:
        gc.enable()
