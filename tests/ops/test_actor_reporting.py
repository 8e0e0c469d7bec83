"""The actor side of operations: the kernel reports each restart and whether an actor is running
(between a crash and its restart it is not: /readyz says so), and every assignment decision
maps to a bounded metric category, checked against the real assignment core."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing

from actors.assignment import AssignmentCore, Effect, StartGrace, Unassigned
from actors.reporting import report_decisions, unassigned_category
from router import open_actor_system
from store import ActedBy, AgentStatus, Priority
from telemetry import actor_restarted, exposition
from tests.ops.test_metrics import parse, value
from tests.router.sample_actors import Counter, CounterStore, Crash


def metric(name: str, **labels: str) -> float:
    return value(parse(exposition()[0].decode()), name, **labels)


async def test_a_restart_is_reported_and_the_actor_is_not_running_until_it_is_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    restarts: list[tuple[str, int]] = []
    restarted = trio.Event()

    def on_restart(name: str, count: int) -> None:
        restarts.append((name, count))
        restarted.set()

    store = CounterStore()
    async with open_actor_system(on_restart=on_restart) as system:
        counter = await system.spawn("counter:1", partial(Counter, store), mailbox_size=8)
        assert counter.running
        store.start_seconds = 5.0  # the next on_start takes a while
        await counter.tell(Crash())
        with trio.fail_after(1):
            while counter.restarts == 0:
                await trio.lowlevel.checkpoint()
        assert not counter.running  # restarting: alive (its mailbox takes messages), not running
        assert counter.alive
        with trio.fail_after(10):
            await restarted.wait()  # 5 s of virtual time: the restart's on_start
        assert counter.running
        assert restarts == [("counter:1", 1)]


def test_restarts_are_counted_by_actor_kind() -> None:
    before = metric("switchboard_actor_restarts_total", kind="chat")
    actor_restarted("chat:0006611b8525705a21181b94", 1)
    actor_restarted("chat:0006611b8525705a21181b95", 2)
    assert metric("switchboard_actor_restarts_total", kind="chat") - before == 2


def holder_of(core: AssignmentCore, chat_id: str) -> str:
    view = core.chat_view(chat_id)
    assert view is not None
    assert view.agent_id is not None
    return view.agent_id


def test_every_way_a_chat_moves_has_its_category() -> None:
    """Through the real core: each assignment is new, requeued or admin, and each reason the
    core gives for taking a chat away has a category of its own (none falls to `other`)."""
    core = AssignmentCore(starvation_after=120.0)
    effects: list[Effect] = []
    for agent_id in ("ann", "bob"):
        effects += core.agent_added(agent_id, max_load=2, now=0.0)
        effects += core.agent_connected(agent_id, 0.0)
        effects += core.set_status(agent_id, AgentStatus.AVAILABLE, by=ActedBy.SELF, now=0.0)
    effects += core.chat_opened("c1", priority=Priority.MEDIUM, now=1.0)  # new
    owner = holder_of(core, "c1")
    effects += core.set_status(owner, AgentStatus.AWAY, by=ActedBy.SELF, now=2.0)  # requeued
    effects += core.set_status(owner, AgentStatus.AVAILABLE, by=ActedBy.SELF, now=3.0)
    effects += core.reassign("c1", owner, by=ActedBy.ADMIN, now=4.0)  # admin
    effects += core.chat_parked("c1", by=ActedBy.SELF, now=5.0)
    effects += core.customer_wrote("c1", 6.0)  # requeued
    holder = holder_of(core, "c1")
    effects += core.agent_disconnected(holder, 7.0)
    grace = [effect for effect in effects if isinstance(effect, StartGrace)][-1]
    effects += core.grace_expired(holder, grace.token, 30.0)  # requeued to the other
    effects += core.agent_removed(holder_of(core, "c1"), 31.0)

    reasons = ("new", "requeued", "admin")
    before = {reason: metric("switchboard_assignments_total", reason=reason) for reason in reasons}
    report_decisions(effects)
    moved = {
        reason: metric("switchboard_assignments_total", reason=reason) - before[reason]
        for reason in reasons
    }
    assert moved == {"new": 1, "requeued": 3, "admin": 1}
    unassigned = [effect for effect in effects if isinstance(effect, Unassigned)]
    categories = [unassigned_category(effect.reason) for effect in unassigned]
    assert set(categories) == {"agent_away", "parked", "agent_disconnected", "agent_removed"}
    assert unassigned_category("restored without an available agent") == "restored"
    assert unassigned_category("a reason added later") == "other"
