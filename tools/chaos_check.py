"""What a run of the crash/restart harness (tools/chaos/) must have kept, checked from outside.

Pure functions over plain data, so a doctored transcript or log proves each check can fail
(tests/chaos/test_checker.py). The evidence is what the clients recorded (acks, the messages
each saw, in order) and what the store holds once the server is stopped (transcripts, chats,
agents, the activity log), plus the assignment actor's state read just before it stopped.

`replay` walks the activity log in id order and rebuilds every chat's owner and every agent's
load from it: the concurrency storms (tests/chaos/test_storms.py) use it too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from store import Activity, ActivityKind, AgentStatus, Chat, ChatStatus, Message, User

# Every kind of violation the checker reports, in the order it prints them.
KINDS = (
    "lost_ack",  # an acknowledged message is not stored
    "stored_twice",  # one message (by its content) stored more than once
    "ack_mismatch",  # stored under another seq or id than its ack said
    "seq_gap",  # a chat's seqs are not 1, 2, 3, ...
    "client_missed",  # a client's in-order view differs from the transcript, or stops short
    "two_agents",  # the log gives a chat to an agent while another has it
    "over_max_load",  # the log takes an agent above their max load
    "state_mismatch",  # the assignment actor, the store and the log disagree on who has what
)

_MAX_LOAD = re.compile(r"max load (\d+) -> (\d+)")


# --- the activity log ----------------------------------------------------------------------------


@dataclass(slots=True)
class Replay:
    """What the log ends with, and every rule it shows broken."""

    owners: dict[str, str] = field(default_factory=dict)  # open chat -> its agent
    loads: Counter[str] = field(default_factory=Counter)
    two_agents: list[str] = field(default_factory=list)
    over_max_load: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[str]:
        return self.two_agents + self.over_max_load


def replay(log: Iterable[Activity], max_loads: Mapping[str, int]) -> Replay:
    """Replay `log` (in id order) from agents with `max_loads` and no chats."""
    max_load = dict(max_loads)
    out = Replay()
    owner, load = out.owners, out.loads
    for entry in log:
        chat = entry.chat_id or ""
        match entry.kind:
            case ActivityKind.ASSIGNMENT if entry.to_value is not None:
                agent, previous = entry.to_value, entry.from_value
                if owner.get(chat) != previous:
                    had = owner.get(chat, "nobody")
                    out.two_agents.append(
                        f"{chat} given to {agent} from {previous or 'the queue'} while {had} had it"
                    )
                if chat in owner:
                    load[owner[chat]] -= 1
                owner[chat] = agent
                load[agent] += 1
                if load[agent] > max_load.get(agent, 0):
                    out.over_max_load.append(
                        f"{agent} took {chat}: load {load[agent]}/{max_load.get(agent, 0)}"
                    )
            case ActivityKind.ASSIGNMENT:
                if owner.get(chat) != entry.from_value:
                    out.two_agents.append(
                        f"{chat} taken from {entry.from_value} while "
                        f"{owner.get(chat, 'nobody')} had it"
                    )
                if chat in owner:
                    load[owner.pop(chat)] -= 1
            case ActivityKind.CHAT_STATUS if entry.to_value == ChatStatus.RESOLVED:
                if chat in owner:
                    load[owner.pop(chat)] -= 1
            case ActivityKind.AGENT_STATUS:
                if (change := _MAX_LOAD.fullmatch(entry.reason)) is not None:
                    max_load[entry.agent_id or ""] = int(change.group(2))
            case _:
                pass
    return out


def starting_max_loads(log: Iterable[Activity], agents: Iterable[User]) -> dict[str, int]:
    """Each agent's max load before the log began: what its first change started from, else what
    the store holds now (never changed)."""
    start = {agent.id: agent.max_load for agent in agents}
    changed: set[str] = set()
    for entry in log:
        agent_id = entry.agent_id or ""
        change = _MAX_LOAD.fullmatch(entry.reason)
        if entry.kind is ActivityKind.AGENT_STATUS and change and agent_id not in changed:
            start[agent_id] = int(change.group(1))
            changed.add(agent_id)
    return start


# --- the evidence --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AckRecord:
    """An ack a client received: the message is durable under this seq and id."""

    chat_id: str
    client_msg_id: str
    content: str
    seq: int
    message_id: str


@dataclass(frozen=True, slots=True)
class ClientView:
    """The messages one client showed for one chat, in the order it showed them."""

    who: str
    chat_id: str
    seen: tuple[tuple[int, str], ...]  # (seq, message id)
    complete: bool  # must have seen the whole transcript: the customer, the chat's last agent


@dataclass(frozen=True, slots=True)
class AgentState:
    """One agent as the assignment actor reported it (GET /admin/system)."""

    agent_id: str
    status: AgentStatus
    load: int
    max_load: int
    chat_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AssignmentState:
    agents: tuple[AgentState, ...]
    queued: tuple[str, ...]
    parked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Evidence:
    acks: Sequence[AckRecord]
    transcripts: Mapping[str, Sequence[Message]]  # every chat of the run, by id, seq order
    views: Sequence[ClientView]
    activity: Sequence[Activity]  # the whole log, id order
    agents: Sequence[User]  # as stored at the end
    chats: Sequence[Chat]  # as stored at the end
    assignment_actor: AssignmentState


@dataclass(slots=True)
class Verdict:
    violations: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    acks_checked: int = 0
    messages_checked: int = 0
    views_checked: int = 0
    deliveries_checked: int = 0
    assignments_replayed: int = 0

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in self.violations.items()}

    def lines(self, examples: int = 3) -> list[str]:
        out = [
            f"checked: {self.acks_checked} acks, {self.messages_checked} stored messages, "
            f"{self.views_checked} client views ({self.deliveries_checked} deliveries), "
            f"{self.assignments_replayed} assignment log entries",
            "violations: " + ", ".join(f"{kind} {n}" for kind, n in self.counts().items()),
        ]
        for kind, found in self.violations.items():
            out += [f"  {kind}: {text}" for text in found[:examples]]
        return out


# --- the checks ----------------------------------------------------------------------------------


def check(evidence: Evidence) -> Verdict:
    verdict = Verdict()
    _check_transcripts(evidence, verdict)
    _check_acks(evidence, verdict)
    _check_views(evidence, verdict)
    _check_assignments(evidence, verdict)
    return verdict


def _check_transcripts(evidence: Evidence, verdict: Verdict) -> None:
    contents: Counter[tuple[str, str]] = Counter()
    for chat_id, messages in evidence.transcripts.items():
        seqs = [message.seq for message in messages]
        if seqs != list(range(1, len(seqs) + 1)):
            verdict.violations["seq_gap"].append(f"{chat_id}: seqs {_runs(seqs)}")
        contents.update((chat_id, message.content) for message in messages)
        verdict.messages_checked += len(messages)
    for (chat_id, content), times in contents.items():
        if times > 1:
            verdict.violations["stored_twice"].append(f"{chat_id}: {content!r} {times} times")


def _check_acks(evidence: Evidence, verdict: Verdict) -> None:
    stored = {
        (message.chat_id, message.client_msg_id): message
        for messages in evidence.transcripts.values()
        for message in messages
    }
    for ack in evidence.acks:
        verdict.acks_checked += 1
        message = stored.get((ack.chat_id, ack.client_msg_id))
        if message is None:
            verdict.violations["lost_ack"].append(
                f"{ack.chat_id}: {ack.client_msg_id} acked as seq {ack.seq}, not stored"
            )
        elif (message.seq, message.id, message.content) != (ack.seq, ack.message_id, ack.content):
            verdict.violations["ack_mismatch"].append(
                f"{ack.chat_id}: {ack.client_msg_id} acked as seq {ack.seq} ({ack.message_id}), "
                f"stored as seq {message.seq} ({message.id})"
            )


def _check_views(evidence: Evidence, verdict: Verdict) -> None:
    for view in evidence.views:
        verdict.views_checked += 1
        transcript = evidence.transcripts.get(view.chat_id, ())
        expected = [(message.seq, message.id) for message in transcript]
        seen = list(view.seen)
        verdict.deliveries_checked += len(seen)
        where = f"{view.who} in {view.chat_id}"
        if seen != expected[: len(seen)]:
            first = next(
                (i for i, pair in enumerate(seen) if i >= len(expected) or pair != expected[i]),
                len(seen),
            )
            got = seen[first] if first < len(seen) else None
            want = expected[first] if first < len(expected) else None
            verdict.violations["client_missed"].append(
                f"{where}: showed {got} where the transcript has {want} (position {first + 1})"
            )
        elif view.complete and len(seen) < len(expected):
            verdict.violations["client_missed"].append(
                f"{where}: showed {len(seen)} of {len(expected)} messages"
            )


def _check_assignments(evidence: Evidence, verdict: Verdict) -> None:
    log = evidence.activity
    verdict.assignments_replayed = sum(1 for e in log if e.kind is ActivityKind.ASSIGNMENT)
    replayed = replay(log, starting_max_loads(log, evidence.agents))
    verdict.violations["two_agents"] += replayed.two_agents
    verdict.violations["over_max_load"] += replayed.over_max_load

    mismatches = verdict.violations["state_mismatch"]
    assignment_actor = evidence.assignment_actor
    held = {
        chat_id: agent.agent_id for agent in assignment_actor.agents for chat_id in agent.chat_ids
    }
    stored = {
        chat.id: chat.agent_id or "" for chat in evidence.chats if chat.status is ChatStatus.OPEN
    }
    for chat_id in sorted(set(held) | set(stored) | set(replayed.owners)):
        owners = (held.get(chat_id), stored.get(chat_id), replayed.owners.get(chat_id))
        if len(set(owners)) > 1:
            mismatches.append(
                f"{chat_id}: the assignment actor says {owners[0]}, the store {owners[1]}, "
                f"the log {owners[2]}"
            )
    waiting = {
        chat.id for chat in evidence.chats if chat.status in (ChatStatus.NEW, ChatStatus.PENDING)
    }
    not_held = set(assignment_actor.queued) | set(assignment_actor.parked)
    if waiting != not_held:
        mismatches.append(
            f"waiting chats: the store has {sorted(waiting - not_held)} that the assignment "
            f"actor does not queue or park; it has {sorted(not_held - waiting)} the store does not"
        )
    stored_agents = {agent.id: agent for agent in evidence.agents}
    for state in assignment_actor.agents:
        if state.load != len(state.chat_ids):
            mismatches.append(
                f"{state.agent_id}: load {state.load} with {len(state.chat_ids)} chats"
            )
        user = stored_agents.get(state.agent_id)
        if user is None or (user.status, user.max_load) != (state.status, state.max_load):
            as_stored = None if user is None else (str(user.status), user.max_load)
            mismatches.append(
                f"{state.agent_id}: {state.status} with max load {state.max_load} in the "
                f"assignment actor, {as_stored} in the store"
            )


def _runs(seqs: Sequence[int]) -> str:
    """`1-4, 6, 9-10`: a short picture of a list of seqs."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    parts = [str(first) if first == last else f"{first}-{last}" for first, last in runs]
    return ", ".join(parts[:20]) + (" ..." if len(parts) > 20 else "")
