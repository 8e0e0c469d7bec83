"""The crash/restart checker (tools/chaos_check.py) on doctored evidence: each kind of violation
it reports is produced by one change to a consistent run, and only that kind, so a green chaos
run means the checks ran, not that they cannot fail."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from store import (
    ActedBy,
    Activity,
    ActivityKind,
    AgentStatus,
    Chat,
    ChatStatus,
    Message,
    Role,
    User,
)
from tools.chaos_check import (
    KINDS,
    AckRecord,
    AgentState,
    AssignmentState,
    ClientView,
    Evidence,
    check,
    replay,
    starting_max_loads,
)

AT = datetime(2030, 1, 1, tzinfo=UTC)
ANN, BOB = "ann", "bob"


def _message(chat_id: str, seq: int, sender: str) -> Message:
    client_msg_id = f"{sender}{seq}"
    return Message(
        id=f"m-{chat_id}-{seq}",
        chat_id=chat_id,
        seq=seq,
        client_msg_id=client_msg_id,
        sender_id=sender,
        sender_role=Role.CUSTOMER if sender.startswith("cust") else Role.AGENT,
        content=f"{chat_id} {client_msg_id}",
    )


def _entry(n: int, kind: ActivityKind, **fields: str | None) -> Activity:
    reason = fields.pop("reason", None) or "test"
    return Activity(id=f"{n:04d}", kind=kind, actor=ActedBy.SYSTEM, reason=reason, at=AT, **fields)


def consistent() -> Evidence:
    """Two chats, four messages each: c1 with ann all along, c2 moved from ann to bob; ann's max
    load raised from 1 to 2 on the way, so the replay must follow max-load changes."""
    transcripts = {
        chat: [_message(chat, seq, "cust" if seq % 2 else "agent") for seq in range(1, 5)]
        for chat in ("c1", "c2")
    }
    acks = [
        AckRecord(m.chat_id, m.client_msg_id, m.content, m.seq, m.id)
        for messages in transcripts.values()
        for m in messages
    ]
    views = [
        ClientView("customer", chat, tuple((m.seq, m.id) for m in messages), complete=True)
        for chat, messages in transcripts.items()
    ] + [
        ClientView(ANN, "c2", ((1, "m-c2-1"),), complete=False),
        ClientView(BOB, "c2", tuple((m.seq, m.id) for m in transcripts["c2"]), complete=True),
    ]
    activity = [
        _entry(1, ActivityKind.ASSIGNMENT, chat_id="c1", agent_id=ANN, to_value=ANN),
        _entry(2, ActivityKind.AGENT_STATUS, agent_id=ANN, reason="max load 1 -> 2"),
        _entry(3, ActivityKind.ASSIGNMENT, chat_id="c2", agent_id=ANN, to_value=ANN),
        _entry(4, ActivityKind.ASSIGNMENT, chat_id="c2", agent_id=BOB, from_value=ANN,
               to_value=BOB),
    ]  # fmt: skip
    agents = [
        User(ANN, "ann@x.example", "Ann", Role.AGENT, status=AgentStatus.AVAILABLE, max_load=2),
        User(BOB, "bob@x.example", "Bob", Role.AGENT, status=AgentStatus.BUSY, max_load=1),
    ]
    chats = [
        Chat("c1", "cust1", "one", status=ChatStatus.OPEN, agent_id=ANN, last_seq=4),
        Chat("c2", "cust2", "two", status=ChatStatus.OPEN, agent_id=BOB, last_seq=4),
    ]
    assignment_actor = AssignmentState(
        agents=(
            AgentState(ANN, AgentStatus.AVAILABLE, 1, 2, ("c1",)),
            AgentState(BOB, AgentStatus.BUSY, 1, 1, ("c2",)),
        ),
        queued=(),
        parked=(),
    )
    return Evidence(acks, transcripts, views, activity, agents, chats, assignment_actor)


def test_a_consistent_run_passes_and_everything_is_counted() -> None:
    verdict = check(consistent())
    assert verdict.ok, verdict.lines()
    assert verdict.counts() == dict.fromkeys(KINDS, 0)
    assert (verdict.acks_checked, verdict.messages_checked, verdict.views_checked) == (8, 8, 4)
    assert verdict.deliveries_checked == 4 + 4 + 1 + 4
    assert verdict.assignments_replayed == 3


def _transcript(evidence: Evidence, chat: str, messages: list[Message]) -> Evidence:
    return dataclasses.replace(evidence, transcripts={**evidence.transcripts, chat: messages})


def _lose_acked(e: Evidence) -> Evidence:
    return _transcript(e, "c1", list(e.transcripts["c1"][:3]))


def _store_twice(e: Evidence) -> Evidence:
    again = dataclasses.replace(e.transcripts["c1"][1], id="m-again", seq=5, client_msg_id="x")
    return _transcript(e, "c1", [*e.transcripts["c1"], again])


def _ack_other_seq(e: Evidence) -> Evidence:
    return dataclasses.replace(e, acks=[dataclasses.replace(e.acks[0], seq=2), *e.acks[1:]])


def _skip_a_seq(e: Evidence) -> Evidence:
    messages = list(e.transcripts["c2"])
    messages[3] = dataclasses.replace(messages[3], seq=5)
    acks = [a for a in e.acks if (a.chat_id, a.seq) != ("c2", 4)]
    views = [v for v in e.views if v.chat_id != "c2" or v.who == ANN]
    return dataclasses.replace(_transcript(e, "c2", messages), acks=acks, views=views)


def _show_out_of_order(e: Evidence) -> Evidence:
    view = e.views[0]
    seen = (view.seen[1], view.seen[0], *view.seen[2:])
    return dataclasses.replace(e, views=[dataclasses.replace(view, seen=seen), *e.views[1:]])


def _stop_short(e: Evidence) -> Evidence:
    view = e.views[-1]  # bob, who has c2 at the end
    return dataclasses.replace(
        e, views=[*e.views[:-1], dataclasses.replace(view, seen=view.seen[:3])]
    )


def _give_twice(e: Evidence) -> Evidence:
    # The reassignment to bob, logged as if from the queue: ann would still have had c2.
    activity = list(e.activity)
    activity[3] = dataclasses.replace(activity[3], from_value=None)
    return dataclasses.replace(e, activity=activity)


def _overload(e: Evidence) -> Evidence:
    # ann takes c2 before her max load is raised: 2/1.
    first, raised, second, moved = e.activity
    return dataclasses.replace(e, activity=[first, second, raised, moved])


def _forget_in_the_actor(e: Evidence) -> Evidence:
    ann, bob = e.assignment_actor.agents
    assignment_actor = dataclasses.replace(
        e.assignment_actor,
        agents=(dataclasses.replace(ann, chat_ids=(), load=0), bob),
        queued=("c1",),
    )
    return dataclasses.replace(e, assignment_actor=assignment_actor)


def _disagree_on_max_load(e: Evidence) -> Evidence:
    ann, bob = e.assignment_actor.agents
    assignment_actor = dataclasses.replace(
        e.assignment_actor, agents=(ann, dataclasses.replace(bob, max_load=3))
    )
    return dataclasses.replace(e, assignment_actor=assignment_actor)


@pytest.mark.parametrize(
    ("doctor", "kind"),
    [
        (_lose_acked, "lost_ack"),
        (_store_twice, "stored_twice"),
        (_ack_other_seq, "ack_mismatch"),
        (_skip_a_seq, "seq_gap"),
        (_show_out_of_order, "client_missed"),
        (_stop_short, "client_missed"),
        (_give_twice, "two_agents"),
        (_overload, "over_max_load"),
        (_forget_in_the_actor, "state_mismatch"),
        (_disagree_on_max_load, "state_mismatch"),
    ],
)
def test_each_doctored_run_is_caught_as_its_kind(
    doctor: Callable[[Evidence], Evidence], kind: str
) -> None:
    verdict = check(doctor(consistent()))
    assert not verdict.ok
    found = {k for k, n in verdict.counts().items() if n}
    # Losing a message also leaves the clients that showed it out of step with the store.
    assert kind in found, verdict.lines()
    assert found <= {kind, "client_missed"}, verdict.lines()


def test_replay_follows_reassignment_release_and_resolution() -> None:
    log = [
        _entry(1, ActivityKind.ASSIGNMENT, chat_id="c1", agent_id=ANN, to_value=ANN),
        _entry(2, ActivityKind.ASSIGNMENT, chat_id="c1", from_value=ANN, to_value=None),
        _entry(3, ActivityKind.ASSIGNMENT, chat_id="c1", agent_id=BOB, to_value=BOB),
        _entry(4, ActivityKind.ASSIGNMENT, chat_id="c2", agent_id=ANN, to_value=ANN),
        _entry(5, ActivityKind.CHAT_STATUS, chat_id="c2", to_value=ChatStatus.RESOLVED),
    ]
    replayed = replay(log, {ANN: 1, BOB: 1})
    assert replayed.broken == []
    assert replayed.owners == {"c1": BOB}
    assert (replayed.loads[ANN], replayed.loads[BOB]) == (0, 1)
    # A release naming the wrong agent is caught too.
    wrong = [*log[:1], dataclasses.replace(log[1], from_value=BOB)]
    assert replay(wrong, {ANN: 1, BOB: 1}).two_agents


def test_starting_max_loads_come_from_the_first_change_else_the_store() -> None:
    log = [
        _entry(1, ActivityKind.AGENT_STATUS, agent_id=ANN, reason="max load 3 -> 6"),
        _entry(2, ActivityKind.AGENT_STATUS, agent_id=ANN, reason="max load 6 -> 5"),
        _entry(3, ActivityKind.AGENT_STATUS, agent_id=BOB, reason="available -> busy"),
    ]
    agents = [
        User(ANN, "a@x.example", "A", Role.AGENT, max_load=5),
        User(BOB, "b@x.example", "B", Role.AGENT, max_load=4),
    ]
    assert starting_max_loads(log, agents) == {ANN: 3, BOB: 4}
