"""A store outage with live sessions, on the trio clock: the domain stays up, asks answer
StoreUnavailable while the store is away, and afterwards every chat, agent and message is where
it belongs; a crashed assignment actor (a bug) restarts without withdrawing any route.

The store is a MemoryStore behind a switch: while it is off, every call raises StoreUnavailable,
as a database that cannot be reached does.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from actors import ChatAssigned, Event, Speaker, System, open_system
from actors.assignment_actor import RETRY_SECONDS, AssignmentActor
from actors.system import ASSIGNMENT_RETRY_SECONDS
from router import Refused, RouterError
from store import (
    ActedBy,
    Backend,
    ChatFilter,
    ChatStatus,
    MemoryStore,
    Priority,
    Role,
    StoreUnavailable,
)
from tests.actors.conftest import GRACE, Recorder, online, seed_agents, settle


class SwitchedStore:
    """`store`, unreachable while `down`."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                await trio.lowlevel.checkpoint()
                raise StoreUnavailable("the database cannot be reached")
            return await method(*args, **kwargs)

        return call


def as_store(switched: SwitchedStore) -> Backend:
    return switched


async def open_chat(system: System, customer_id: str) -> str:
    opened = await system.open_chat(
        customer_id, title="help", description="", priority=Priority.MEDIUM
    )
    return opened.chat.id


async def outcome(call: Callable[[], Awaitable[object]]) -> str:
    """'ok', or the name of the error the call raised (with the code of a refusal)."""
    try:
        await call()
    except Refused as refusal:
        return f"Refused {refusal.code}"
    except (RouterError, StoreUnavailable) as error:
        return type(error).__name__
    return "ok"


async def check_store_agrees(system: System, memory: MemoryStore) -> None:
    """Every active chat the store holds is the core's, with the same status and agent, and
    each agent's load is the store's count of their open chats."""
    snapshot = (await system.snapshot()).core
    owners = {chat_id: view.agent_id for view in snapshot.agents for chat_id in view.chat_ids}
    waiting = {entry.chat_id for entry in snapshot.queue}
    active = (await memory.list_chats(ChatFilter(statuses=frozenset(
        {ChatStatus.NEW, ChatStatus.OPEN, ChatStatus.PENDING}
    )), limit=500)).items  # fmt: skip
    for chat in active:
        if chat.status == ChatStatus.OPEN:
            assert owners.get(chat.id) == chat.agent_id, chat
        else:
            assert chat.agent_id is None or chat.id not in owners, chat
            assert chat.id in waiting or chat.status == ChatStatus.PENDING, chat
    assert set(owners) <= {chat.id for chat in active}
    assert waiting <= {chat.id for chat in active}


@pytest.mark.parametrize("seconds", [0.5, 5.0, 60.0])
async def test_an_outage_answers_unavailable_and_afterwards_nothing_is_lost(
    seconds: float, autojump_clock: trio.testing.MockClock
) -> None:
    memory = MemoryStore()
    await seed_agents(memory)
    switched = SwitchedStore(memory)
    async with open_system(as_store(switched)) as system:
        await online(system, "ann")
        bob = await online(system, "bob")
        first = await open_chat(system, "cust-1")
        customer = Speaker("cust-1", Role.CUSTOMER)
        sent = await system.send_message(first, customer, client_msg_id="m1", content="hello")

        switched.down = True
        # Asks while it is away: each answers at once that the store is unavailable.
        with trio.fail_after(1):
            assert await outcome(lambda: open_chat(system, "cust-2")) == "StoreUnavailable"
            assert (
                await outcome(
                    lambda: system.resolve_chat(
                        first, by=ActedBy.SELF, actor_id=sent.message.sender_id
                    )
                )
                == "StoreUnavailable"
            )
        # bob's tab closes during the outage; his grace period may end during it too.
        await system.disconnect(bob.session, Role.AGENT)
        await trio.sleep(seconds)
        assert system.assignment_running is False  # /readyz: decisions cannot be stored
        switched.down = False
        await trio.sleep(2 * RETRY_SECONDS)
        assert system.assignment_running

        # Nothing restarted; nothing decided during the outage half-happened.
        snapshot = await system.snapshot()
        assert [a.restarts for a in snapshot.actors if a.name == "supervisor"] == [0]
        await check_store_agrees(system, memory)
        # The same asks again go through, and the chat's transcript carries on without a gap.
        second = await open_chat(system, "cust-2")
        assert system.route(second) is not None
        again = await system.send_message(first, customer, client_msg_id="m2", content="still?")
        assert again.message.seq == sent.message.seq + 1
        await trio.sleep(GRACE + 2 * RETRY_SECONDS)  # bob's grace period ends, stored
        bob_record = await memory.get_user("bob")
        assert bob_record is not None
        assert bob_record.status == "away"
        await check_store_agrees(system, memory)
        stored = await memory.list_messages(first, after_seq=0, limit=10)
        assert [m.client_msg_id for m in stored] == ["m1", "m2"]
        await settle()


