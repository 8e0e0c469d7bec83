"""Fixtures for the actor wiring tests: a running System on a store seeded with agents, and
sessions that record what the domain pushes to them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
import trio
import trio.testing

from actors import Event, Session, System, SystemConfig, open_system
from actors.events import ChatAssigned
from store import ActedBy, AgentStatus, MemoryStore, Role, Store, User, utcnow

E = TypeVar("E", bound=Event)

GRACE = 15.0
IDLE = 60.0
AGENTS = {"ann": 3, "bob": 2, "cy": 1}
_session_ids = itertools.count(1)


@dataclass(eq=False)
class Recorder:
    """A live connection that keeps every event and close it gets."""

    user_id: str
    events: list[Event] = field(default_factory=list)
    closed: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = Session(
            id=f"s{next(_session_ids)}",
            user_id=self.user_id,
            offer=self.events.append,
            close=lambda code, reason: self.closed.append((code, reason)),
        )

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    def assigned_chats(self) -> list[str]:
        return [event.chat.id for event in self.events if isinstance(event, ChatAssigned)]


async def seed_agents(store: Store) -> None:
    now = utcnow()
    for name, max_load in AGENTS.items():
        await store.create_user(
            User(
                id=name,
                email=f"{name}@example.com",
                name=name.title(),
                role=Role.AGENT,
                max_load=max_load,
                created_at=now,
                updated_at=now,
            )
        )


@pytest.fixture
async def store() -> MemoryStore:
    memory = MemoryStore()
    await seed_agents(memory)
    return memory


@pytest.fixture
async def system(store: MemoryStore) -> AsyncIterator[System]:
    config = SystemConfig(grace_period_seconds=GRACE, conversation_idle_seconds=IDLE)
    # Tests that wait out timers take `autojump_clock` (pytest-trio reads the clock from the
    # test's own arguments), so this bound is virtual time there and real time elsewhere.
    with trio.fail_after(120):
        async with open_system(store, config) as running:
            yield running


async def settle() -> None:
    """Let every actor handle what is in its mailbox."""
    await trio.testing.wait_all_tasks_blocked()


async def online(system: System, agent_id: str) -> Recorder:
    """Connect the agent and make them available."""
    recorder = Recorder(agent_id)
    await system.connect(recorder.session, Role.AGENT)
    await settle()
    await system.set_agent_status(
        agent_id, AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id=agent_id
    )
    return recorder
