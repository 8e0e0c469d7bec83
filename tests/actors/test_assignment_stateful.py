"""A Hypothesis state machine over AssignmentCore: agents, chats, admins, restarts and time.

Agents are added, removed, connect, disconnect, let the grace period expire, choose a status
(including the refused `busy`) and get new max loads; chats open, get set pending, are written to
by their customer, resolved and reassigned by an admin (including refused reassignments); time
advances; the core is rebuilt from its own snapshot as after a restart. Any run of steps may form
a batch between a checkpoint and its end: committed, or rolled back as after a failed store write.

The test keeps a model built only from the effects the core returns (owner of each chat, status
of each chat and agent) and checks, at every step:
- every status change and every change of owner came with an effect (the model matches the
  snapshot) and each effect's `old` value was the current one; at most one owner per chat;
- each assignment went to an agent that was available, connected, under max load and least
  loaded at that moment, so load never exceeds max load except after a max-load decrease, and
  nothing new is assigned while load >= max load; load equals the open chats owned;
- a drain takes waiting chats in queue order; no chat waits while an eligible agent has room;
- the queue is in policy.queue_key order, which makes it FIFO within each priority among chats
  that did not lose their agent, apart from starvation promotion (which keeps FIFO too);
- a refusal happens exactly when the rules say so and changes nothing;
- check_invariants finds nothing;
- a rollback returns the core to its state at the checkpoint, every record and index alike, and
  the core then goes on exactly as one that never saw the batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from actors.assignment import (
    AgentStatusChanged,
    Assigned,
    AssignmentCore,
    ChatStatusChanged,
    CoreSnapshot,
    Effect,
    MaxLoadChanged,
    QueueChanged,
    StartGrace,
    Unassigned,
    _Agent,
    _Chat,
    check_invariants,
)
from actors.policy import queue_key
from router import Refused
from store._records import ActedBy, AgentStatus, ChatStatus, Priority

AGENTS = ("ann", "bob", "cy", "dee")
STARVATION = 100.0

agent_ids = st.sampled_from(AGENTS)
actors = st.sampled_from([ActedBy.SELF, ActedBy.ADMIN])
picks = st.integers(0, 10_000)  # which of the chats opened so far, modulo their number


class AssignmentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = AssignmentCore(starvation_after=STARVATION)
        self.now = 0.0
        self.chat_ids: list[str] = []  # every chat opened, resolved ones included
        self.new_chat_ids = (f"c{n}" for n in itertools.count())
        self.priority: dict[str, Priority] = {}
        # The model, changed only by effects (and by adding or removing agents).
        self.agent_status: dict[str, AgentStatus] = {}
        self.chat_status: dict[str, ChatStatus] = {}
        self.owner: dict[str, str] = {}
        self.grace_token: dict[str, int] = {}
        # At a checkpoint: the model and a dump of the core, to compare after a rollback.
        self.saved: _Saved | None = None

    # --- driving the core ----------------------------------------------------------------------

    def step(
        self,
        call: Callable[[], list[Effect]],
        refusal: str | None = None,
        *,
        drain_in_queue_order: bool = True,
    ) -> list[Effect]:
        before = self.core.snapshot(self.now)
        if refusal is not None:
            with pytest.raises(Refused) as refused:
                call()
            assert refused.value.code == refusal
            assert self.core.snapshot(self.now) == before
            return []
        effects = call()
        after = self.core.snapshot(self.now)
        self.replay(effects, after)
        queue_before = [entry.chat_id for entry in before.queue]
        if queue_before != [entry.chat_id for entry in after.queue]:
            assert QueueChanged() in effects
        if drain_in_queue_order:
            self.check_drain_order(effects, before, after)
        return effects

    def replay(self, effects: list[Effect], after: CoreSnapshot) -> None:
        """Apply effects to the model, checking each against the model's current state."""
        agents = {view.agent_id: view for view in after.agents}
        for effect in effects:
            match effect:
                case AgentStatusChanged(agent_id, old, new, _, _):
                    assert self.agent_status[agent_id] == old != new
                    self.agent_status[agent_id] = new
                case ChatStatusChanged(chat_id, old, new, _, _):
                    assert self.chat_status[chat_id] == old != new
                    if new == ChatStatus.RESOLVED:
                        del self.chat_status[chat_id]
                        self.owner.pop(chat_id, None)
                    else:
                        self.chat_status[chat_id] = new
                case Assigned(chat_id, agent_id, previous, _, by):
                    assert self.owner.get(chat_id) == previous != agent_id
                    eligible = {
                        view.agent_id: self.load(view.agent_id)
                        for view in after.agents
                        if self.agent_status[view.agent_id] == AgentStatus.AVAILABLE
                        and view.connections >= 1
                        and self.load(view.agent_id) < view.max_load
                    }
                    assert agent_id in eligible, f"{chat_id} assigned to ineligible {agent_id}"
                    if by == ActedBy.SYSTEM:
                        assert eligible[agent_id] == min(eligible.values())
                    self.owner[chat_id] = agent_id
                case Unassigned(chat_id, agent_id, _, _):
                    assert self.owner.pop(chat_id) == agent_id
                case StartGrace(agent_id, token):
                    assert agents[agent_id].connections == 0
                    self.grace_token[agent_id] = token
                case MaxLoadChanged(agent_id, old, new, _):
                    assert agents[agent_id].max_load == new != old
                case QueueChanged():
                    pass
                case _:
                    assert_never(effect)

    def check_drain_order(
        self, effects: list[Effect], before: CoreSnapshot, after: CoreSnapshot
    ) -> None:
        """Chats the drain assigned were ahead of every chat that still waits."""
        position = {entry.chat_id: entry.position for entry in before.queue}
        drained = [
            position[e.chat_id]
            for e in effects
            if isinstance(e, Assigned) and e.by == ActedBy.SYSTEM and e.chat_id in position
        ]
        still_waiting = [position[e.chat_id] for e in after.queue if e.chat_id in position]
        if drained and still_waiting:
            assert max(drained) < min(still_waiting)

    def load(self, agent_id: str) -> int:
        return sum(1 for owner in self.owner.values() if owner == agent_id)

    def pick(self, index: int) -> str:
        return self.chat_ids[index % len(self.chat_ids)] if self.chat_ids else "none"

    def view(self, agent_id: str) -> tuple[AgentStatus, int, int, int] | None:
        for view in self.core.snapshot(self.now).agents:
            if view.agent_id == agent_id:
                return view.status, view.connections, view.load, view.max_load
        return None

    # --- rules ---------------------------------------------------------------------------------

    @initialize(max_loads=st.lists(st.integers(1, 3), min_size=2, max_size=2))
    def two_agents_ready(self, max_loads: list[int]) -> None:
        for agent_id, max_load in zip(AGENTS, max_loads, strict=False):
            self.add_agent(agent_id, max_load)
            self.connect(agent_id)
            self.set_status(agent_id, AgentStatus.AVAILABLE, ActedBy.SELF)

    @rule(agent_id=agent_ids, max_load=st.integers(1, 3))
    def add_agent(self, agent_id: str, max_load: int) -> None:
        known = agent_id in self.agent_status
        self.step(
            lambda: self.core.agent_added(agent_id, max_load=max_load, now=self.now),
            "agent_exists" if known else None,
        )
        self.agent_status.setdefault(agent_id, AgentStatus.AWAY)

    @rule(agent_id=agent_ids)
    def remove_agent(self, agent_id: str) -> None:
        self.step(lambda: self.core.agent_removed(agent_id, self.now))
        assert self.load(agent_id) == 0
        self.agent_status.pop(agent_id, None)

    @rule(agent_id=agent_ids)
    def connect(self, agent_id: str) -> None:
        self.step(lambda: self.core.agent_connected(agent_id, self.now))

    @rule(agent_id=agent_ids)
    def disconnect(self, agent_id: str) -> None:
        self.step(lambda: self.core.agent_disconnected(agent_id, self.now))

    @rule(agent_id=agent_ids, stale=st.booleans())
    def grace_expires(self, agent_id: str, stale: bool) -> None:
        token = self.grace_token.get(agent_id, 0) - stale
        before = self.view(agent_id)
        effects = self.step(lambda: self.core.grace_expired(agent_id, token, self.now))
        if before is not None and before[1] > 0:
            assert effects == []  # reconnected within the grace period: nothing changes
        if effects:
            assert self.agent_status[agent_id] == AgentStatus.AWAY
            assert self.load(agent_id) == 0

    @rule(agent_id=agent_ids, status=st.sampled_from(AgentStatus), by=actors)
    def set_status(self, agent_id: str, status: AgentStatus, by: ActedBy) -> None:
        refusal = None
        if agent_id not in self.agent_status:
            refusal = "agent_not_found"
        elif status == AgentStatus.BUSY:
            refusal = "status_not_settable"
        self.step(lambda: self.core.set_status(agent_id, status, by=by, now=self.now), refusal)
        if refusal is None and status == AgentStatus.AWAY:
            assert self.load(agent_id) == 0

    @rule(agent_id=agent_ids, max_load=st.integers(0, 4))
    def set_max_load(self, agent_id: str, max_load: int) -> None:
        refusal = None
        if agent_id not in self.agent_status:
            refusal = "agent_not_found"
        elif max_load < 1:
            refusal = "invalid_max_load"
        load_before = self.load(agent_id)
        effects = self.step(
            lambda: self.core.set_max_load(agent_id, max_load, by=ActedBy.ADMIN, now=self.now),
            refusal,
        )
        if refusal is None:
            # Lowering the max load takes nothing away from the agent.
            assert not any(isinstance(e, Unassigned) for e in effects)
            assert self.load(agent_id) >= load_before

    @rule(priority=st.sampled_from(Priority), reuse=st.booleans(), index=picks)
    def open_chat(self, priority: Priority, reuse: bool, index: int) -> None:
        chat_id = self.pick(index) if reuse and self.chat_ids else next(self.new_chat_ids)
        if chat_id in self.chat_status:
            self.step(
                lambda: self.core.chat_opened(chat_id, priority=priority, now=self.now),
                "chat_exists",
            )
            return
        # A resolved chat's id may come back; the core has forgotten it.
        self.chat_status[chat_id] = ChatStatus.NEW
        self.priority[chat_id] = priority
        if chat_id not in self.chat_ids:
            self.chat_ids.append(chat_id)
        self.step(lambda: self.core.chat_opened(chat_id, priority=priority, now=self.now))

    @rule(index=picks, by=actors)
    def resolve(self, index: int, by: ActedBy) -> None:
        chat_id = self.pick(index)
        refusal = None if chat_id in self.chat_status else "chat_not_active"
        self.step(lambda: self.core.chat_resolved(chat_id, by=by, now=self.now), refusal)
        assert chat_id not in self.chat_status

    @rule(index=picks)
    def park(self, index: int) -> None:
        chat_id = self.pick(index)
        refusal = None
        if chat_id not in self.chat_status:
            refusal = "chat_not_active"
        elif self.chat_status[chat_id] != ChatStatus.OPEN:
            refusal = "chat_not_open"
        self.step(lambda: self.core.chat_parked(chat_id, by=ActedBy.SELF, now=self.now), refusal)
        if refusal is None:
            assert self.owner.get(chat_id) is None
            assert self.chat_status[chat_id] == ChatStatus.PENDING

    @rule(index=picks)
    def customer_writes(self, index: int) -> None:
        chat_id = self.pick(index)
        parked = chat_id in self.core.snapshot(self.now).parked
        effects = self.step(lambda: self.core.customer_wrote(chat_id, self.now))
        assert bool(effects) == parked

    @rule(index=picks, agent_id=agent_ids)
    def reassign(self, index: int, agent_id: str) -> None:
        chat_id = self.pick(index)
        target = self.view(agent_id)
        refusal = None
        if chat_id not in self.chat_status:
            refusal = "chat_not_active"
        elif target is None:
            refusal = "agent_not_found"
        elif self.owner.get(chat_id) == agent_id:
            refusal = "already_assigned"
        elif target[0] == AgentStatus.AWAY:
            refusal = "agent_away"
        elif target[1] == 0:
            refusal = "agent_offline"
        elif target[2] >= target[3]:
            refusal = "agent_at_max_load"
        self.step(
            lambda: self.core.reassign(chat_id, agent_id, by=ActedBy.ADMIN, now=self.now), refusal
        )
        if refusal is None:
            assert self.owner[chat_id] == agent_id

    @rule(seconds=st.sampled_from([0.0, 1.0, 15.0, 60.0, 99.0, 100.0, 250.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.saved is None)
    @rule()
    def begin_batch(self) -> None:
        """The shell takes a batch of messages: every step until the batch ends is in it."""
        self.core.checkpoint()
        self.saved = _Saved(
            dict(self.agent_status), dict(self.chat_status), dict(self.owner),
            dict(self.grace_token), dump(self.core), self.now, self.core.snapshot(self.now),
        )  # fmt: skip

    @precondition(lambda self: self.saved is not None)
    @rule()
    def commit_batch(self) -> None:
        self.core.commit()
        self.saved = None

    @precondition(lambda self: self.saved is not None)
    @rule()
    def commit_fails_then_rollback(self) -> None:
        """The batch's write failed: the core forgets the batch, and so does the model."""
        saved = self.saved
        assert saved is not None
        self.core.rollback()
        self.saved = None
        assert dump(self.core) == saved.dump
        assert self.core.snapshot(saved.now) == saved.snapshot  # the indexes were rebuilt alike
        self.agent_status, self.chat_status = saved.agent_status, saved.chat_status
        self.owner, self.grace_token = saved.owner, saved.grace_token

    @precondition(lambda self: self.saved is None)
    @rule(n=st.integers(2, 8), priority=st.sampled_from(Priority), fails=st.booleans())
    def batch_of_n(self, n: int, priority: Priority, fails: bool) -> None:
        """A burst decided as one batch, as the shell takes a full mailbox: N chats open (each
        drained at once where an agent has room), then the one write succeeds or fails."""
        self.begin_batch()
        for _ in range(n):
            self.open_chat(priority, reuse=False, index=0)
        if fails:
            self.commit_fails_then_rollback()
        else:
            self.commit_batch()

    @precondition(lambda self: self.saved is None)
    @rule()
    def restart(self) -> None:
        """Rebuild the core from its snapshot, as the actor does from the store."""
        snapshot = self.core.snapshot(self.now)
        core = AssignmentCore(starvation_after=STARVATION)
        for view in snapshot.agents:
            core.load_agent(
                view.agent_id,
                status=view.status,
                max_load=view.max_load,
                idle_since=view.idle_since,
            )
        for view in snapshot.agents:
            for chat_id in view.chat_ids:
                core.load_chat(
                    chat_id,
                    status=ChatStatus.OPEN,
                    priority=self.priority[chat_id],
                    agent_id=view.agent_id,
                    waiting_since=None,
                )
        for entry in snapshot.queue:
            core.load_chat(
                entry.chat_id,
                status=entry.status,
                priority=entry.priority,
                agent_id=None,
                waiting_since=entry.waiting_since,
            )
        for chat_id in snapshot.parked:
            core.load_chat(
                chat_id,
                status=ChatStatus.PENDING,
                priority=self.priority[chat_id],
                agent_id=None,
                waiting_since=None,
            )
        self.core = core
        # Restoring may regroup the queue (a waiting pending chat counts as re-queued).
        self.step(lambda: core.drain(self.now), drain_in_queue_order=False)

    # --- after every step ----------------------------------------------------------------------

    @invariant()
    def state_is_sound(self) -> None:
        assert check_invariants(self.core) == []

    @invariant()
    def model_matches_snapshot(self) -> None:
        snapshot = self.core.snapshot(self.now)
        assert {view.agent_id: view.status for view in snapshot.agents} == self.agent_status
        owned = {chat_id: view.agent_id for view in snapshot.agents for chat_id in view.chat_ids}
        assert owned == self.owner
        assert all(view.load == len(view.chat_ids) for view in snapshot.agents)
        statuses = {chat_id: ChatStatus.OPEN for chat_id in owned}
        statuses.update((entry.chat_id, entry.status) for entry in snapshot.queue)
        statuses.update((chat_id, ChatStatus.PENDING) for chat_id in snapshot.parked)
        # Each active chat is in exactly one place: owned, waiting or set pending.
        places = len(owned) + len(snapshot.queue) + len(snapshot.parked)
        assert statuses == self.chat_status
        assert places == len(self.chat_status)

    @invariant()
    def queue_is_in_policy_order(self) -> None:
        queue = self.core.snapshot(self.now).queue
        keys = [
            queue_key(e.priority, e.requeued, e.arrival, e.waiting_since, self.now, STARVATION)
            for e in queue
        ]
        assert keys == sorted(keys)
        assert [e.position for e in queue] == list(range(1, len(queue) + 1))
        # What the queue-position push uses instead of a whole snapshot.
        assert self.core.waiting_in_order(self.now) == [e.chat_id for e in queue]
        agents = self.core.snapshot(self.now).agents
        assert self.core.online_capacity() == sum(
            a.max_load for a in agents if a.status != AgentStatus.AWAY and a.connections
        )
        for priority in Priority:
            fresh = [e for e in queue if not e.requeued and e.priority == priority]
            assert [e.arrival for e in fresh] == sorted(e.arrival for e in fresh)
            assert [e.waiting_since for e in fresh] == sorted(e.waiting_since for e in fresh)

    @invariant()
    def no_chat_waits_while_an_agent_has_room(self) -> None:
        snapshot = self.core.snapshot(self.now)
        if snapshot.queue:
            assert not [
                view.agent_id
                for view in snapshot.agents
                if view.status == AgentStatus.AVAILABLE
                and view.connections >= 1
                and view.load < view.max_load
            ]


@dataclass(frozen=True, slots=True)
class _Saved:
    """The model and the core as they were at a checkpoint."""

    agent_status: dict[str, AgentStatus]
    chat_status: dict[str, ChatStatus]
    owner: dict[str, str]
    grace_token: dict[str, int]
    dump: tuple[object, ...]
    now: float
    snapshot: CoreSnapshot


def dump(core: AssignmentCore) -> tuple[object, ...]:
    """Every record's fields (bar the index bookkeeping a rollback renumbers) and the clock."""

    def fields(record: _Agent | _Chat) -> tuple[object, ...]:
        values = (getattr(record, name) for name in type(record).__slots__ if name != "version")
        return tuple(list(value) if isinstance(value, dict) else value for value in values)

    agents = {agent_id: fields(agent) for agent_id, agent in core._agents.items()}
    chats = {chat_id: fields(chat) for chat_id, chat in core._chats.items()}
    return agents, chats, core._now, core._eligible_count


AssignmentMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_assignment_machine = AssignmentMachine.TestCase