async def test_a_crashed_assignment_actor_keeps_every_route_while_it_restarts(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Customers keep writing through a crash of the assignment actor whose restart waits 5 s
    for the store: no send is refused as if its chat were resolved, every acknowledged message
    is stored, and the restart publishes routes over the old ones (a waiting chat it hands to
    the agent who connected meanwhile is routed to them)."""
    memory = MemoryStore()
    await seed_agents(memory)
    switched = SwitchedStore(memory)
    async with open_system(as_store(switched)) as system:
        await online(system, "ann")  # max load 3
        bob = await online(system, "bob")
        await system.disconnect(bob.session, Role.AGENT)  # available, in his grace period
        chats = [await open_chat(system, f"cust-{n}") for n in range(4)]
        waiting = chats[3]  # ann is full
        route = system.route(waiting)
        assert route is not None
        assert route.agent_id is None

        # A bug: the next presence change crashes the actor, and its restart has to wait for
        # the store (away for 5 s).
        real = AssignmentActor._sync_presence

        def crash_once(self: AssignmentActor, agent_id: str, batch: Any) -> None:
            monkeypatch.setattr(AssignmentActor, "_sync_presence", real)
            raise RuntimeError("an injected bug")

        monkeypatch.setattr(AssignmentActor, "_sync_presence", crash_once)
        outcomes: list[str] = []
        acked: dict[str, list[str]] = {chat_id: [] for chat_id in chats}
        writing = True

        async def customer(n: int, chat_id: str) -> None:
            speaker = Speaker(f"cust-{n}", Role.CUSTOMER)
            for k in itertools.count():
                if not writing:
                    return
                client_msg_id = f"m{k}"
                result = await outcome(
                    partial(
                        system.send_message,
                        chat_id,
                        speaker,
                        client_msg_id=client_msg_id,
                        content="still there?",
                    )
                )
                outcomes.append(result)
                if result == "ok":
                    acked[chat_id].append(client_msg_id)
                await trio.sleep(0.25)

        bob_again = Recorder("bob")
        handed_over = trio.Event()

        def offer(event: Event) -> None:
            bob_again.events.append(event)
            if isinstance(event, ChatAssigned):
                handed_over.set()

        bob_again.session = replace(bob_again.session, offer=offer)
        async with trio.open_nursery() as nursery:
            for n, chat_id in enumerate(chats):
                nursery.start_soon(customer, n, chat_id)
            await trio.sleep(1)
            switched.down = True
            await system.connect(bob_again.session, Role.AGENT)  # the crash
            await trio.sleep(5)
            switched.down = False
            with trio.fail_after(60):
                await handed_over.wait()
            await trio.sleep(1)
            writing = False

        assert "Refused chat_resolved" not in outcomes, outcomes
        assert "StoreUnavailable" in outcomes  # some were written while the store was away
        # Restarted (each start that could not reach the store counts as a crash too).
        restarts = [a.restarts for a in (await system.snapshot()).actors if a.name == "supervisor"]
        assert restarts[0] >= 1
        # The waiting chat went to bob on the restart, and its route says so.
        assert bob_again.assigned_chats() == [waiting]
        snapshot = (await system.snapshot()).core
        owners = {chat_id: view.agent_id for view in snapshot.agents for chat_id in view.chat_ids}
        for chat_id in chats:
            route = system.route(chat_id)
            assert route is not None
            assert route.agent_id == owners[chat_id]
        assert owners[waiting] == "bob"
        for chat_id in chats:
            stored = await memory.list_messages(chat_id, after_seq=0, limit=500)
            assert [m.client_msg_id for m in stored] == acked[chat_id]
            assert len(acked[chat_id]) >= 4
        await check_store_agrees(system, memory)


async def test_an_assignment_actor_that_keeps_crashing_is_started_again_after_a_delay(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that crashes every start: restarts back off (0.5, 1, 2, 4, 8 s), then the actor is
    given up for ASSIGNMENT_RETRY_SECONDS and started afresh, for as long as it takes. The domain
    never ends meanwhile: not ready, routes kept, customers still write; once the bug is gone the
    next start routes again."""
    memory = MemoryStore()
    await seed_agents(memory)
    with trio.fail_after(600):
        await _keeps_crashing(memory, monkeypatch)


async def _keeps_crashing(memory: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_system(memory) as system:
        await online(system, "ann")
        chat_id = await open_chat(system, "cust-1")
        customer = Speaker("cust-1", Role.CUSTOMER)

        def always_crash(self: AssignmentActor, agent_id: str, batch: Any) -> None:
            raise RuntimeError("an injected bug")

        real = AssignmentActor._sync_presence
        monkeypatch.setattr(AssignmentActor, "_sync_presence", always_crash)
        crashed_at = trio.current_time()
        await system.connect(Recorder("bob").session, Role.AGENT)  # crashes it, and every start
        await trio.sleep(16 + ASSIGNMENT_RETRY_SECONDS / 2)  # past the backoffs: given up
        assert not system.assignment_running
        assert system.route(chat_id) is not None
        sent = await system.send_message(chat_id, customer, client_msg_id="m1", content="hi")
        assert sent.message.seq == 1
        opened: list[str] = []
        async with trio.open_nursery() as nursery:
            # An ask made meanwhile waits in the mailbox, which outlives the instances.
            nursery.start_soon(lambda: _append(opened, open_chat(system, "cust-2")))
            await trio.sleep(1)
            assert opened == []
            monkeypatch.setattr(AssignmentActor, "_sync_presence", real)  # the bug is fixed
            with trio.fail_after(ASSIGNMENT_RETRY_SECONDS):
                await _running(system)
        assert system.assignment_running
        restarts = [a.restarts for a in system.actor_states() if a.name == "supervisor"]
        assert restarts[0] >= 6
        assert trio.current_time() - crashed_at < 16 + 2 * ASSIGNMENT_RETRY_SECONDS
        route = system.route(opened[0])
        assert route is not None
        assert route.agent_id == "ann"
        await check_store_agrees(system, memory)


async def _append(into: list[str], value: Awaitable[str]) -> None:
    into.append(await value)


async def _running(system: System) -> None:
    """Until the assignment actor answers again (its mailbox is in order)."""
    await system.snapshot()
