"""What the load simulator saw, and the invariants checked against it from outside the server.

Plain synchronous code fed by the simulated clients (times are the simulator's trio clock), so
the checks are tested with hand-made observations. The rules, as a client can see them:

- *no message lost*: every acknowledged message reaches its chat's customer, at the seq the ack
  named, and every agent's view of a chat has no holes (1, 2, 3, ... as far as it goes);
- *no message duplicated*: no seq is acknowledged for two messages, and no connection gets a seq
  twice, except that a resume may repeat what arrived live just before it (the protocol allows
  that; clients merge by seq);
- *in order*: outside a resume, a connection gets each chat's messages in increasing seq;
- *no agent above max load*: an agent's own stream of chat.assigned / chat.unassigned / chat
  status events never leaves them holding more chats than their max load;
- *no chat with two agents*: when an agent is given a chat another agent holds, the other's
  release must arrive within `settle_seconds` (two sockets are read by two tasks, so the two
  frames of one hand-over can arrive in either order).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

LOST = "no_message_lost"
DUPLICATED = "no_message_duplicated"
ORDERED = "in_order"
MAX_LOAD = "no_agent_above_max_load"
ONE_AGENT = "no_chat_with_two_agents"
INVARIANTS = (LOST, DUPLICATED, ORDERED, MAX_LOAD, ONE_AGENT)
EXAMPLES_KEPT = 5
DEFAULT_SETTLE_SECONDS = 10.0


@dataclass(slots=True)
class Send:
    """One message a simulated participant sent, until it is acknowledged or refused."""

    chat_id: str
    role: str
    sent_at: float
    acked_at: float | None = None
    seq: int | None = None
    refused: str | None = None


@dataclass(slots=True)
class ReceivedChat:
    """What one participant received of one chat: seq -> client message id, and how."""

    ids: dict[int, str] = field(default_factory=dict)
    replayed: set[int] = field(default_factory=set)
    contiguous: int = 0
    unverifiable: bool = False

    def add(self, seq: int, client_msg_id: str, replay: bool) -> None:
        self.ids[seq] = client_msg_id
        if replay:
            self.replayed.add(seq)
        while self.contiguous + 1 in self.ids:
            self.contiguous += 1

    def holes(self) -> list[int]:
        return [seq for seq in range(1, max(self.ids, default=0)) if seq not in self.ids]


@dataclass(frozen=True, slots=True)
class Suspect:
    """An agent given a chat while another agent still held it, by their own streams."""

    chat_id: str
    holder: str
    newcomer: str
    at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    violations: int
    examples: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.violations == 0


@dataclass(slots=True)
class ChatTrack:
    """One chat as its customer saw it."""

    customer: str
    requested_at: float
    agent: str | None = None
    assignments: int = 0
    waiting_since: float | None = None
    queued: bool = False
    resolved: bool = False


class Ledger:
    def __init__(self, settle_seconds: float = DEFAULT_SETTLE_SECONDS) -> None:
        self.settle_seconds = settle_seconds
        self.sends: dict[str, Send] = {}
        self.outstanding = 0
        self.views: dict[tuple[str, str], ReceivedChat] = defaultdict(ReceivedChat)
        self._connection_max: dict[tuple[int, str], int] = {}
        self._acked_seqs: dict[str, dict[int, str]] = defaultdict(dict)
        self._violations: dict[str, list[str]] = {name: [] for name in INVARIANTS}
        self.errors: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        """Frames received, by type: what the server spent its writes on."""
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.timeline: list[tuple[float, float]] = []
        """(when received, end-to-end seconds) of each customer message, for the plot."""
        # Chats, by their customers.
        self.chats: dict[str, ChatTrack] = {}
        self.customer_of: dict[str, str] = {}
        self.origin = 0.0
        self.measure_from = 0.0
        self.waiting = 0
        self.backlog: list[tuple[float, int]] = []
        """(when, chats waiting) at every change, from the start of the load."""
        self.backlog_peak = 0
        # Agents, by their own streams.
        self.max_load: dict[str, int] = {}
        self.holding: dict[str, set[str]] = defaultdict(set)
        self.owners: dict[str, set[str]] = defaultdict(set)
        self._suspects: list[Suspect] = []
        self._resolve_asked: dict[str, float] = {}

    def begin(self, now: float, warmup: float = 0.0) -> None:
        """The load starts: times in the timeline and the backlog count from here, and what
        starts within the first `warmup` seconds is left out of the latencies."""
        self.origin = now
        self.measure_from = now + warmup
        self.backlog.append((now, self.waiting))

    def _sample(self, name: str, started: float, seconds: float) -> None:
        if started >= self.measure_from:
            self.samples[name].append(seconds)

    # --- messages ------------------------------------------------------------------------------

    def sent(self, client_msg_id: str, chat_id: str, role: str, now: float, lag: float) -> None:
        self.sends[client_msg_id] = Send(chat_id, role, now)
        self.outstanding += 1
        self.counts["sent"] += 1
        self._sample("schedule_lag", now, lag)

    def acked(self, client_msg_id: str, chat_id: str, seq: int, now: float) -> None:
        send = self.sends.get(client_msg_id)
        if send is None or send.acked_at is not None:
            return  # the ack of a resend of something already acknowledged
        if send.refused is None:
            self.outstanding -= 1
        else:
            # Durable after all (the refusal answered an earlier attempt): the ack decides.
            self.errors[f"acknowledged after being refused ({send.refused})"] += 1
            self.counts["refused"] -= 1
            send.refused = None
        send.acked_at, send.seq = now, seq
        self.counts["acked"] += 1
        self._sample("ack", send.sent_at, now - send.sent_at)
        taken = self._acked_seqs[chat_id]
        other = taken.setdefault(seq, client_msg_id)
        if other != client_msg_id:
            self._violate(
                DUPLICATED, f"chat {chat_id} seq {seq} acknowledged for {other} and {client_msg_id}"
            )

    def refused(self, client_msg_id: str, code: str) -> None:
        send = self.sends.get(client_msg_id)
        if send is None or send.acked_at is not None or send.refused is not None:
            return
        send.refused = code
        self.outstanding -= 1
        self.counts["refused"] += 1
        self.errors[f"refused: {code}"] += 1

    def received(
        self,
        who: str,
        connection: int,
        chat_id: str,
        seq: int,
        client_msg_id: str,
        now: float,
        *,
        replay: bool,
        by_agent: bool,
    ) -> None:
        """A message frame; `replay` if it arrived while a resume of that chat was open."""
        view = self.views[(who, chat_id)]
        key = (connection, chat_id)
        highest = self._connection_max.get(key, 0)
        if seq in view.ids:
            if not replay and seq not in view.replayed:
                self._violate(DUPLICATED, f"{who} got chat {chat_id} seq {seq} twice")
            return
        if not replay and seq < highest:
            self._violate(
                ORDERED, f"{who} got chat {chat_id} seq {seq} after seq {highest} on one connection"
            )
        self._connection_max[key] = max(highest, seq)
        view.add(seq, client_msg_id, replay)
        send = self.sends.get(client_msg_id)
        if by_agent and not replay and send is not None and send.role == "customer":
            latency = now - send.sent_at
            self._sample("end_to_end", send.sent_at, latency)
            self.timeline.append((now, latency))

    def incomplete(self, who: str, chat_id: str, why: str) -> None:
        """A resume the server did not answer with the missed messages (the chat moved on to
        another agent meanwhile, or the gap is too large): this view may have holes."""
        self.views[(who, chat_id)].unverifiable = True
        self.errors[why] += 1

    # --- chats, as customers see them ----------------------------------------------------------

    def chat_opened(
        self, customer: str, chat_id: str, requested_at: float, now: float, *, queued: bool
    ) -> None:
        """The customer learnt of its new chat: queued, or already with an agent."""
        self.counts["chats_opened"] += 1
        self.chats[chat_id] = ChatTrack(customer, requested_at, queued=queued)
        self.customer_of[chat_id] = customer
        if queued:
            self._set_waiting(chat_id, now, True)

    def customer_assigned(self, chat_id: str, agent: str, now: float) -> None:
        track = self.chats[chat_id]
        if track.agent == agent and track.waiting_since is None:
            return  # the same assignment told twice (chat.opened, then chat.assigned)
        if track.assignments == 0:
            self.counts["chats_assigned"] += 1
            self._sample("open_to_assigned", track.requested_at, now - track.requested_at)
            if track.queued:
                self._sample("queue_wait", track.requested_at, now - track.requested_at)
        elif track.waiting_since is not None:
            self._sample("reassign_wait", track.waiting_since, now - track.waiting_since)
        if track.assignments:
            self.counts["reassignments"] += 1
        track.assignments += 1
        track.agent = agent
        self._set_waiting(chat_id, now, False)

    def customer_lost_agent(self, chat_id: str, now: float) -> None:
        track = self.chats[chat_id]
        track.agent = None
        self._set_waiting(chat_id, now, True)

    def chat_resolved(self, chat_id: str, now: float) -> None:
        track = self.chats[chat_id]
        if track.resolved:
            return
        track.resolved = True
        self.counts["chats_resolved"] += 1
        self._set_waiting(chat_id, now, False)

    def _set_waiting(self, chat_id: str, now: float, waiting: bool) -> None:
        track = self.chats[chat_id]
        if (track.waiting_since is not None) == waiting:
            return
        track.waiting_since = now if waiting else None
        self.waiting += 1 if waiting else -1
        self.backlog_peak = max(self.backlog_peak, self.waiting)
        self.backlog.append((now, self.waiting))

    # --- agents, by their own streams ----------------------------------------------------------

    def agent_joined(self, agent: str, max_load: int) -> None:
        self.max_load[agent] = max_load

    def resolve_asked(self, agent: str, now: float) -> None:
        """The agent asked to resolve a chat: with chats waiting, its slot is refilled next."""
        if self.waiting:
            self._resolve_asked.setdefault(agent, now)

    def agent_took(self, agent: str, chat_id: str, now: float) -> None:
        held = self.holding[agent]
        if chat_id in held:
            return
        held.add(chat_id)
        asked = self._resolve_asked.pop(agent, None)
        if asked is not None:
            self._sample("refill", asked, now - asked)
        if len(held) > self.max_load[agent]:
            self._violate(
                MAX_LOAD, f"{agent} holds {len(held)} chats, max load {self.max_load[agent]}"
            )
        owners = self.owners[chat_id]
        self._suspects.extend(Suspect(chat_id, other, agent, now) for other in owners)
        owners.add(agent)

    def agent_released(self, agent: str, chat_id: str, now: float) -> None:
        if chat_id not in self.holding[agent]:
            return
        self.holding[agent].discard(chat_id)
        self.owners[chat_id].discard(agent)
        still: list[Suspect] = []
        for suspect in self._suspects:
            if suspect.chat_id != chat_id or suspect.holder != agent:
                still.append(suspect)
            elif now - suspect.at > self.settle_seconds:
                self._two_agents(suspect, f"released {now - suspect.at:.1f}s later")
        self._suspects = still

    def agent_resynced(self, agent: str, chats: set[str], now: float) -> None:
        """After a reconnect: what the agent holds now, by the server's list and the events
        received since; what it missed while away is settled here."""
        for chat_id in self.holding[agent] - chats:
            self.agent_released(agent, chat_id, now)
        for chat_id in chats - self.holding[agent]:
            self.agent_took(agent, chat_id, now)

    def _two_agents(self, suspect: Suspect, how: str) -> None:
        self._violate(
            ONE_AGENT,
            f"chat {suspect.chat_id} given to {suspect.newcomer} while {suspect.holder} "
            f"held it ({how})",
        )

    # --- the verdict ---------------------------------------------------------------------------

    def _violate(self, name: str, detail: str) -> None:
        self._violations[name].append(detail)

    def error(self, what: str) -> None:
        self.errors[what] += 1

    def finish(self, now: float) -> tuple[Outcome, ...]:
        """Check what can only be checked once everything has arrived (after the drain)."""
        for suspect in self._suspects:
            if now - suspect.at > self.settle_seconds or suspect.holder in self.owners.get(
                suspect.chat_id, set()
            ):
                self._two_agents(suspect, "still held at the end")
        self._suspects = []
        self._check_customers()
        self._check_agent_views()
        return tuple(
            Outcome(name, len(found), tuple(found[:EXAMPLES_KEPT]))
            for name, found in self._violations.items()
        )

    def _check_customers(self) -> None:
        for chat_id, acked in self._acked_seqs.items():
            customer = self.customer_of.get(chat_id)
            if customer is None:
                self._violate(LOST, f"chat {chat_id} has messages its customer never heard of")
                continue
            view = self.views.get((customer, chat_id))
            if view is None or view.unverifiable:
                if view is None and acked:
                    self._violate(LOST, f"{customer} got none of chat {chat_id}")
                continue
            for seq, client_msg_id in sorted(acked.items()):
                got = view.ids.get(seq)
                if got is None:
                    self._violate(LOST, f"{customer} never got chat {chat_id} seq {seq}")
                elif got != client_msg_id:
                    self._violate(
                        LOST,
                        f"chat {chat_id} seq {seq} was acknowledged for {client_msg_id} but "
                        f"carried {got}",
                    )

    def _check_agent_views(self) -> None:
        for (who, chat_id), view in self.views.items():
            if who in self.max_load and not view.unverifiable and (holes := view.holes()):
                self._violate(LOST, f"{who} missed chat {chat_id} seqs {holes[:5]}")
