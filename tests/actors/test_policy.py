"""The assignment rules of actors.policy: agent choice, its reason, and the queue order key.

Hypothesis properties for `choose_agent` (the choice is eligible, least loaded, idle longest among
equals, deterministic, None only when nobody is eligible; the reason stays bounded) and for
`queue_key` (re-queued first by arrival, priority order, FIFO within a priority, starvation
promotion bounded and sufficient), plus examples of the reason text.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.policy import (
    MAX_NAMED_CANDIDATES,
    PRIORITY_ORDER,
    Candidate,
    choose_agent,
    effective_priority,
    is_eligible,
    priority_rank,
    queue_key,
    rank_key,
)
from store._records import AgentStatus, Priority

STARVATION = 120.0


def candidate(
    agent_id: str,
    load: int,
    *,
    max_load: int = 3,
    idle_since: float = 0.0,
    status: AgentStatus = AgentStatus.AVAILABLE,
    connections: int = 1,
) -> Candidate:
    return Candidate(agent_id, status, connections, load, max_load, idle_since)


candidates_strategy = st.lists(
    st.builds(
        Candidate,
        agent_id=st.text("abcdefgh", min_size=1, max_size=3),
        status=st.sampled_from(AgentStatus),
        connections=st.integers(0, 2),
        load=st.integers(0, 5),
        max_load=st.integers(1, 5),
        # Few distinct values, so that ties in idle time are common.
        idle_since=st.integers(0, 5).map(float),
    ),
    max_size=12,
    unique_by=lambda c: c.agent_id,
)


# --- choose_agent --------------------------------------------------------------------------------


@given(candidates_strategy)
def test_choice_is_none_exactly_when_nobody_is_eligible(candidates: list[Candidate]) -> None:
    choice = choose_agent(candidates, now=10.0)
    assert (choice is None) == (not any(is_eligible(c) for c in candidates))


@given(candidates_strategy)
def test_choice_is_eligible_least_loaded_then_idle_longest(candidates: list[Candidate]) -> None:
    choice = choose_agent(candidates, now=10.0)
    if choice is None:
        return
    by_id = {c.agent_id: c for c in candidates}
    chosen = by_id[choice.agent_id]
    eligible = [c for c in candidates if is_eligible(c)]
    assert is_eligible(chosen)
    assert all(c.load >= chosen.load for c in eligible)
    equally_loaded = [c for c in eligible if c.load == chosen.load]
    assert all(c.idle_since >= chosen.idle_since for c in equally_loaded)
    assert all(
        c.agent_id >= chosen.agent_id for c in equally_loaded if c.idle_since == chosen.idle_since
    )


@given(candidates_strategy, st.randoms(use_true_random=False))
def test_choice_does_not_depend_on_candidate_order(
    candidates: list[Candidate], rng: random.Random
) -> None:
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    assert choose_agent(shuffled, now=10.0) == choose_agent(candidates, now=10.0)


@given(candidates_strategy)
def test_reason_names_at_most_five_candidates_and_counts_the_rest(
    candidates: list[Candidate],
) -> None:
    choice = choose_agent(candidates, now=10.0)
    if choice is None:
        return
    eligible = sorted((c for c in candidates if is_eligible(c)), key=rank_key)
    named = choice.reason.split("; candidates: ")[1].split(", ")
    assert len(named) <= MAX_NAMED_CANDIDATES + 1
    shown = eligible[:MAX_NAMED_CANDIDATES]
    assert [entry.split(" ")[0] for entry in named[: len(shown)]] == [c.agent_id for c in shown]
    if len(eligible) > MAX_NAMED_CANDIDATES:
        assert named[-1] == f"+{len(eligible) - MAX_NAMED_CANDIDATES} more"


def test_reason_example() -> None:
    candidates = [
        candidate("cy", 2, idle_since=0.0),
        candidate("bob", 1, idle_since=88.0),
        candidate("ann", 1, idle_since=60.0),
        candidate("dee", 0, status=AgentStatus.AWAY),
        candidate("eve", 0, connections=0),
    ]
    choice = choose_agent(candidates, now=100.0)
    assert choice is not None
    assert choice.agent_id == "ann"
    assert choice.reason == (
        "least loaded (1/3), idle longest; candidates: ann 1/3 idle 40s, bob 1/3 idle 12s, cy 2/3"
    )


def test_reason_without_a_tie_and_with_a_tie_on_idle_time() -> None:
    alone = choose_agent([candidate("ann", 0, idle_since=5.0), candidate("bob", 2)], now=5.0)
    assert alone is not None
    assert alone.reason == "least loaded (0/3); candidates: ann 0/3 idle 0s, bob 2/3"
    tied = choose_agent([candidate("bob", 1), candidate("ann", 1)], now=7200.0)
    assert tied is not None
    assert tied.agent_id == "ann"
    assert tied.reason == (
        "least loaded (1/3), idle longest, then agent id; "
        "candidates: ann 1/3 idle 2h, bob 1/3 idle 2h"
    )


def test_reason_is_bounded_for_many_candidates() -> None:
    candidates = [candidate(f"a{i:02}", i % 3, max_load=9, idle_since=float(i)) for i in range(40)]
    choice = choose_agent(candidates, now=300.0)
    assert choice is not None
    assert choice.agent_id == "a00"
    assert choice.reason.endswith("+35 more")
    assert choice.reason.count("/9") == 1 + MAX_NAMED_CANDIDATES


def test_load_is_compared_as_a_count_not_a_fraction() -> None:
    choice = choose_agent(
        [candidate("ann", 1, max_load=2, idle_since=0.0), candidate("bob", 1, max_load=9)],
        now=1.0,
    )
    assert choice is not None
    assert choice.agent_id == "ann"


@pytest.mark.parametrize(
    ("status", "connections", "load", "eligible"),
    [
        (AgentStatus.AVAILABLE, 1, 2, True),
        (AgentStatus.AVAILABLE, 0, 0, False),
        (AgentStatus.AVAILABLE, 2, 3, False),
        (AgentStatus.BUSY, 1, 0, False),
        (AgentStatus.AWAY, 1, 0, False),
    ],
)
def test_is_eligible(status: AgentStatus, connections: int, load: int, eligible: bool) -> None:
    c = candidate("ann", load, status=status, connections=connections)
    assert is_eligible(c) is eligible


# --- queue_key -----------------------------------------------------------------------------------

priorities = st.sampled_from(Priority)
times = st.integers(0, 2000).map(float)


@given(priorities, st.integers(0, 100), st.integers(1, 100), times, times, times)
def test_fifo_within_a_priority(
    priority: Priority,
    arrival: int,
    gap: int,
    since: float,
    later_by: float,
    waited: float,
) -> None:
    # Arrivals are numbered as chats enter the queue, so a later arrival started waiting later.
    earlier = queue_key(priority, False, arrival, since, since + later_by + waited, STARVATION)
    later = queue_key(
        priority, False, arrival + gap, since + later_by, since + later_by + waited, STARVATION
    )
    assert earlier < later


@given(priorities, priorities, st.integers(0, 100), st.integers(0, 100), times, times)
def test_requeued_chats_come_first_in_arrival_order(
    requeued_priority: Priority,
    other_priority: Priority,
    arrival: int,
    other_arrival: int,
    since: float,
    waited: float,
) -> None:
    now = since + waited
    requeued = queue_key(requeued_priority, True, arrival, since, now, STARVATION)
    fresh = queue_key(other_priority, False, other_arrival, 0.0, now, STARVATION)
    assert requeued < fresh
    other_requeued = queue_key(other_priority, True, other_arrival, 0.0, now, STARVATION)
    assert (requeued < other_requeued) == (arrival < other_arrival)


@given(priorities, priorities, st.integers(0, 100), st.integers(0, 100), st.floats(0, 119))
def test_higher_priority_first_before_any_promotion(
    first: Priority, second: Priority, arrival: int, other_arrival: int, waited: float
) -> None:
    key = queue_key(first, False, arrival, 0.0, waited, STARVATION)
    other = queue_key(second, False, other_arrival, 0.0, waited, STARVATION)
    if priority_rank(first) > priority_rank(second):
        assert key < other


@given(priorities, st.floats(0, 10_000), st.floats(0, 10_000))
def test_promotion_is_one_level_per_period_capped_and_monotonic(
    priority: Priority, waited: float, more: float
) -> None:
    promoted = effective_priority(priority, waited, STARVATION)
    steps = priority_rank(promoted) - priority_rank(priority)
    headroom = priority_rank(Priority.URGENT) - priority_rank(priority)
    assert steps == min(int(waited // STARVATION), headroom)
    assert priority_rank(effective_priority(priority, waited + more, STARVATION)) >= (
        priority_rank(promoted)
    )


@given(priorities, priorities, st.integers(0, 100), st.integers(1, 100), times, times)
def test_starvation_wait_is_bounded(
    priority: Priority,
    newcomer_priority: Priority,
    arrival: int,
    gap: int,
    newcomer_delay: float,
    extra: float,
) -> None:
    # After (urgent - priority) periods a chat competes as urgent, ahead of every later arrival.
    bound = (priority_rank(Priority.URGENT) - priority_rank(priority)) * STARVATION
    now = bound + extra
    old = queue_key(priority, False, arrival, 0.0, now, STARVATION)
    newcomer = queue_key(
        newcomer_priority, False, arrival + gap, min(newcomer_delay, now), now, STARVATION
    )
    assert old < newcomer


def test_old_low_chat_overtakes_new_high_ones_after_two_periods() -> None:
    def low_at(now: float) -> tuple[int, int, int]:
        return queue_key(Priority.LOW, False, 1, 0.0, now, STARVATION)

    def new_high(now: float) -> tuple[int, int, int]:
        return queue_key(Priority.HIGH, False, 2, now, now, STARVATION)

    assert new_high(239.0) < low_at(239.0)
    assert low_at(240.0) < new_high(240.0)
    assert [effective_priority(Priority.LOW, t, STARVATION) for t in (0, 119, 120, 360, 9e9)] == [
        Priority.LOW,
        Priority.LOW,
        Priority.MEDIUM,
        Priority.URGENT,
        Priority.URGENT,
    ]
    assert PRIORITY_ORDER[-1] is Priority.URGENT
