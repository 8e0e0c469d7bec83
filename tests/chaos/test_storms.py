"""Concurrency storms against the real actor system, in virtual time.

Hypothesis draws a schedule: many operations (agents connecting, dropping, going away and
coming back, admins changing max loads, reassigning and closing chats, customers opening chats
and writing to parked ones, agents parking chats), each starting at a drawn moment, so dozens
overlap at the same virtual instant and interleave in the assignment actor's mailbox. After the
storm the checker looks only from outside the assignment actor:

- replaying the activity log in order, no assignment ever took an agent above their max load at
  that moment, and no chat ever had two agents;
- the log's final owners equal the store's and the assignment actor's snapshot;
- no chat was lost: every chat opened is resolved, owned, queued or parked;
- no chat waits while an eligible agent has room.

Each example runs in its own `trio.run` on a MockClock with autojump, so grace periods and
passivation cost no real time.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Speaker, System, SystemConfig, open_system
from router import RouterError
from store import (
    ActedBy,
    Activity,
    ActivityFilter,
    AgentStatus,
    ChatStatus,
    MemoryStore,
    Priority,
    Role,
    pages,
)
from tests.actors.conftest import AGENTS, Recorder, seed_agents
from tools.chaos_check import replay

GRACE = 5.0
CUSTOMERS = 30


@dataclass(frozen=True, slots=True)
class Op:
    at: float  # virtual seconds after the storm starts
    kind: str
    agent: str
    customer: int
    number: int


ops = st.builds(
    Op,
    at=st.sampled_from([0.0, 0.0, 0.0, 0.5, 1.0, 3.0, GRACE + 1.0]),
    kind=st.sampled_from(
        [
            "connect",
            "disconnect",
            "available",
            "away",
            "force_away",
            "max_load",
            "open",
            "open",
            "open",
            "open",
            "open",
            "open",
            "resolve",
            "park",
            "write",
            "reassign",
            "reassign",
            "reassign",
        ]
    ),
    agent=st.sampled_from(sorted(AGENTS)),
    customer=st.integers(0, CUSTOMERS - 1),
    number=st.integers(1, 3),
)


class Storm:
    def __init__(self, system: System) -> None:
        self.system = system
        self.sessions: dict[str, list[Recorder]] = {agent: [] for agent in AGENTS}
        self.opened: set[str] = set()

    async def run(self, op: Op) -> None:
        await trio.sleep(op.at)
        with suppress(RouterError):  # refusals are part of the storm; they must change nothing
            await self._apply(op)

    async def _apply(self, op: Op) -> None:
        system, agent = self.system, op.agent
        customer = f"customer-{op.customer}"
        match op.kind:
            case "connect":
                recorder = Recorder(agent)
                self.sessions[agent].append(recorder)
                await system.connect(recorder.session, Role.AGENT)
            case "disconnect":
                if self.sessions[agent]:
                    recorder = self.sessions[agent].pop()
                    await system.disconnect(recorder.session, Role.AGENT)
            case "available" | "away":
                status = AgentStatus(op.kind)
                await system.set_agent_status(agent, status, by=ActedBy.SELF, actor_id=agent)
            case "force_away":
                await system.set_agent_status(
                    agent, AgentStatus.AWAY, by=ActedBy.ADMIN, actor_id="admin"
                )
            case "max_load":
                await system.set_max_load(agent, op.number, actor_id="admin")
            case "open":
                priority = list(Priority)[op.number]
                opened = await system.open_chat(
                    customer, title="storm", description="", priority=priority
                )
                self.opened.add(opened.chat.id)
            case "resolve" | "park" | "write" | "reassign":
                chat_id = self._chat_of(op)
                if chat_id is None:
                    return
                if op.kind == "resolve":
                    await system.resolve_chat(chat_id, by=ActedBy.ADMIN, actor_id="admin")
                elif op.kind == "park":
                    route = system.route(chat_id)
                    owner = route.agent_id if route else None
                    await system.park_chat(chat_id, by=ActedBy.SELF, actor_id=owner)
                elif op.kind == "write":
                    await system.send_message(
                        chat_id,
                        Speaker(customer_id_of(system, chat_id) or customer, Role.CUSTOMER),
                        client_msg_id=f"{op.at}-{op.number}",
                        content="anyone?",
                    )
                else:
                    await system.reassign_chat(chat_id, agent, actor_id="admin")

    def _chat_of(self, op: Op) -> str | None:
        chats = sorted(self.opened)
        return chats[(op.customer * 7 + op.number) % len(chats)] if chats else None


def customer_id_of(system: System, chat_id: str) -> str | None:
    route = system.route(chat_id)
    return route.customer_id if route else None


async def storm(schedule: list[Op]) -> None:
    store = MemoryStore()
    await seed_agents(store)
    config = SystemConfig(grace_period_seconds=GRACE, conversation_idle_seconds=2.0)
    async with open_system(store, config) as system:
        running = Storm(system)
        for agent in AGENTS:  # everyone starts online; the storm takes them away and back
            await running.run(Op(0.0, "connect", agent, 0, 1))
            await running.run(Op(0.0, "available", agent, 0, 1))
        async with trio.open_nursery() as nursery:
            for op in schedule:
                nursery.start_soon(running.run, op)
        await trio.sleep(GRACE * 3)  # let grace timers and queue refreshes play out
        snapshot = await system.snapshot()
    log: list[Activity] = []
    async for entries in pages(
        lambda c: store.list_activity(ActivityFilter(), limit=500, cursor=c)
    ):
        log += entries
    replayed = replay(log, dict(AGENTS))
    assert replayed.broken == []
    owners = replayed.owners

    snapshot_owners = {
        chat_id: agent.agent_id for agent in snapshot.core.agents for chat_id in agent.chat_ids
    }
    assert sum(len(agent.chat_ids) for agent in snapshot.core.agents) == len(snapshot_owners)
    assert snapshot_owners == owners
    assert all(view.load == len(view.chat_ids) for view in snapshot.core.agents)
    stored_owners = {}
    for chat_id in running.opened:
        chat = await store.get_chat(chat_id)
        assert chat is not None
        if chat.status == ChatStatus.OPEN:
            stored_owners[chat_id] = chat.agent_id
    assert stored_owners == owners

    queued = {entry.chat_id for entry in snapshot.core.queue}
    resolved = set()
    for chat_id in running.opened:
        chat = await store.get_chat(chat_id)
        if chat is not None and chat.status == ChatStatus.RESOLVED:
            resolved.add(chat_id)
    accounted = queued | set(snapshot.core.parked) | set(owners) | resolved
    assert accounted == running.opened, "a chat was lost"

    eligible = [
        agent
        for agent in snapshot.core.agents
        if agent.status == AgentStatus.AVAILABLE
        and agent.connections
        and agent.load < agent.max_load
    ]
    assert not (queued and eligible), "chats wait while an agent has room"


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(ops, min_size=5, max_size=60))
def test_storms_never_double_assign_overshoot_or_lose_a_chat(schedule: list[Op]) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(storm, schedule, clock=clock)
