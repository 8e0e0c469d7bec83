"""The assignment state of the AssignmentActor as a functional core.

`AssignmentCore` is the single writer of every agent's status, connections, load and max load,
and of the queue of waiting chats. It is plain synchronous code with no I/O and no clock: each
event method takes the time as `now` (seconds, never going backwards) and returns the effects
the actor shell must perform, in order (activity log, websocket pushes, grace timers). A command
that cannot be carried out raises `router.Refused` and changes nothing.

The shell decides a batch of messages, then makes it durable in one write: `checkpoint()` before
the batch, `commit()` once the write succeeded, `rollback()` if it failed, which returns the core
to the checkpoint exactly (an undo log of the records the batch touched).

Rules (DESIGN §3; the choice and the queue order are in actors.policy):

- A chat is assigned only to an eligible agent (`policy.is_eligible`: available, at least one
  live connection, load < max_load), checked and reserved in the same call.
- The queue is drained at the end of every event. Only capacity changes can make that drain
  assign anything (an agent becomes eligible, a chat is resolved or set pending, a max load is
  raised, a chat is queued), since after every event no chat waits while an eligible agent has
  room; there is no polling.
- An agent's shown status is what they chose (available or away) except that a chosen
  `available` shows as `busy` (set by the system) while load >= max_load.
- An agent who goes away (by their own choice, forced by an admin, or when the grace period after
  their last connection dropped expires) loses all open chats: each becomes `pending` and is
  re-queued at the front, keeping its arrival, then re-assigned at once where capacity exists.
  An away agent is never eligible, so the chats never go back to them.
- An agent's last connection dropping starts a grace timer (`StartGrace`); reconnecting before it
  expires makes the timer stale and changes nothing. Whenever an agent is not away and has no
  connection, a grace timer is running.
- Lowering max load below the current load takes nothing away, but nothing new is assigned until
  load < max_load again.
- "Idle since" is the later of the agent's last assignment and the moment they last became
  eligible by status, that is, showed `available` again (they chose it, or dropped below max
  load): an agent who just came back or just freed a full slot has not been idle before that.
  Connections coming and going do not count, so a reconnect within the grace period leaves the
  agent's place in the tie-break as it was.
- Setting a chat pending (the agent waits for the customer) frees the agent's slot and leaves the
  chat with no owner and out of the queue; when the customer writes, it is queued again as a new
  arrival at its priority and stays `pending` until assigned.

About 1,000 lines: one functional core whose every event method changes the same state under the
same invariants (one writer of statuses, loads and the queue); the rules it applies are in
policy.py.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TypeAlias, assert_never

from actors.policy import (
    MAX_NAMED_CANDIDATES,
    Candidate,
    QueueKey,
    choose_agent,
    describe_choice,
    effective_priority,
    is_eligible,
    queue_key,
    rank_key,
)
from router import Refused
from store import ActedBy, AgentStatus, ChatStatus, Priority

# --- effects -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assigned:
    """The chat now belongs to agent_id (previous_agent_id had it until now, if anyone)."""

    chat_id: str
    agent_id: str
    previous_agent_id: str | None
    reason: str
    by: ActedBy


@dataclass(frozen=True, slots=True)
class Unassigned:
    """The chat no longer belongs to agent_id and has no owner."""

    chat_id: str
    agent_id: str
    reason: str
    by: ActedBy


@dataclass(frozen=True, slots=True)
class ChatStatusChanged:
    chat_id: str
    old: ChatStatus
    new: ChatStatus
    by: ActedBy
    reason: str


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    agent_id: str
    old: AgentStatus
    new: AgentStatus
    by: ActedBy
    reason: str


@dataclass(frozen=True, slots=True)
class MaxLoadChanged:
    agent_id: str
    old: int
    new: int
    by: ActedBy


@dataclass(frozen=True, slots=True)
class StartGrace:
    """Start the grace period; call `grace_expired(agent_id, token, now)` when it ends."""

    agent_id: str
    token: int


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """The waiting chats or their order changed: recompute and push queue positions."""


Effect: TypeAlias = (
    Assigned
    | Unassigned
    | ChatStatusChanged
    | AgentStatusChanged
    | MaxLoadChanged
    | StartGrace
    | QueueChanged
)

# --- snapshot ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    status: AgentStatus
    connections: int
    load: int
    max_load: int
    idle_since: float
    chat_ids: tuple[str, ...]  # open chats, in assignment order


@dataclass(frozen=True, slots=True)
class ChatView:
    chat_id: str
    status: ChatStatus
    priority: Priority
    agent_id: str | None
    waiting_since: float | None  # when it started waiting in the queue; None if not queued


@dataclass(frozen=True, slots=True)
class QueueEntry:
    chat_id: str
    position: int  # 1 is served next
    priority: Priority
    effective_priority: Priority  # after the starvation guard
    status: ChatStatus
    requeued: bool
    arrival: int
    waiting_since: float


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    agents: tuple[AgentView, ...]  # by agent id
    queue: tuple[QueueEntry, ...]  # in serving order
    parked: tuple[str, ...]  # pending chats waiting for their customer, by chat id


# --- state ---------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Agent:
    agent_id: str
    chosen: AgentStatus  # available or away: what the agent, an admin or the grace timer chose
    status: AgentStatus  # shown: `chosen`, or busy while an available agent is at max load
    max_load: int
    idle_since: float
    connections: int = 0
    chats: dict[str, None] = field(default_factory=dict)  # open chats owned, in assignment order
    eligible: bool = False
    version: int = 0  # changes whenever rank or eligibility does; older index entries are stale
    grace_token: int = 0
    grace_running: bool = False
    # Load may exceed max_load only after max_load was lowered beneath it; from then on it may
    # only fall. overload_ceiling is the load allowed above max_load (see check_invariants).
    overload_ceiling: int = 0

    @property
    def load(self) -> int:
        return len(self.chats)


@dataclass(slots=True, eq=False)
class _Chat:
    chat_id: str
    priority: Priority
    status: ChatStatus
    agent_id: str | None = None
    queued: bool = False
    requeued: bool = False
    arrival: int = 0
    waiting_since: float = 0.0
    heap_entry: int = 0  # which entry of the re-queued heap is current

    @property
    def parked(self) -> bool:
        return self.status == ChatStatus.PENDING and self.agent_id is None and not self.queued


class _WaitingQueue:
    """The waiting chats in policy.queue_key order, without sorting them per decision.

    Non-re-queued chats of one priority sit in one insertion-ordered dict. Each entry into it takes
    a fresh arrival number at the current time, so in each dict arrival and waiting time grow
    together and its first chat has the smallest key of the dict (promotion only favours older
    chats); the head of the whole queue is the best of four dict heads. Re-queued chats keep their
    old arrival, so they sit in a heap with lazily deleted entries.
    """

    def __init__(self, starvation_after: float, touch: Callable[[_Chat], None]) -> None:
        self.starvation_after = starvation_after
        self._touch = touch  # told before a chat's fields change, for the core's undo log
        self.mutations = 0
        self._tiers: dict[Priority, OrderedDict[str, _Chat]] = {p: OrderedDict() for p in Priority}
        self._requeued: list[tuple[int, int, _Chat]] = []  # (arrival, heap entry, chat)
        self._requeued_count = 0
        self._arrivals = itertools.count(1)
        self._heap_entries = itertools.count(1)

    def __len__(self) -> int:
        return self._requeued_count + sum(len(tier) for tier in self._tiers.values())

    def new_arrival(self) -> int:
        return next(self._arrivals)

    def enqueue(self, chat: _Chat, waiting_since: float) -> None:
        """Queue `chat` as a new arrival at its priority."""
        self._touch(chat)
        chat.queued, chat.requeued = True, False
        chat.arrival = self.new_arrival()
        chat.waiting_since = waiting_since
        self._tiers[chat.priority][chat.chat_id] = chat
        self.mutations += 1

    def requeue(self, chat: _Chat, waiting_since: float) -> None:
        """Queue `chat` in the front tier, keeping its arrival."""
        self._touch(chat)
        chat.queued, chat.requeued = True, True
        chat.waiting_since = waiting_since
        chat.heap_entry = next(self._heap_entries)
        heapq.heappush(self._requeued, (chat.arrival, chat.heap_entry, chat))
        self._requeued_count += 1
        self.mutations += 1
        if len(self._requeued) > 2 * self._requeued_count + 64:
            self._requeued = [entry for entry in self._requeued if _current(entry)]
            heapq.heapify(self._requeued)

    def remove(self, chat: _Chat) -> None:
        self._touch(chat)
        if chat.requeued:
            self._requeued_count -= 1  # its heap entry goes stale
        else:
            del self._tiers[chat.priority][chat.chat_id]
        chat.queued = chat.requeued = False
        self.mutations += 1

    def rebuild(self, chats: Iterable[_Chat]) -> None:
        """Refile every queued chat of `chats` from its own fields (after a rollback)."""
        self._tiers = {p: OrderedDict() for p in Priority}
        self._requeued = []
        waiting = sorted((chat for chat in chats if chat.queued), key=lambda chat: chat.arrival)
        for chat in waiting:
            if chat.requeued:
                self._requeued.append((chat.arrival, chat.heap_entry, chat))
            else:
                self._tiers[chat.priority][chat.chat_id] = chat
        heapq.heapify(self._requeued)
        self._requeued_count = len(self._requeued)
        self.mutations += 1

    def head(self, now: float) -> _Chat | None:
        while self._requeued:
            entry = self._requeued[0]
            if _current(entry):
                return entry[2]
            heapq.heappop(self._requeued)
        best: _Chat | None = None
        best_key: QueueKey | None = None
        for tier in self._tiers.values():
            if tier:
                chat = next(iter(tier.values()))
                key = self.key(chat, now)
                if best_key is None or key < best_key:
                    best, best_key = chat, key
        return best

    def key(self, chat: _Chat, now: float) -> QueueKey:
        return queue_key(
            chat.priority,
            chat.requeued,
            chat.arrival,
            chat.waiting_since,
            now,
            self.starvation_after,
        )

    def chats(self) -> Iterator[_Chat]:
        """Every waiting chat, in no particular order."""
        yield from (entry[2] for entry in self._requeued if _current(entry))
        for tier in self._tiers.values():
            yield from tier.values()

    def ordered(self, now: float) -> list[_Chat]:
        return sorted(self.chats(), key=lambda chat: self.key(chat, now))

    def tier_violations(self) -> list[str]:
        """Structural faults that would break `head`; empty when the queue is sound."""
        violations = []
        for priority, tier in self._tiers.items():
            chats = list(tier.values())
            for chat in chats:
                if not chat.queued or chat.requeued or chat.priority != priority:
                    violations.append(f"chat {chat.chat_id}: misfiled in the {priority} tier")
            for earlier, later in itertools.pairwise(chats):
                if (earlier.arrival, earlier.waiting_since) > (later.arrival, later.waiting_since):
                    violations.append(
                        f"chats {earlier.chat_id}, {later.chat_id}: {priority} tier out of order"
                    )
        requeued = [entry[2] for entry in self._requeued if _current(entry)]
        if len(requeued) != self._requeued_count:
            violations.append(
                f"{len(requeued)} re-queued chats held, {self._requeued_count} counted"
            )
        return violations


# Every field of a record at once, for the undo log (one C call instead of a loop per field).
_agent_fields = attrgetter(*_Agent.__slots__)
_chat_fields = attrgetter(*_Chat.__slots__)
_AGENT_CHATS = _Agent.__slots__.index("chats")

_RosterEntry: TypeAlias = tuple[int, float, str, int]  # (*policy.rank_key, agent version)


def _current(entry: tuple[int, int, _Chat]) -> bool:
    chat = entry[2]
    return chat.queued and chat.requeued and chat.heap_entry == entry[1]


def _shown_status(chosen: AgentStatus, load: int, max_load: int) -> AgentStatus:
    if chosen == AgentStatus.AVAILABLE and load >= max_load:
        return AgentStatus.BUSY
    return chosen


def _choice_reason(by: ActedBy) -> str:
    match by:
        case ActedBy.SELF:
            return "set by the agent"
        case ActedBy.ADMIN:
            return "set by an admin"
        case ActedBy.SYSTEM:
            return "set by the system"
        case _ as unreachable:
            assert_never(unreachable)


# --- the core ------------------------------------------------------------------------------------


class AssignmentCore:
    """Agents' load and status and the waiting queue; see the module docstring for the rules."""

    def __init__(self, *, starvation_after: float = 120.0) -> None:
        if starvation_after <= 0:
            raise ValueError("starvation_after must be positive")
        self._agents: dict[str, _Agent] = {}
        self._chats: dict[str, _Chat] = {}  # active chats only; resolved ones are forgotten
        self._queue = _WaitingQueue(starvation_after, self._touch)
        # The undo log while a checkpoint is open: each agent's and chat's fields as they were
        # before its first change, and each id's entry in _agents and _chats (None: absent).
        self._undo: dict[_Agent | _Chat, tuple[object, ...]] | None = None
        self._undo_agents: dict[str, _Agent | None] = {}
        self._undo_chats: dict[str, _Chat | None] = {}
        self._undo_now = self._now = float("-inf")
        # Eligible agents by policy.rank_key, with lazily deleted stale entries.
        self._roster: list[_RosterEntry] = []
        self._eligible_count = 0
        self._versions = itertools.count(1)
        self._restored_agents: list[_Agent] = []
        self._restored_chats: list[tuple[_Chat, str | None, float | None]] = []

    # --- undo: decide a batch, and take it back if it could not be made durable -----------------

    def checkpoint(self) -> None:
        """Start recording what changes, so that `rollback` can take it all back.

        Costs nothing per record until a change touches it: the log holds only what the batch
        changed, never a copy of the whole state."""
        assert self._undo is None, "a checkpoint is already open"
        self._undo = {}
        self._undo_now = self._now

    def commit(self) -> None:
        """Keep every change since `checkpoint` (they are durable now)."""
        self._undo = None
        self._undo_agents.clear()
        self._undo_chats.clear()

    def rollback(self) -> None:
        """Return to the state at `checkpoint`, as if nothing since had happened.

        Records get their fields back; the indexes (queue, roster) are rebuilt from the records,
        which is a pass over the state: the price is paid only when a commit failed."""
        assert self._undo is not None, "no checkpoint is open"
        for record, fields in self._undo.items():
            for name, value in zip(type(record).__slots__, fields, strict=True):
                setattr(record, name, value)
        for agent_id, agent in self._undo_agents.items():
            if agent is None:
                self._agents.pop(agent_id, None)
            else:
                self._agents[agent_id] = agent
        for chat_id, chat in self._undo_chats.items():
            if chat is None:
                self._chats.pop(chat_id, None)
            else:
                self._chats[chat_id] = chat
        self._now = self._undo_now
        self.commit()
        self._queue.rebuild(self._chats.values())
        eligible = [agent for agent in self._agents.values() if agent.eligible]
        self._eligible_count = len(eligible)
        self._roster = [(*rank_key(self._candidate(a)), a.version) for a in eligible]
        heapq.heapify(self._roster)

    def _touch(self, record: _Agent | _Chat) -> None:
        """Log `record`'s fields before its first change since the checkpoint."""
        undo = self._undo
        if undo is None or record in undo:
            return
        if isinstance(record, _Chat):
            undo[record] = _chat_fields(record)
        else:
            fields = _agent_fields(record)
            # The one mutable field: the open chats, copied (the rest are immutable values).
            undo[record] = (*fields[:_AGENT_CHATS], dict(record.chats), *fields[_AGENT_CHATS + 1 :])

    def _set_agent(self, agent_id: str, agent: _Agent | None) -> None:
        if self._undo is not None:
            self._undo_agents.setdefault(agent_id, self._agents.get(agent_id))
        if agent is None:
            del self._agents[agent_id]
        else:
            self._agents[agent_id] = agent

    def _set_chat(self, chat_id: str, chat: _Chat | None) -> None:
        if self._undo is not None:
            self._undo_chats.setdefault(chat_id, self._chats.get(chat_id))
        if chat is None:
            del self._chats[chat_id]
        else:
            self._chats[chat_id] = chat

    # --- restoring after a restart: load agents, then chats, then call drain(now) -----------------

    def load_agent(
        self, agent_id: str, *, status: AgentStatus, max_load: int, idle_since: float
    ) -> None:
        """Restore an agent as stored. Their connections count from zero again."""
        if agent_id in self._agents:
            raise Refused("agent_exists", f"agent {agent_id} is already known")
        chosen = AgentStatus.AWAY if status == AgentStatus.AWAY else AgentStatus.AVAILABLE
        agent = _Agent(agent_id, chosen, status, max(max_load, 1), idle_since)
        self._agents[agent_id] = agent
        self._restored_agents.append(agent)

    def load_chat(
        self,
        chat_id: str,
        *,
        status: ChatStatus,
        priority: Priority,
        agent_id: str | None,
        waiting_since: float | None,
    ) -> None:
        """Restore an active chat as stored; resolved chats are ignored.

        `waiting_since` is when the chat last started waiting for an agent, None if it is not
        waiting. An open chat keeps its agent if that agent was loaded and is not away, otherwise
        it is re-queued. A waiting `pending` chat lost its agent, so it goes to the re-queued tier;
        a `pending` chat that is not waiting is set pending, waiting for its customer.
        """
        if chat_id in self._chats:
            raise Refused("chat_exists", f"chat {chat_id} is already known")
        if status == ChatStatus.RESOLVED:
            return
        chat = _Chat(chat_id, priority, status)
        self._chats[chat_id] = chat
        owner = self._agents.get(agent_id) if agent_id is not None else None
        if status == ChatStatus.OPEN and owner is not None and owner.chosen != AgentStatus.AWAY:
            chat.agent_id = owner.agent_id
            owner.chats[chat_id] = None
            # Should the agent go away, the chat is re-queued by arrival: give it one, in load
            # order, so no two re-queued chats tie.
            chat.arrival = self._queue.new_arrival()
        elif status != ChatStatus.PENDING or waiting_since is not None:
            self._restored_chats.append((chat, agent_id, waiting_since))

    def drain(self, now: float) -> list[Effect]:
        """Finish a restore: correct statuses, start grace timers, queue and assign waiting chats.

        Safe to call at any time; without a restore in progress it only drains the queue.
        """
        effects, mark = self._begin(now)
        for agent in self._restored_agents:
            self._touch(agent)
            agent.overload_ceiling = agent.load
            self._settle(agent, now, effects)
            if agent.chosen != AgentStatus.AWAY:
                self._start_grace(agent, effects)
        self._restored_agents.clear()
        # Queue in the order the chats started waiting, so arrival follows waiting time.
        restored = sorted(
            self._restored_chats,
            key=lambda item: (item[2] if item[2] is not None else now, item[0].chat_id),
        )
        self._restored_chats.clear()
        for chat, agent_id, waiting_since in restored:
            since = waiting_since if waiting_since is not None else now
            if chat.status == ChatStatus.NEW:
                self._queue.enqueue(chat, since)
                continue
            if chat.status == ChatStatus.OPEN:
                reason = "restored without an available agent"
                if agent_id is not None:
                    effects.append(Unassigned(chat.chat_id, agent_id, reason, ActedBy.SYSTEM))
                effects.append(
                    ChatStatusChanged(
                        chat.chat_id, ChatStatus.OPEN, ChatStatus.PENDING, ActedBy.SYSTEM, reason
                    )
                )
                self._touch(chat)
                chat.status = ChatStatus.PENDING
            self._touch(chat)
            chat.arrival = self._queue.new_arrival()
            self._queue.requeue(chat, since)
        return self._finish(effects, mark, now)

    # --- agents --------------------------------------------------------------------------------

    def agent_added(self, agent_id: str, *, max_load: int, now: float) -> list[Effect]:
        """A new agent (approved by an admin): away, with no connection."""
        if agent_id in self._agents:
            raise Refused("agent_exists", f"agent {agent_id} is already known")
        _check_max_load(max_load)
        effects, mark = self._begin(now)
        self._set_agent(
            agent_id, _Agent(agent_id, AgentStatus.AWAY, AgentStatus.AWAY, max_load, idle_since=now)
        )
        return self._finish(effects, mark, now)

    def agent_removed(self, agent_id: str, now: float) -> list[Effect]:
        """The agent was demoted or deleted: their open chats are re-queued, they are forgotten."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return []
        effects, mark = self._begin(now)
        self._go_away(agent, ActedBy.ADMIN, "agent removed", now, effects)
        self._set_agent(agent_id, None)
        return self._finish(effects, mark, now)

    def agent_connected(self, agent_id: str, now: float) -> list[Effect]:
        agent = self._agents.get(agent_id)
        if agent is None:
            return []
        effects, mark = self._begin(now)
        self._touch(agent)
        agent.connections += 1
        if agent.grace_running:
            agent.grace_running = False  # the timer's token is now stale
            agent.grace_token += 1
        self._settle(agent, now, effects)
        return self._finish(effects, mark, now)

    def agent_disconnected(self, agent_id: str, now: float) -> list[Effect]:
        agent = self._agents.get(agent_id)
        if agent is None or agent.connections == 0:
            return []
        effects, mark = self._begin(now)
        self._touch(agent)
        agent.connections -= 1
        self._settle(agent, now, effects)
        if agent.connections == 0 and agent.chosen != AgentStatus.AWAY:
            self._start_grace(agent, effects)
        return self._finish(effects, mark, now)

    def grace_expired(self, agent_id: str, token: int, now: float) -> list[Effect]:
        agent = self._agents.get(agent_id)
        if agent is None or not agent.grace_running or token != agent.grace_token:
            return []
        effects, mark = self._begin(now)
        self._touch(agent)
        agent.grace_running = False
        self._go_away(agent, ActedBy.SYSTEM, "disconnected for grace period", now, effects)
        return self._finish(effects, mark, now)

    def set_status(
        self, agent_id: str, status: AgentStatus, *, by: ActedBy, now: float
    ) -> list[Effect]:
        """Available or away, chosen by the agent or forced by an admin; busy is system-set."""
        agent = self._known_agent(agent_id)
        if status == AgentStatus.BUSY:
            raise Refused(
                "status_not_settable", "busy is set by the system when an agent is at max load"
            )
        effects, mark = self._begin(now)
        if status == AgentStatus.AWAY:
            self._go_away(agent, by, _choice_reason(by), now, effects)
        elif agent.chosen != AgentStatus.AVAILABLE:
            self._touch(agent)
            agent.chosen = AgentStatus.AVAILABLE
            self._settle(agent, now, effects, by=by, reason=_choice_reason(by))
            if agent.connections == 0:
                self._start_grace(agent, effects)
        return self._finish(effects, mark, now)

    def set_max_load(
        self, agent_id: str, max_load: int, *, by: ActedBy, now: float
    ) -> list[Effect]:
        agent = self._known_agent(agent_id)
        _check_max_load(max_load)
        effects, mark = self._begin(now)
        if max_load != agent.max_load:
            effects.append(MaxLoadChanged(agent_id, agent.max_load, max_load, by))
            self._touch(agent)
            agent.max_load = max_load
            if agent.load > max_load:
                agent.overload_ceiling = agent.load
            self._settle(agent, now, effects)
        return self._finish(effects, mark, now)

    # --- chats ---------------------------------------------------------------------------------

    def chat_opened(self, chat_id: str, *, priority: Priority, now: float) -> list[Effect]:
        """A new chat: status new, queued at its priority."""
        if chat_id in self._chats:
            raise Refused("chat_exists", f"chat {chat_id} is already known")
        effects, mark = self._begin(now)
        chat = _Chat(chat_id, priority, ChatStatus.NEW)
        self._set_chat(chat_id, chat)
        self._queue.enqueue(chat, now)
        return self._finish(effects, mark, now)

    def chat_parked(self, chat_id: str, *, by: ActedBy, now: float) -> list[Effect]:
        """The chat is set pending: it waits for the customer, without owner or queue.

        Its agent sets an open chat pending; an admin also a waiting one (it leaves the queue,
        as the original backend let its admins set a new chat pending). Setting a chat that
        waits for its customer pending again changes nothing."""
        chat = self._active_chat(chat_id)
        if chat.agent_id is None:
            if by != ActedBy.ADMIN:
                raise Refused(
                    "chat_not_open",
                    f"chat {chat_id} is {chat.status}; only an open chat can be set pending",
                )
            if chat.parked:
                return []
            effects, mark = self._begin(now)
            effects.append(
                ChatStatusChanged(
                    chat_id, chat.status, ChatStatus.PENDING, by, "waiting for the customer"
                )
            )
            self._touch(chat)
            chat.status = ChatStatus.PENDING
            self._queue.remove(chat)
            return self._finish(effects, mark, now)
        effects, mark = self._begin(now)
        agent = self._agents[chat.agent_id]
        reason = "waiting for the customer"
        effects.append(ChatStatusChanged(chat_id, chat.status, ChatStatus.PENDING, by, reason))
        effects.append(Unassigned(chat_id, agent.agent_id, reason, by))
        self._touch(chat)
        chat.status = ChatStatus.PENDING
        self._detach(chat, agent)
        self._settle(agent, now, effects)
        return self._finish(effects, mark, now)

    def customer_wrote(self, chat_id: str, now: float) -> list[Effect]:
        """A chat set pending is queued again when its customer writes; otherwise nothing."""
        chat = self._chats.get(chat_id)
        if chat is None or not chat.parked:
            return []
        effects, mark = self._begin(now)
        self._queue.enqueue(chat, now)
        return self._finish(effects, mark, now)

    def chat_resolved(self, chat_id: str, *, by: ActedBy, now: float) -> list[Effect]:
        chat = self._active_chat(chat_id)
        effects, mark = self._begin(now)
        effects.append(
            ChatStatusChanged(chat_id, chat.status, ChatStatus.RESOLVED, by, f"resolved by {by}")
        )
        self._set_chat(chat_id, None)
        if chat.queued:
            self._queue.remove(chat)
        if chat.agent_id is not None:
            agent = self._agents[chat.agent_id]
            self._detach(chat, agent)
            self._settle(agent, now, effects)
        return self._finish(effects, mark, now)

    def reassign(self, chat_id: str, agent_id: str, *, by: ActedBy, now: float) -> list[Effect]:
        """Give an active chat to the named agent, who must be eligible."""
        chat = self._active_chat(chat_id)
        agent = self._known_agent(agent_id)
        if chat.agent_id == agent_id:
            raise Refused("already_assigned", f"chat {chat_id} is already assigned to {agent_id}")
        if agent.chosen == AgentStatus.AWAY:
            raise Refused("agent_away", f"agent {agent_id} is away")
        if agent.connections == 0:
            raise Refused("agent_offline", f"agent {agent_id} has no live connection")
        if agent.load >= agent.max_load:
            raise Refused(
                "agent_at_max_load",
                f"agent {agent_id} is at max load ({agent.load}/{agent.max_load})",
            )
        effects, mark = self._begin(now)
        previous = self._agents[chat.agent_id] if chat.agent_id is not None else None
        if chat.queued:
            self._queue.remove(chat)
        if previous is not None:
            self._detach(chat, previous)
        verb = "reassigned" if previous is not None else "assigned"
        self._assign(chat, agent, previous, by, f"{verb} by {by}", now, effects)
        if previous is not None:
            self._settle(previous, now, effects)
        return self._finish(effects, mark, now)

    # --- reading -------------------------------------------------------------------------------

    @property
    def waiting_count(self) -> int:
        """How many chats wait in the queue."""
        return len(self._queue)

    def waiting_in_order(self, now: float) -> list[str]:
        """The waiting chats' ids in serving order as of `now`: the snapshot's queue, alone."""
        return [chat.chat_id for chat in self._queue.ordered(now)]

    def online_capacity(self) -> int:
        """The max loads of the agents not away with a live connection."""
        return sum(
            agent.max_load
            for agent in self._agents.values()
            if agent.chosen != AgentStatus.AWAY and agent.connections
        )

    def chat_view(self, chat_id: str) -> ChatView | None:
        """An active chat as the core sees it; None once resolved or if unknown."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return None
        waiting_since = chat.waiting_since if chat.queued else None
        return ChatView(chat.chat_id, chat.status, chat.priority, chat.agent_id, waiting_since)

    def agent_view(self, agent_id: str) -> AgentView | None:
        agent = self._agents.get(agent_id)
        return None if agent is None else _agent_view(agent)

    def snapshot(self, now: float) -> CoreSnapshot:
        """Agents and the queue in serving order as of `now` (the guard reorders over time)."""
        agents = tuple(
            _agent_view(agent)
            for agent in sorted(self._agents.values(), key=lambda agent: agent.agent_id)
        )
        queue = tuple(
            QueueEntry(
                chat.chat_id,
                position,
                chat.priority,
                chat.priority
                if chat.requeued
                else effective_priority(
                    chat.priority, now - chat.waiting_since, self._queue.starvation_after
                ),
                chat.status,
                chat.requeued,
                chat.arrival,
                chat.waiting_since,
            )
            for position, chat in enumerate(self._queue.ordered(now), start=1)
        )
        parked = tuple(sorted(chat.chat_id for chat in self._chats.values() if chat.parked))
        return CoreSnapshot(agents, queue, parked)

    # --- internals -----------------------------------------------------------------------------

    def _begin(self, now: float) -> tuple[list[Effect], int]:
        self._now = max(self._now, now)
        return [], self._queue.mutations

    def _finish(self, effects: list[Effect], mark: int, now: float) -> list[Effect]:
        self._drain(now, effects)
        if self._queue.mutations != mark:
            effects.append(QueueChanged())
        return effects

    def _known_agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise Refused("agent_not_found", f"no agent {agent_id}")
        return agent

    def _active_chat(self, chat_id: str) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise Refused("chat_not_active", f"chat {chat_id} is unknown or resolved")
        return chat

    def _candidate(self, agent: _Agent) -> Candidate:
        return Candidate(
            agent.agent_id,
            agent.status,
            agent.connections,
            agent.load,
            agent.max_load,
            agent.idle_since,
        )

    def _settle(
        self,
        agent: _Agent,
        now: float,
        effects: list[Effect],
        *,
        by: ActedBy = ActedBy.SYSTEM,
        reason: str = "",
    ) -> None:
        """Bring shown status, eligibility and the roster in line after any change to `agent`.

        A status change is reported with `by` and `reason` when given (a choice of the agent, an
        admin or the grace timer), otherwise as the system's reaction to the agent's load. (A
        choice never shows busy: an away agent owns no chats and max_load is at least 1.)
        """
        self._touch(agent)
        status = _shown_status(agent.chosen, agent.load, agent.max_load)
        if status != agent.status:
            # Without a choice, only load moves the status, between available and busy.
            load_reason = (
                f"at max load ({agent.load}/{agent.max_load})"
                if status == AgentStatus.BUSY
                else f"below max load ({agent.load}/{agent.max_load})"
            )
            effects.append(
                AgentStatusChanged(agent.agent_id, agent.status, status, by, reason or load_reason)
            )
            agent.status = status
            if status == AgentStatus.AVAILABLE:
                agent.idle_since = now
        eligible = is_eligible(self._candidate(agent))
        if eligible != agent.eligible:
            self._eligible_count += 1 if eligible else -1
            agent.eligible = eligible
        agent.version = next(self._versions)
        if eligible:
            entry = (*rank_key(self._candidate(agent)), agent.version)
            heapq.heappush(self._roster, entry)
            if len(self._roster) > 2 * self._eligible_count + 64:
                self._roster = [entry for entry in self._roster if self._listed(entry)]
                heapq.heapify(self._roster)

    def _listed(self, entry: _RosterEntry) -> bool:
        agent = self._agents.get(entry[2])
        return agent is not None and agent.version == entry[3]

    def _best_eligible(self, count: int) -> list[_Agent]:
        """Up to `count` eligible agents, best first by policy.rank_key."""
        taken: list[tuple[_RosterEntry, _Agent]] = []
        while self._roster and len(taken) < count:
            entry = heapq.heappop(self._roster)
            if self._listed(entry):
                taken.append((entry, self._agents[entry[2]]))
        for entry, _ in taken:
            heapq.heappush(self._roster, entry)
        return [agent for _, agent in taken]

    def _drain(self, now: float, effects: list[Effect]) -> None:
        while self._eligible_count:
            chat = self._queue.head(now)
            if chat is None:
                return
            ranked = self._best_eligible(MAX_NAMED_CANDIDATES)
            reason = describe_choice(
                [self._candidate(agent) for agent in ranked], self._eligible_count, now=now
            )
            self._queue.remove(chat)
            self._assign(chat, ranked[0], None, ActedBy.SYSTEM, reason, now, effects)

    def _assign(
        self,
        chat: _Chat,
        agent: _Agent,
        previous: _Agent | None,
        by: ActedBy,
        reason: str,
        now: float,
        effects: list[Effect],
    ) -> None:
        self._touch(chat)
        self._touch(agent)
        previous_id = previous.agent_id if previous is not None else None
        effects.append(Assigned(chat.chat_id, agent.agent_id, previous_id, reason, by))
        if chat.status != ChatStatus.OPEN:
            effects.append(
                ChatStatusChanged(
                    chat.chat_id, chat.status, ChatStatus.OPEN, by, f"assigned to {agent.agent_id}"
                )
            )
            chat.status = ChatStatus.OPEN
        chat.agent_id = agent.agent_id
        agent.chats[chat.chat_id] = None
        agent.idle_since = now
        self._settle(agent, now, effects)

    def _detach(self, chat: _Chat, agent: _Agent) -> None:
        """Take `chat` from `agent`; the caller settles the agent."""
        self._touch(chat)
        self._touch(agent)
        del agent.chats[chat.chat_id]
        chat.agent_id = None
        agent.overload_ceiling = min(agent.overload_ceiling, agent.load)

    def _go_away(
        self, agent: _Agent, by: ActedBy, reason: str, now: float, effects: list[Effect]
    ) -> None:
        self._touch(agent)
        agent.chosen = AgentStatus.AWAY
        self._settle(agent, now, effects, by=by, reason=reason)
        requeue_reason = f"agent {agent.agent_id} away: {reason}"
        for chat_id in list(agent.chats):
            chat = self._chats[chat_id]
            effects.append(Unassigned(chat_id, agent.agent_id, requeue_reason, ActedBy.SYSTEM))
            effects.append(
                ChatStatusChanged(
                    chat_id, chat.status, ChatStatus.PENDING, ActedBy.SYSTEM, requeue_reason
                )
            )
            self._touch(chat)
            chat.status = ChatStatus.PENDING
            self._detach(chat, agent)
            self._queue.requeue(chat, now)
        self._settle(agent, now, effects)

    def _start_grace(self, agent: _Agent, effects: list[Effect]) -> None:
        if agent.connections or agent.grace_running:
            return
        self._touch(agent)
        agent.grace_token += 1
        agent.grace_running = True
        effects.append(StartGrace(agent.agent_id, agent.grace_token))


