"""The AgentActor: started by an agent's first connection, owner of their sessions and their
grace timer, stopped when they are away and gone; and it never waits on the assignment actor.

On the autojump clock: grace periods take no real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import trio
import trio.testing

from actors import System, SystemConfig, open_system
from actors.activation import Activation
from actors.agent import Agents, agent_actor_name
from actors.assignment import AgentView
from actors.assignment_actor import AssignmentActor
from actors.events import AgentCard, AgentStatusEvent
from actors.messages import (
    AddAgent,
    AgentProfileChanged,
    AssignmentMessage,
    GraceExpired,
    PresenceChanged,
    RemoveAgent,
    SetAgentStatus,
)
from actors.presence import Presence
from router import Actor, HandlerCrashed, Refused, open_actor_system
from store import (
    ActedBy,
    AgentStatus,
    ChatStatus,
    MemoryStore,
    Priority,
    Role,
    StoreUnavailable,
    User,
    utcnow,
)
from tests.actors.conftest import GRACE, Recorder, online, seed_agents, settle


def _user(user_id: str, role: Role) -> User:
    return User(
        id=user_id,
        email=f"{user_id}@example.com",
        name=user_id.title(),
        role=role,
        max_load=2,
        created_at=utcnow(),
        updated_at=utcnow(),
    )


def running(system: System) -> set[str]:
    return {info.name for info in system.actor_states()}


async def open_chat(system: System, customer_id: str) -> str:
    opened = await system.open_chat(
        customer_id, title="Where is my parcel?", description="", priority=Priority.MEDIUM
    )
    return opened.chat.id


async def test_an_agents_first_connection_starts_their_actor_and_a_customers_none(
    system: System,
) -> None:
    customer = Recorder("cust-1")
    await system.connect(customer.session, Role.CUSTOMER)
    assert not {name for name in running(system) if name.startswith("agent:")}
    ann = Recorder("ann")
    await system.connect(ann.session, Role.AGENT)
    assert agent_actor_name("ann") in running(system)
    assert system.connections("ann") == 1
    assert system.connections("cust-1") == 1


async def test_an_away_agent_leaving_stops_their_actor_at_once(system: System) -> None:
    ann = Recorder("ann")  # seeded away
    await system.connect(ann.session, Role.AGENT)
    second = Recorder("ann")
    await system.connect(second.session, Role.AGENT)
    await system.disconnect(ann.session, Role.AGENT)
    await settle()
    assert agent_actor_name("ann") in running(system)  # a tab is still open
    await system.disconnect(second.session, Role.AGENT)
    await settle()
    assert agent_actor_name("ann") not in running(system)
    assert system.connections("ann") == 0


async def test_the_grace_timer_runs_in_the_agent_actor_which_stops_when_it_ends(
    system: System, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    ann = await online(system, "ann")
    await system.disconnect(ann.session, Role.AGENT)
    await trio.sleep(GRACE - 1)
    assert agent_actor_name("ann") in running(system)  # waiting out the grace period
    await trio.sleep(2)
    await settle()
    agent = await store.get_user("ann")
    assert agent is not None
    assert agent.status == AgentStatus.AWAY
    assert agent_actor_name("ann") not in running(system)


async def test_a_crash_of_the_agent_actor_keeps_the_grace_period_running(
    system: System,
    store: MemoryStore,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ann = await online(system, "ann")
    chat_id = await open_chat(system, "cust-1")
    await online(system, "bob")
    await system.disconnect(ann.session, Role.AGENT)
    await trio.sleep(GRACE / 2)

    # A bug in the agent actor while the grace period runs: it crashes and is restarted.
    real = Presence.detach

    def crash_once(presence: Presence, session: object) -> bool:
        monkeypatch.setattr(Presence, "detach", real)
        raise RuntimeError("injected")

    monkeypatch.setattr(Presence, "detach", crash_once)
    with pytest.raises(HandlerCrashed):
        await system.disconnect(Recorder("ann").session, Role.AGENT)
    await settle()
    assert agent_actor_name("ann") in running(system)

    # The grace period ends when it would have without the crash.
    await trio.sleep(GRACE / 2 - 1)
    assert system.route(chat_id).agent_id == "ann"  # type: ignore[union-attr]
    await trio.sleep(2)
    await settle()
    chat = await store.get_chat(chat_id)
    assert chat is not None
    assert (chat.status, chat.agent_id) == (ChatStatus.OPEN, "bob")
    agent = await store.get_user("ann")
    assert agent is not None
    assert agent.status == AgentStatus.AWAY


# --- the agent actor never waits on the assignment actor
# -------------------------------------------


@dataclass
class _StuckAssignmentActor(Actor[AssignmentMessage]):
    """An assignment actor that handles nothing until `go` is set; it sets every status asked."""

    go: trio.Event
    heard: list[AssignmentMessage] = field(default_factory=list)

    async def handle(self, message: AssignmentMessage) -> None:
        await self.go.wait()
        self.heard.append(message)
        match message:
            case SetAgentStatus(agent_id, status, _, _, reply):
                reply.send(AgentView(agent_id, status, 1, 0, 3, 0.0, ()))
            case AddAgent(_, _, reply) | RemoveAgent(_, reply):
                reply.send(None)
            case _:
                pass


async def test_a_full_assignment_actor_mailbox_delays_the_presence_tell_but_blocks_no_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    presence = Presence()
    stuck = _StuckAssignmentActor(trio.Event())
    async with open_actor_system() as actors:
        assignment_actor = await actors.spawn("supervisor", lambda: stuck, mailbox_size=1)
        agents = Agents(Activation(actors), presence, MemoryStore(), grace_period_seconds=GRACE)
        agents.bind(assignment_actor)
        tabs = [Recorder("ann") for _ in range(5)]
        with trio.fail_after(1):  # none of these waits for the stuck assignment actor
            for tab in tabs:
                await agents.attach(tab.session)
        assert presence.connections("ann") == 5
        stuck.go.set()
        await trio.sleep(1)
        await settle()
    # Told once per change the mailbox took, then again once it had room: the assignment actor's
    # last word on ann is after her fifth tab, so it reads 5 connections from the registry.
    assert stuck.heard
    assert all(message == PresenceChanged("ann") for message in stuck.heard)
    assert len(stuck.heard) == 3  # one handled, one in the mailbox, then the one told again


async def test_a_status_request_is_relayed_in_order_with_the_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    presence = Presence()
    stuck = _StuckAssignmentActor(trio.Event())
    answers: list[AgentView] = []
    async with open_actor_system() as actors, trio.open_nursery() as nursery:
        assignment_actor = await actors.spawn("supervisor", lambda: stuck, mailbox_size=1)
        agents = Agents(Activation(actors), presence, MemoryStore(), grace_period_seconds=GRACE)
        agents.bind(assignment_actor)
        first, second, third = Recorder("ann"), Recorder("ann"), Recorder("ann")
        # The first tell is taken (the assignment actor is stuck on it), the second fills its
        # mailbox.
        await agents.attach(first.session)
        await agents.attach(second.session)

        async def choose() -> None:
            answers.append(
                await agents.set_status(
                    "ann", AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id="ann"
                )
            )

        nursery.start_soon(choose)
        await settle()
        with trio.fail_after(1):  # the request waits for the assignment actor; the agent does not
            await agents.attach(third.session)
        assert answers == []
        stuck.go.set()
    kinds = [type(message).__name__ for message in stuck.heard]
    assert kinds == ["PresenceChanged", "PresenceChanged", "SetAgentStatus", "PresenceChanged"]
    assert [view.status for view in answers] == [AgentStatus.AVAILABLE]


async def test_status_requests_go_through_the_agent_actor(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    ann = await online(system, "ann")  # connects, then asks to be available
    assert agent_actor_name("ann") in running(system)
    assert [event.status for event in ann.of(AgentStatusEvent)] == [AgentStatus.AVAILABLE]
    # An admin forcing an agent in their grace period away: their actor relays it. Its timer
    # then ends a period the assignment actor has moved past (changing nothing), and it stops.
    await system.disconnect(ann.session, Role.AGENT)
    view = await system.set_agent_status("ann", AgentStatus.AWAY, by=ActedBy.ADMIN, actor_id="root")
    assert view.status == AgentStatus.AWAY
    await trio.sleep(GRACE + 1)
    await settle()
    assert agent_actor_name("ann") not in running(system)
    # bob is seeded away and not connected: a request for him starts his actor, then stops it.
    view = await system.set_agent_status("bob", AgentStatus.AWAY, by=ActedBy.ADMIN, actor_id="root")
    assert view.status == AgentStatus.AWAY
    await settle()
    assert agent_actor_name("bob") not in running(system)
    with pytest.raises(Refused):
        await system.set_agent_status("nobody", AgentStatus.AWAY, by=ActedBy.ADMIN, actor_id="root")


async def test_an_agents_lifecycle_is_relayed_by_their_actor_in_the_order_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stuck = _StuckAssignmentActor(trio.Event())
    async with open_actor_system() as actors, trio.open_nursery() as nursery:
        assignment_actor = await actors.spawn("supervisor", lambda: stuck, mailbox_size=1)
        store = MemoryStore()
        dan = await store.create_user(_user("dan", Role.USER))
        agents = Agents(Activation(actors), Presence(), store, grace_period_seconds=GRACE)
        agents.bind(assignment_actor)
        asks = [
            lambda: agents.enroll("dan", 2),
            lambda: agents.set_status("dan", AgentStatus.AWAY, by=ActedBy.ADMIN, actor_id="root"),
            lambda: agents.edit_profile(replace(dan, name="Dan Lee")),
            lambda: agents.dismiss("dan"),
        ]
        for each in asks:
            nursery.start_soon(each)
            await settle()
        stuck.go.set()
    assert [type(message).__name__ for message in stuck.heard] == [
        "AddAgent",
        "SetAgentStatus",
        "AgentProfileChanged",
        "RemoveAgent",
    ]
    told = [m for m in stuck.heard if not isinstance(m, AgentProfileChanged)]
    assert all(getattr(message, "agent_id", None) == "dan" for message in told)
    assert stuck.heard[2] == AgentProfileChanged(AgentCard("dan", "Dan Lee", "dan@example.com"))


async def test_an_approved_then_removed_user_passes_through_their_actor(
    system: System, store: MemoryStore
) -> None:
    await store.create_user(_user("dan", Role.USER))
    await system.add_agent("dan", 2)
    await settle()
    assert agent_actor_name("dan") not in running(system)  # relayed, then stopped
    stored = await store.get_user("dan")
    assert stored is not None
    assert stored.role == Role.AGENT
    dan = await online(system, "dan")
    await system.remove_agent("dan")
    stored = await store.get_user("dan")
    assert stored is not None
    assert (stored.role, stored.status) == (Role.USER, AgentStatus.AWAY)
    assert dan.of(AgentStatusEvent)[-1].status == AgentStatus.AWAY


async def test_a_grace_period_ended_for_an_earlier_assignment_actor_changes_nothing(
    system: System,
    store: MemoryStore,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The assignment actor restarted numbers grace periods afresh: the end of one that an
    earlier incarnation started (its GraceExpired waiting in the mailbox through the restart)
    must not end the one the restart started with the same token."""
    started: list[tuple[str, int, int]] = []
    restarted = trio.Event()
    real_start = Agents.start_grace_period

    async def recorded(agents: Agents, agent_id: str, token: int, epoch: int) -> None:
        started.append((agent_id, token, epoch))
        if len(started) == 2:
            restarted.set()
        await real_start(agents, agent_id, token, epoch)

    monkeypatch.setattr(Agents, "start_grace_period", recorded)
    ann = await online(system, "ann")
    chat_id = await open_chat(system, "cust-1")
    await online(system, "bob")
    await system.disconnect(ann.session, Role.AGENT)
    await settle()
    (first,) = started

    # A bug crashes the assignment actor; its restart starts ann's grace period again.
    real_sync = AssignmentActor._sync_presence

    def crash_once(actor: AssignmentActor, agent_id: str, batch: Any) -> None:
        monkeypatch.setattr(AssignmentActor, "_sync_presence", real_sync)
        raise RuntimeError("an injected bug")

    monkeypatch.setattr(AssignmentActor, "_sync_presence", crash_once)
    await system.connect(Recorder("bob").session, Role.AGENT)
    with trio.fail_after(GRACE / 2):  # the restart's backoff runs on the clock
        await restarted.wait()
    again = started[1]
    assert (again[0], again[1]) == (first[0], first[1])  # the same agent and token...
    assert again[2] != first[2]  # ...of another incarnation

    # The first incarnation's grace period ends now: told with its own epoch, it is stale.
    stale = GraceExpired("ann", first[1], first[2])
    await system._assignment_actor.tell(stale)
    await settle()
    assert system.route(chat_id).agent_id == "ann"  # type: ignore[union-attr]
    agent = await store.get_user("ann")
    assert agent is not None
    assert agent.status == AgentStatus.AVAILABLE


