"""The assignment rules: which agent gets a chat, and in which order waiting chats are served.

Pure functions of their arguments: no I/O and no clock (callers pass `now`, in seconds).

Choosing an agent
    Only an eligible agent is considered: status `available`, at least one live connection and
    load < max_load. Among those, the least loaded wins, compared by the plain number of open
    chats (load), not by load/max_load: an agent at 1/3 and one at 1/6 are equally loaded, because
    a high max load is a ceiling an agent accepts, not a wish to take more work than colleagues.
    Ties go to the agent idle longest (the smallest `idle_since`; the assignment core defines it
    as the later of the agent's last assignment and when they last became eligible), then to the
    smaller agent id, so the choice is deterministic. The reason given with a choice names the
    rule and the best-ranked candidates, e.g.
    "least loaded (1/3), idle longest; candidates: ann 1/3 idle 40s, bob 1/3 idle 12s, cy 2/3".

Queue order
    Chats that lost their agent (re-queued) come first, in order of arrival: they were already
    being served. Every other waiting chat is ordered by effective priority (urgent, high, medium,
    low) and then by arrival, so each priority is served first in, first out.

Starvation guard
    A waiting chat is promoted one priority level for every full `starvation_after` seconds it has
    waited, up to urgent: a low chat that has waited 3 * starvation_after competes as urgent and,
    having arrived earlier, is served before any urgent chat that arrived after it. So a stream of
    new high chats delays an old low chat by at most 2 * starvation_after. Promotion depends only
    on the waiting time, so within one priority older chats are never behind newer ones: FIFO
    within a priority still holds.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from store import AgentStatus, Priority

MAX_NAMED_CANDIDATES = 5

PRIORITY_ORDER: tuple[Priority, ...] = (
    Priority.LOW,
    Priority.MEDIUM,
    Priority.HIGH,
    Priority.URGENT,
)
_RANK = {priority: rank for rank, priority in enumerate(PRIORITY_ORDER)}
_TOP_RANK = len(PRIORITY_ORDER) - 1

QueueKey: TypeAlias = tuple[int, int, int]
RankKey: TypeAlias = tuple[int, float, str]


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: str
    status: AgentStatus
    connections: int
    load: int
    max_load: int
    idle_since: float


@dataclass(frozen=True, slots=True)
class Choice:
    agent_id: str
    reason: str


def is_eligible(candidate: Candidate) -> bool:
    return (
        candidate.status == AgentStatus.AVAILABLE
        and candidate.connections >= 1
        and candidate.load < candidate.max_load
    )


def rank_key(candidate: Candidate) -> RankKey:
    """Smaller is better: least loaded, then idle longest, then agent id."""
    return (candidate.load, candidate.idle_since, candidate.agent_id)


def choose_agent(candidates: Iterable[Candidate], *, now: float) -> Choice | None:
    """The eligible candidate to assign the next chat to, or None if nobody is eligible."""
    eligible = [candidate for candidate in candidates if is_eligible(candidate)]
    if not eligible:
        return None
    best = heapq.nsmallest(MAX_NAMED_CANDIDATES, eligible, key=rank_key)
    return Choice(best[0].agent_id, describe_choice(best, len(eligible), now=now))


def describe_choice(ranked: Sequence[Candidate], total: int, *, now: float) -> str:
    """The reason for choosing ranked[0].

    `ranked` holds the best eligible candidates in rank order (at most MAX_NAMED_CANDIDATES are
    named) and `total` counts all eligible candidates.
    """
    chosen = ranked[0]
    tied = [candidate for candidate in ranked if candidate.load == chosen.load]
    rule = f"least loaded ({chosen.load}/{chosen.max_load})"
    if len(tied) > 1:
        rule += ", idle longest"
        if tied[1].idle_since == chosen.idle_since:
            rule += ", then agent id"
    shown = ranked[:MAX_NAMED_CANDIDATES]
    named = [_describe_candidate(candidate, chosen.load, now) for candidate in shown]
    if total > len(shown):
        named.append(f"+{total - len(shown)} more")
    return f"{rule}; candidates: {', '.join(named)}"


def _describe_candidate(candidate: Candidate, least_load: int, now: float) -> str:
    text = f"{candidate.agent_id} {candidate.load}/{candidate.max_load}"
    # Idle time only decides between equally loaded agents, so only theirs is shown.
    if candidate.load == least_load:
        text += f" idle {_duration(now - candidate.idle_since)}"
    return text


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 100:
        return f"{seconds:.0f}s"
    if seconds < 100 * 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def priority_rank(priority: Priority) -> int:
    """0 for low up to 3 for urgent."""
    return _RANK[priority]


def effective_priority(priority: Priority, waited: float, starvation_after: float) -> Priority:
    """`priority` raised one level per full `starvation_after` seconds waited, capped at urgent."""
    promotions = int(waited // starvation_after) if waited > 0 else 0
    return PRIORITY_ORDER[min(_TOP_RANK, _RANK[priority] + promotions)]


def queue_key(
    priority: Priority,
    requeued: bool,
    arrival: int,
    waiting_since: float,
    now: float,
    starvation_after: float,
) -> QueueKey:
    """Sort key of a waiting chat at time `now`; the smallest key is served first.

    `arrival` is a counter that grows with each entry into the queue; a re-queued chat keeps the
    arrival it had, which also orders the re-queued tier.
    """
    if requeued:
        return (0, 0, arrival)
    promoted = effective_priority(priority, now - waiting_since, starvation_after)
    return (1, _TOP_RANK - _RANK[promoted], arrival)