def _agent_view(agent: _Agent) -> AgentView:
    return AgentView(
        agent.agent_id,
        agent.status,
        agent.connections,
        agent.load,
        agent.max_load,
        agent.idle_since,
        tuple(agent.chats),
    )


def _check_max_load(max_load: int) -> None:
    if max_load < 1:
        raise Refused("invalid_max_load", f"max load must be at least 1, not {max_load}")


def check_invariants(core: AssignmentCore) -> list[str]:
    """Every way the core's state breaks the assignment rules; empty when it is sound.

    Checked from the plain state, independently of the indexes that make decisions fast: one owner
    per chat; load equals the open chats owned; load <= max_load except after a max-load decrease
    (after which load only falls); shown status follows the agent's choice and load; an away agent
    owns nothing; an agent not away and offline has a grace timer running; no chat waits while an
    eligible agent has room; the indexes agree with policy.choose_agent and policy.queue_key.
    """
    violations: list[str] = []
    owners: dict[str, str] = {}
    eligible: list[Candidate] = []
    for agent_id, agent in core._agents.items():
        candidate = core._candidate(agent)
        where = f"agent {agent_id}"
        for chat_id in agent.chats:
            if chat_id in owners:
                violations.append(f"chat {chat_id}: owned by {owners[chat_id]} and {agent_id}")
            owners[chat_id] = agent_id
            chat = core._chats.get(chat_id)
            if chat is None or chat.agent_id != agent_id or chat.status != ChatStatus.OPEN:
                violations.append(f"{where}: holds chat {chat_id}, which is not open with them")
        if agent.load > max(agent.max_load, agent.overload_ceiling):
            violations.append(f"{where}: load {agent.load} above max load {agent.max_load}")
        expected = _shown_status(agent.chosen, agent.load, agent.max_load)
        if agent.status != expected:
            violations.append(f"{where}: shows {agent.status}, should show {expected}")
        if agent.chosen == AgentStatus.AWAY and agent.chats:
            violations.append(f"{where}: away with {agent.load} open chats")
        if agent.chosen != AgentStatus.AWAY and agent.connections == 0 and not agent.grace_running:
            violations.append(f"{where}: offline and not away, with no grace timer")
        if agent.connections < 0:
            violations.append(f"{where}: {agent.connections} connections")
        if agent.eligible != is_eligible(candidate):
            violations.append(f"{where}: eligibility flag is stale")
        if is_eligible(candidate):
            eligible.append(candidate)
    if len(eligible) != core._eligible_count:
        violations.append(f"{len(eligible)} eligible agents, {core._eligible_count} counted")

    waiting = list(core._queue.chats())
    for chat_id, chat in core._chats.items():
        where = f"chat {chat_id}"
        if chat.status == ChatStatus.OPEN and owners.get(chat_id) is None:
            violations.append(f"{where}: open without an owner")
        if chat.status != ChatStatus.OPEN and chat.agent_id is not None:
            violations.append(f"{where}: {chat.status} with owner {chat.agent_id}")
        if chat.status == ChatStatus.NEW and not chat.queued:
            violations.append(f"{where}: new but not queued")
        if chat.queued and chat.agent_id is not None:
            violations.append(f"{where}: queued while owned")
        if chat.status == ChatStatus.RESOLVED:
            violations.append(f"{where}: resolved but still held")
    if len({chat.chat_id for chat in waiting}) != len(waiting) or any(
        core._chats.get(chat.chat_id) is not chat for chat in waiting
    ):
        violations.append("the queue holds duplicate or inactive chats")
    violations.extend(core._queue.tier_violations())

    if waiting and eligible:
        violations.append(f"{len(waiting)} chats wait while {len(eligible)} agents have room")
    listed = {entry[2]: entry[:3] for entry in core._roster if core._listed(entry)}
    if listed != {candidate.agent_id: rank_key(candidate) for candidate in eligible}:
        violations.append("the roster disagrees with the eligible agents' ranks")
    if eligible:
        ranked = core._best_eligible(1)
        choice = choose_agent(eligible, now=core._now)
        if not ranked or choice is None or ranked[0].agent_id != choice.agent_id:
            violations.append("the roster disagrees with policy.choose_agent")
    if waiting:
        keys: list[tuple[QueueKey, str]] = [
            (core._queue.key(chat, core._now), chat.chat_id) for chat in waiting
        ]
        head = core._queue.head(core._now)
        if head is None or head.chat_id != min(keys)[1]:
            violations.append("the queue head disagrees with policy.queue_key")
    return violations