class _WatchedStore(MemoryStore):
    """Records which actors ran while a user was written, and fails the writes it is told to."""

    def __init__(self) -> None:
        super().__init__()
        self.system: System | None = None
        self.running_at_write: list[set[str]] = []
        self.fail_with: Exception | None = None

    async def update_user(self, user: User) -> User:
        assert self.system is not None
        self.running_at_write.append(running(self.system))
        if self.fail_with is not None:
            raise self.fail_with
        return await super().update_user(user)


async def test_an_offline_agents_profile_is_written_by_their_actor_started_for_it() -> None:
    store = _WatchedStore()
    await seed_agents(store)
    async with open_system(store, SystemConfig(grace_period_seconds=GRACE)) as system:
        store.system = system
        ann = await store.get_user("ann")
        assert ann is not None
        stored = await system.edit_agent_profile(replace(ann, name="Ann Lee", phone="+4412345"))
        assert (stored.name, stored.phone) == ("Ann Lee", "+4412345")
        assert await store.get_user("ann") == stored
        [at_write] = store.running_at_write
        assert agent_actor_name("ann") in at_write
        await settle()
        assert agent_actor_name("ann") not in running(system)  # offline: wrote, then stopped


async def test_a_profile_write_that_fails_changes_nothing_and_the_next_one_is_stored() -> None:
    store = _WatchedStore()
    await seed_agents(store)
    await store.create_user(_user("dan", Role.USER))
    async with open_system(store, SystemConfig(grace_period_seconds=GRACE)) as system:
        store.system = system
        await online(system, "ann")
        before = await store.get_user("ann")
        assert before is not None
        store.fail_with = StoreUnavailable("the database is down")
        with pytest.raises(StoreUnavailable):
            await system.edit_agent_profile(replace(before, name="Ann Lee"))
        assert await store.get_user("ann") == before
        store.fail_with = None
        with pytest.raises(Refused) as taken:  # crosses the cluster bus as a refusal
            await system.edit_agent_profile(replace(before, email="dan@example.com"))
        assert taken.value.code == "email_taken"
        assert await store.get_user("ann") == before
        stored = await system.edit_agent_profile(replace(before, name="Ann Lee"))
        assert stored.name == "Ann Lee"
        assert agent_actor_name("ann") in running(system)  # her tab is open: it went on
