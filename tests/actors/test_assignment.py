"""AssignmentCore, event by event: the effects each event returns and each refusal.

Covers agents joining, connecting, choosing a status, changing max load, the grace period and
removal; chats opening, being assigned, set pending, written to again, resolved and reassigned;
the starvation guard; restoring after a restart; snapshots; and that check_invariants can fail.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actors.assignment import (
    AgentStatusChanged,
    AgentView,
    Assigned,
    AssignmentCore,
    ChatStatusChanged,
    Effect,
    MaxLoadChanged,
    QueueChanged,
    StartGrace,
    Unassigned,
    check_invariants,
)
from router import Refused
from store._records import ActedBy, AgentStatus, ChatStatus, Priority

AVAILABLE, BUSY, AWAY = AgentStatus.AVAILABLE, AgentStatus.BUSY, AgentStatus.AWAY
NEW, OPEN, PENDING, RESOLVED = (
    ChatStatus.NEW,
    ChatStatus.OPEN,
    ChatStatus.PENDING,
    ChatStatus.RESOLVED,
)
SELF, SYSTEM, ADMIN = ActedBy.SELF, ActedBy.SYSTEM, ActedBy.ADMIN
MEDIUM = Priority.MEDIUM


def ready(core: AssignmentCore, agent_id: str, max_load: int, now: float = 0.0) -> None:
    """Add an agent, connect them and make them available."""
    core.agent_added(agent_id, max_load=max_load, now=now)
    core.agent_connected(agent_id, now)
    core.set_status(agent_id, AVAILABLE, by=SELF, now=now)


def agent(core: AssignmentCore, agent_id: str, now: float = 0.0) -> AgentView:
    return next(view for view in core.snapshot(now).agents if view.agent_id == agent_id)


def queue(core: AssignmentCore, now: float = 0.0) -> list[str]:
    return [entry.chat_id for entry in core.snapshot(now).queue]


def assignments(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.chat_id, e.agent_id) for e in effects if isinstance(e, Assigned)]


def assert_sound(core: AssignmentCore) -> None:
    assert check_invariants(core) == []


# --- agents --------------------------------------------------------------------------------------


def test_new_agent_is_away_offline_and_not_assigned_anything() -> None:
    core = AssignmentCore()
    assert core.agent_added("ann", max_load=3, now=0.0) == []
    assert core.chat_opened("c1", priority=MEDIUM, now=1.0) == [QueueChanged()]
    assert core.agent_connected("ann", 2.0) == []
    assert agent(core, "ann") == AgentView("ann", AWAY, 1, 0, 3, 0.0, ())
    assert queue(core) == ["c1"]
    assert_sound(core)


def test_adding_refusals() -> None:
    core = AssignmentCore()
    core.agent_added("ann", max_load=3, now=0.0)
    with pytest.raises(Refused) as exists:
        core.agent_added("ann", max_load=2, now=1.0)
    assert exists.value.code == "agent_exists"
    with pytest.raises(Refused) as invalid:
        core.agent_added("bob", max_load=0, now=1.0)
    assert invalid.value.code == "invalid_max_load"
    assert [view.agent_id for view in core.snapshot(1.0).agents] == ["ann"]


def test_becoming_available_assigns_the_waiting_chat() -> None:
    core = AssignmentCore()
    core.agent_added("ann", max_load=3, now=0.0)
    core.agent_connected("ann", 0.0)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    effects = core.set_status("ann", AVAILABLE, by=SELF, now=5.0)
    assert effects == [
        AgentStatusChanged("ann", AWAY, AVAILABLE, SELF, "set by the agent"),
        Assigned("c1", "ann", None, "least loaded (0/3); candidates: ann 0/3 idle 0s", SYSTEM),
        ChatStatusChanged("c1", NEW, OPEN, SYSTEM, "assigned to ann"),
        QueueChanged(),
    ]
    assert agent(core, "ann", 5.0) == AgentView("ann", AVAILABLE, 1, 1, 3, 5.0, ("c1",))
    assert_sound(core)


def test_connecting_assigns_the_waiting_chat_and_an_offline_available_agent_gets_a_timer() -> None:
    core = AssignmentCore()
    core.agent_added("ann", max_load=3, now=0.0)
    # Available without a connection: the grace timer decides whether they are really there.
    assert core.set_status("ann", AVAILABLE, by=SELF, now=0.0) == [
        AgentStatusChanged("ann", AWAY, AVAILABLE, SELF, "set by the agent"),
        StartGrace("ann", 1),
    ]
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    assert queue(core) == ["c1"]
    assert assignments(core.agent_connected("ann", 2.0)) == [("c1", "ann")]
    assert core.grace_expired("ann", 1, 15.0) == []
    assert agent(core, "ann").status == AVAILABLE
    assert_sound(core)


def test_least_loaded_then_idle_longest_with_the_reason() -> None:
    core = AssignmentCore()
    ready(core, "cy", 3, now=0.0)
    ready(core, "bob", 3, now=10.0)
    ready(core, "ann", 3, now=20.0)
    assert assignments(core.chat_opened("c1", priority=MEDIUM, now=30.0)) == [("c1", "cy")]
    effects = core.chat_opened("c2", priority=MEDIUM, now=40.0)
    assert effects[0] == Assigned(
        "c2",
        "bob",
        None,
        "least loaded (0/3), idle longest; candidates: bob 0/3 idle 30s, ann 0/3 idle 20s, cy 1/3",
        SYSTEM,
    )
    assert assignments(core.chat_opened("c3", priority=MEDIUM, now=50.0)) == [("c3", "ann")]
    # All at 1/3 now; cy's last assignment is the oldest.
    assert assignments(core.chat_opened("c4", priority=MEDIUM, now=60.0)) == [("c4", "cy")]
    assert_sound(core)


def test_busy_at_max_load_and_available_again_below_it() -> None:
    core = AssignmentCore()
    ready(core, "ann", 1)
    effects = core.chat_opened("c1", priority=MEDIUM, now=1.0)
    assert effects[-2:] == [
        AgentStatusChanged("ann", AVAILABLE, BUSY, SYSTEM, "at max load (1/1)"),
        QueueChanged(),
    ]
    assert core.chat_opened("c2", priority=MEDIUM, now=2.0) == [QueueChanged()]
    effects = core.chat_resolved("c1", by=SELF, now=3.0)
    assert effects == [
        ChatStatusChanged("c1", OPEN, RESOLVED, SELF, "resolved by self"),
        AgentStatusChanged("ann", BUSY, AVAILABLE, SYSTEM, "below max load (0/1)"),
        Assigned("c2", "ann", None, "least loaded (0/1); candidates: ann 0/1 idle 0s", SYSTEM),
        ChatStatusChanged("c2", NEW, OPEN, SYSTEM, "assigned to ann"),
        AgentStatusChanged("ann", AVAILABLE, BUSY, SYSTEM, "at max load (1/1)"),
        QueueChanged(),
    ]
    assert_sound(core)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda core: core.set_status("ann", BUSY, by=SELF, now=1.0), "status_not_settable"),
        (lambda core: core.set_status("zed", AWAY, by=ADMIN, now=1.0), "agent_not_found"),
        (lambda core: core.set_max_load("ann", 0, by=ADMIN, now=1.0), "invalid_max_load"),
        (lambda core: core.set_max_load("zed", 2, by=ADMIN, now=1.0), "agent_not_found"),
    ],
)
def test_agent_refusals_change_nothing(
    call: Callable[[AssignmentCore], list[Effect]], code: str
) -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=0.5)
    before = core.snapshot(1.0)
    with pytest.raises(Refused) as refused:
        call(core)
    assert refused.value.code == code
    assert core.snapshot(1.0) == before


# --- going away and the grace period -------------------------------------------------------------


def test_going_away_requeues_open_chats_at_the_front_and_never_back() -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.chat_opened("c2", priority=MEDIUM, now=2.0)
    core.chat_opened("c3", priority=Priority.URGENT, now=3.0)
    core.agent_added("bob", max_load=1, now=3.0)
    core.agent_connected("bob", 3.0)
    assert queue(core, 3.0) == ["c3"]
    effects = core.set_status("ann", AWAY, by=SELF, now=4.0)
    reason = "agent ann away: set by the agent"
    assert effects == [
        AgentStatusChanged("ann", BUSY, AWAY, SELF, "set by the agent"),
        Unassigned("c1", "ann", reason, SYSTEM),
        ChatStatusChanged("c1", OPEN, PENDING, SYSTEM, reason),
        Unassigned("c2", "ann", reason, SYSTEM),
        ChatStatusChanged("c2", OPEN, PENDING, SYSTEM, reason),
        QueueChanged(),
    ]
    snapshot = core.snapshot(4.0)
    assert [(e.chat_id, e.status, e.requeued) for e in snapshot.queue] == [
        ("c1", PENDING, True),
        ("c2", PENDING, True),
        ("c3", NEW, False),
    ]
    # Re-queued chats are served first, even before an urgent new chat.
    effects = core.set_status("bob", AVAILABLE, by=SELF, now=5.0)
    assert assignments(effects) == [("c1", "bob")]
    assert ChatStatusChanged("c1", PENDING, OPEN, SYSTEM, "assigned to bob") in effects
    assert queue(core, 5.0) == ["c2", "c3"]
    assert_sound(core)


def test_going_away_reassigns_at_once_where_capacity_exists() -> None:
    core = AssignmentCore()
    ready(core, "ann", 3)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.chat_opened("c2", priority=MEDIUM, now=2.0)
    ready(core, "bob", 1, now=3.0)
    ready(core, "cy", 3, now=3.0)
    effects = core.set_status("ann", AWAY, by=ADMIN, now=4.0)
    assert effects[0] == AgentStatusChanged("ann", AVAILABLE, AWAY, ADMIN, "set by an admin")
    assert sorted(assignments(effects)) == [("c1", "bob"), ("c2", "cy")]
    assert effects[-1] == QueueChanged()
    assert agent(core, "ann").load == 0
    assert_sound(core)


def test_reconnecting_within_the_grace_period_changes_nothing() -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.agent_connected("ann", 1.0)  # a second tab
    before = core.snapshot(4.0)
    assert core.agent_disconnected("ann", 2.0) == []
    assert core.agent_disconnected("ann", 3.0) == [StartGrace("ann", 1)]
    assert core.agent_connected("ann", 4.0) == []
    assert core.grace_expired("ann", 1, 18.0) == []
    assert core.agent_connected("ann", 18.0) == []
    assert core.snapshot(4.0) == before
    assert core.agent_disconnected("ann", 20.0) == []
    assert core.agent_disconnected("ann", 20.0) == [StartGrace("ann", 3)]
    assert core.grace_expired("ann", 1, 35.0) == []
    assert agent(core, "ann").chat_ids == ("c1",)
    assert_sound(core)


def test_grace_expiry_takes_the_agent_away_and_requeues_their_chats() -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    ready(core, "bob", 2, now=1.0)
    (grace,) = core.agent_disconnected("ann", 2.0)
    assert isinstance(grace, StartGrace)
    effects = core.grace_expired("ann", grace.token, 17.0)
    reason = "agent ann away: disconnected for grace period"
    assert effects[:3] == [
        AgentStatusChanged("ann", AVAILABLE, AWAY, SYSTEM, "disconnected for grace period"),
        Unassigned("c1", "ann", reason, SYSTEM),
        ChatStatusChanged("c1", OPEN, PENDING, SYSTEM, reason),
    ]
    assert assignments(effects) == [("c1", "bob")]
    assert core.grace_expired("ann", grace.token, 18.0) == []
    assert agent(core, "ann").status == AWAY
    assert_sound(core)


def test_events_for_unknown_agents_are_ignored() -> None:
    core = AssignmentCore()
    assert core.agent_connected("zed", 0.0) == []
    assert core.agent_disconnected("zed", 0.0) == []
    assert core.grace_expired("zed", 1, 0.0) == []
    assert core.agent_removed("zed", 0.0) == []
    assert core.snapshot(0.0).agents == ()


def test_agent_removed_requeues_their_chats_and_is_forgotten() -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    ready(core, "bob", 2, now=2.0)
    effects = core.agent_removed("ann", 3.0)
    assert effects[0] == AgentStatusChanged("ann", AVAILABLE, AWAY, ADMIN, "agent removed")
    assert assignments(effects) == [("c1", "bob")]
    assert [view.agent_id for view in core.snapshot(3.0).agents] == ["bob"]
    assert core.agent_disconnected("ann", 4.0) == []
    with pytest.raises(Refused) as refused:
        core.set_status("ann", AVAILABLE, by=SELF, now=4.0)
    assert refused.value.code == "agent_not_found"
    assert_sound(core)


# --- max load ------------------------------------------------------------------------------------


def test_raising_max_load_drains_the_queue() -> None:
    core = AssignmentCore()
    ready(core, "ann", 1)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.chat_opened("c2", priority=MEDIUM, now=2.0)
    effects = core.set_max_load("ann", 3, by=ADMIN, now=3.0)
    assert effects[:2] == [
        MaxLoadChanged("ann", 1, 3, ADMIN),
        AgentStatusChanged("ann", BUSY, AVAILABLE, SYSTEM, "below max load (1/3)"),
    ]
    assert assignments(effects) == [("c2", "ann")]
    assert core.set_max_load("ann", 3, by=ADMIN, now=4.0) == []
    assert_sound(core)


def test_lowering_max_load_reassigns_nothing_and_assigns_nothing_new() -> None:
    core = AssignmentCore()
    ready(core, "ann", 3)
    for n in range(3):
        core.chat_opened(f"c{n}", priority=MEDIUM, now=float(n))
    effects = core.set_max_load("ann", 1, by=ADMIN, now=5.0)
    assert effects == [MaxLoadChanged("ann", 3, 1, ADMIN)]  # already busy at 3/3
    assert agent(core, "ann").chat_ids == ("c0", "c1", "c2")
    core.chat_opened("c3", priority=MEDIUM, now=6.0)
    assert core.chat_resolved("c0", by=SELF, now=7.0) == [
        ChatStatusChanged("c0", OPEN, RESOLVED, SELF, "resolved by self")
    ]
    core.chat_resolved("c1", by=SELF, now=8.0)
    assert queue(core, 8.0) == ["c3"]
    assert_sound(core)
    effects = core.chat_resolved("c2", by=SELF, now=9.0)
    assert assignments(effects) == [("c3", "ann")]
    assert_sound(core)


def test_lowering_max_load_to_the_load_shows_busy() -> None:
    core = AssignmentCore()
    ready(core, "ann", 3)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    assert core.set_max_load("ann", 1, by=ADMIN, now=2.0) == [
        MaxLoadChanged("ann", 3, 1, ADMIN),
        AgentStatusChanged("ann", AVAILABLE, BUSY, SYSTEM, "at max load (1/1)"),
    ]
    assert_sound(core)


# --- chats ---------------------------------------------------------------------------------------


def test_chat_opened_twice_is_refused() -> None:
    core = AssignmentCore()
    core.chat_opened("c1", priority=MEDIUM, now=0.0)
    with pytest.raises(Refused) as refused:
        core.chat_opened("c1", priority=Priority.HIGH, now=1.0)
    assert refused.value.code == "chat_exists"
    assert [e.priority for e in core.snapshot(1.0).queue] == [MEDIUM]


def test_queue_serves_priority_then_arrival() -> None:
    core = AssignmentCore()
    core.chat_opened("low", priority=Priority.LOW, now=0.0)
    core.chat_opened("m1", priority=MEDIUM, now=1.0)
    core.chat_opened("urgent", priority=Priority.URGENT, now=2.0)
    core.chat_opened("m2", priority=MEDIUM, now=3.0)
    core.chat_opened("high", priority=Priority.HIGH, now=4.0)
    assert queue(core, 5.0) == ["urgent", "high", "m1", "m2", "low"]
    core.agent_added("ann", max_load=5, now=5.0)
    core.agent_connected("ann", 5.0)
    effects = core.set_status("ann", AVAILABLE, by=SELF, now=5.0)
    assert [chat for chat, _ in assignments(effects)] == ["urgent", "high", "m1", "m2", "low"]


def test_starvation_guard_serves_an_old_low_chat_before_new_high_ones() -> None:
    core = AssignmentCore(starvation_after=120.0)
    ready(core, "ann", 1)
    core.chat_opened("busy", priority=MEDIUM, now=0.0)
    core.chat_opened("low", priority=Priority.LOW, now=0.0)
    core.chat_opened("h1", priority=Priority.HIGH, now=10.0)
    assert assignments(core.chat_resolved("busy", by=SELF, now=100.0)) == [("h1", "ann")]
    core.chat_opened("h2", priority=Priority.HIGH, now=200.0)
    # Waiting 250 s, low is promoted twice; h2 has not waited a full period yet.
    snapshot = core.snapshot(250.0)
    assert [(e.chat_id, e.effective_priority) for e in snapshot.queue] == [
        ("low", Priority.HIGH),
        ("h2", Priority.HIGH),
    ]
    assert assignments(core.chat_resolved("h1", by=SELF, now=250.0)) == [("low", "ann")]
    assert_sound(core)


def test_parking_frees_capacity_and_the_customer_writing_queues_it_again() -> None:
    core = AssignmentCore()
    ready(core, "ann", 1)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.chat_opened("c2", priority=MEDIUM, now=2.0)
    effects = core.chat_parked("c1", by=SELF, now=3.0)
    reason = "waiting for the customer"
    assert effects[:3] == [
        ChatStatusChanged("c1", OPEN, PENDING, SELF, reason),
        Unassigned("c1", "ann", reason, SELF),
        AgentStatusChanged("ann", BUSY, AVAILABLE, SYSTEM, "below max load (0/1)"),
    ]
    assert assignments(effects) == [("c2", "ann")]
    snapshot = core.snapshot(3.0)
    assert snapshot.parked == ("c1",)
    assert snapshot.queue == ()
    assert core.customer_wrote("c1", 4.0) == [QueueChanged()]
    assert [(e.chat_id, e.status) for e in core.snapshot(4.0).queue] == [("c1", PENDING)]
    assert core.customer_wrote("c1", 5.0) == []  # already queued
    effects = core.chat_resolved("c2", by=SELF, now=6.0)
    assert assignments(effects) == [("c1", "ann")]
    assert ChatStatusChanged("c1", PENDING, OPEN, SYSTEM, "assigned to ann") in effects
    assert core.customer_wrote("c1", 7.0) == []  # open: nothing to do
    assert core.customer_wrote("nope", 7.0) == []
    assert_sound(core)


def test_only_an_open_chat_can_be_parked() -> None:
    core = AssignmentCore()
    core.chat_opened("c1", priority=MEDIUM, now=0.0)
    with pytest.raises(Refused) as waiting:
        core.chat_parked("c1", by=SELF, now=1.0)
    assert waiting.value.code == "chat_not_open"
    with pytest.raises(Refused) as unknown:
        core.chat_parked("nope", by=SELF, now=1.0)
    assert unknown.value.code == "chat_not_active"
    assert queue(core) == ["c1"]


def test_an_admin_sets_a_waiting_chat_pending_and_it_waits_for_its_customer() -> None:
    core = AssignmentCore()
    core.chat_opened("c1", priority=MEDIUM, now=0.0)
    assert core.chat_parked("c1", by=ADMIN, now=1.0) == [
        ChatStatusChanged("c1", NEW, PENDING, ADMIN, "waiting for the customer"),
        QueueChanged(),
    ]
    assert core.snapshot(1.0).parked == ("c1",)
    assert queue(core) == []
    assert core.chat_parked("c1", by=ADMIN, now=2.0) == []  # pending already: nothing changes
    # An agent who becomes available does not get it; the customer writing queues it again.
    ready(core, "ann", 1, now=2.0)
    assert agent(core, "ann").load == 0
    assert assignments(core.customer_wrote("c1", 3.0)) == [("c1", "ann")]
    assert_sound(core)


def test_resolving_from_each_active_state() -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("open", priority=MEDIUM, now=0.0)
    core.chat_opened("parked", priority=MEDIUM, now=0.0)
    core.chat_parked("parked", by=SELF, now=1.0)
    core.set_max_load("ann", 1, by=ADMIN, now=1.0)
    core.chat_opened("new", priority=MEDIUM, now=2.0)
    assert core.chat_resolved("new", by=ADMIN, now=3.0) == [
        ChatStatusChanged("new", NEW, RESOLVED, ADMIN, "resolved by admin"),
        QueueChanged(),
    ]
    assert core.chat_resolved("parked", by=ADMIN, now=3.0) == [
        ChatStatusChanged("parked", PENDING, RESOLVED, ADMIN, "resolved by admin"),
    ]
    core.chat_resolved("open", by=SELF, now=4.0)
    with pytest.raises(Refused) as again:
        core.chat_resolved("open", by=SELF, now=5.0)
    assert again.value.code == "chat_not_active"
    assert agent(core, "ann").load == 0
    assert core.snapshot(5.0).parked == ()
    assert_sound(core)


# --- admin reassignment --------------------------------------------------------------------------


def reassign_setup() -> AssignmentCore:
    """ann has c1 and room; bob is at max with c2; cy is away; dee is offline; c3 waits."""
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    ready(core, "bob", 1, now=2.0)
    core.chat_opened("c2", priority=MEDIUM, now=3.0)
    core.chat_opened("c3", priority=MEDIUM, now=3.0)  # ann is at 2/2 now
    core.chat_opened("c4", priority=MEDIUM, now=4.0)
    core.chat_resolved("c3", by=SELF, now=4.5)  # ann gets c4
    core.chat_opened("c5", priority=MEDIUM, now=5.0)
    core.agent_added("cy", max_load=3, now=5.0)
    core.agent_connected("cy", 5.0)
    core.agent_added("dee", max_load=3, now=5.0)
    core.set_status("dee", AVAILABLE, by=SELF, now=5.0)
    return core


@pytest.mark.parametrize(
    ("chat_id", "agent_id", "code"),
    [
        ("nope", "ann", "chat_not_active"),
        ("c3", "ann", "chat_not_active"),  # resolved
        ("c5", "zed", "agent_not_found"),
        ("c5", "cy", "agent_away"),
        ("c5", "dee", "agent_offline"),
        ("c5", "bob", "agent_at_max_load"),
        ("c2", "bob", "already_assigned"),
    ],
)
def test_reassign_refusals_change_nothing(chat_id: str, agent_id: str, code: str) -> None:
    core = reassign_setup()
    before = core.snapshot(6.0)
    assert [view.load for view in before.agents] == [2, 1, 0, 0]
    assert queue(core, 6.0) == ["c5"]
    with pytest.raises(Refused) as refused:
        core.reassign(chat_id, agent_id, by=ADMIN, now=6.0)
    assert refused.value.code == code
    assert refused.value.message
    assert core.snapshot(6.0) == before
    assert_sound(core)


def test_reassigning_an_open_chat_frees_the_previous_agent() -> None:
    core = AssignmentCore()
    ready(core, "ann", 1)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    ready(core, "bob", 2, now=2.0)
    core.chat_opened("c2", priority=MEDIUM, now=3.0)
    effects = core.reassign("c1", "bob", by=ADMIN, now=4.0)
    assert effects == [
        Assigned("c1", "bob", "ann", "reassigned by admin", ADMIN),
        AgentStatusChanged("bob", AVAILABLE, BUSY, SYSTEM, "at max load (2/2)"),
        AgentStatusChanged("ann", BUSY, AVAILABLE, SYSTEM, "below max load (0/1)"),
    ]
    assert agent(core, "bob").chat_ids == ("c2", "c1")
    # Freed, ann takes the next chat.
    assert assignments(core.chat_opened("c3", priority=MEDIUM, now=5.0)) == [("c3", "ann")]
    assert_sound(core)


def test_assigning_a_chat_set_pending_reopens_it() -> None:
    core = AssignmentCore()
    ready(core, "ann", 2)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.chat_parked("c1", by=SELF, now=2.0)
    effects = core.reassign("c1", "ann", by=ADMIN, now=3.0)
    assert effects == [
        Assigned("c1", "ann", None, "assigned by admin", ADMIN),
        ChatStatusChanged("c1", PENDING, OPEN, ADMIN, "assigned to ann"),
    ]
    assert core.snapshot(3.0).parked == ()
    assert_sound(core)


# --- restoring -----------------------------------------------------------------------------------


def test_restore_corrects_state_starts_grace_timers_and_queues_in_waiting_order() -> None:
    core = AssignmentCore()
    core.load_agent("ann", status=BUSY, max_load=3, idle_since=5.0)
    core.load_agent("bob", status=AVAILABLE, max_load=1, idle_since=7.0)
    core.load_agent("cy", status=AWAY, max_load=2, idle_since=1.0)
    core.load_chat("a1", status=OPEN, priority=MEDIUM, agent_id="ann", waiting_since=None)
    core.load_chat("b1", status=OPEN, priority=MEDIUM, agent_id="bob", waiting_since=None)
    core.load_chat("b2", status=OPEN, priority=MEDIUM, agent_id="bob", waiting_since=None)
    core.load_chat("lost", status=OPEN, priority=Priority.LOW, agent_id="cy", waiting_since=None)
    core.load_chat("later", status=NEW, priority=MEDIUM, agent_id=None, waiting_since=50.0)
    core.load_chat("sooner", status=NEW, priority=MEDIUM, agent_id=None, waiting_since=40.0)
    core.load_chat("requeued", status=PENDING, priority=MEDIUM, agent_id=None, waiting_since=60.0)
    core.load_chat("parked", status=PENDING, priority=MEDIUM, agent_id="ann", waiting_since=None)
    core.load_chat("done", status=RESOLVED, priority=MEDIUM, agent_id="ann", waiting_since=None)
    effects = core.drain(100.0)
    lost = "restored without an available agent"
    assert effects == [
        AgentStatusChanged("ann", BUSY, AVAILABLE, SYSTEM, "below max load (1/3)"),
        StartGrace("ann", 1),
        AgentStatusChanged("bob", AVAILABLE, BUSY, SYSTEM, "at max load (2/1)"),
        StartGrace("bob", 1),
        Unassigned("lost", "cy", lost, SYSTEM),
        ChatStatusChanged("lost", OPEN, PENDING, SYSTEM, lost),
        QueueChanged(),
    ]
    snapshot = core.snapshot(100.0)
    assert [(e.chat_id, e.requeued) for e in snapshot.queue] == [
        ("requeued", True),
        ("lost", True),
        ("sooner", False),
        ("later", False),
    ]
    assert snapshot.parked == ("parked",)
    assert [(view.agent_id, view.status, view.load) for view in snapshot.agents] == [
        ("ann", AVAILABLE, 1),
        ("bob", BUSY, 2),  # over max: kept, nothing new until below it
        ("cy", AWAY, 0),
    ]
    assert_sound(core)
    effects = core.agent_connected("ann", 101.0)
    assert assignments(effects) == [("requeued", "ann"), ("lost", "ann")]
    assert core.grace_expired("ann", 1, 115.0) == []
    assert_sound(core)


def test_restore_refuses_duplicates() -> None:
    core = AssignmentCore()
    core.load_agent("ann", status=AWAY, max_load=3, idle_since=0.0)
    core.load_chat("c1", status=NEW, priority=MEDIUM, agent_id=None, waiting_since=0.0)
    with pytest.raises(Refused):
        core.load_agent("ann", status=AWAY, max_load=3, idle_since=0.0)
    with pytest.raises(Refused):
        core.load_chat("c1", status=NEW, priority=MEDIUM, agent_id=None, waiting_since=0.0)
    assert core.drain(1.0) == [QueueChanged()]
    assert queue(core, 1.0) == ["c1"]


# --- snapshot and the invariant checker ----------------------------------------------------------


def test_snapshot_gives_positions_and_counts_waiting_chats() -> None:
    core = AssignmentCore(starvation_after=60.0)
    core.chat_opened("old", priority=Priority.LOW, now=0.0)
    core.chat_opened("new", priority=Priority.HIGH, now=100.0)
    snapshot = core.snapshot(130.0)
    assert [(e.position, e.chat_id, e.priority, e.effective_priority) for e in snapshot.queue] == [
        (1, "old", Priority.LOW, Priority.HIGH),
        (2, "new", Priority.HIGH, Priority.HIGH),
    ]
    assert core.waiting_count == 2


def test_no_queue_change_no_queue_changed_effect() -> None:
    core = AssignmentCore()
    core.agent_added("ann", max_load=2, now=0.0)
    assert core.agent_connected("ann", 0.0) == []
    assert core.set_status("ann", AVAILABLE, by=SELF, now=0.0) == [
        AgentStatusChanged("ann", AWAY, AVAILABLE, SELF, "set by the agent")
    ]
    assert core.set_status("ann", AVAILABLE, by=SELF, now=1.0) == []


def test_idle_since_is_the_later_of_last_assignment_and_becoming_eligible() -> None:
    core = AssignmentCore()
    ready(core, "ann", 1, now=10.0)
    assert agent(core, "ann").idle_since == 10.0
    core.chat_opened("c1", priority=MEDIUM, now=20.0)
    assert agent(core, "ann").idle_since == 20.0
    core.chat_resolved("c1", by=SELF, now=30.0)  # eligible again after being at max
    assert agent(core, "ann").idle_since == 30.0
    core.set_max_load("ann", 2, by=ADMIN, now=35.0)
    core.chat_opened("c2", priority=MEDIUM, now=40.0)
    core.chat_resolved("c2", by=SELF, now=50.0)  # was eligible throughout
    assert agent(core, "ann").idle_since == 40.0


def test_check_invariants_reports_a_broken_state() -> None:
    core = AssignmentCore()
    ready(core, "ann", 1)
    core.chat_opened("c1", priority=MEDIUM, now=1.0)
    core.chat_opened("c2", priority=MEDIUM, now=1.0)
    assert_sound(core)
    # Break the state the way a bug would: ann holds c2, which still waits in the queue.
    core._agents["ann"].chats["c2"] = None
    violations = check_invariants(core)
    assert any("c2" in violation for violation in violations)
