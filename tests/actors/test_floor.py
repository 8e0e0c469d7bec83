"""The floor feed (actors/floor.py): the whole floor to a new watcher, then only what changed,
coalesced; the queue's time-driven promotions; watchers that leave stop costing anything.

Everything runs on the autojump clock."""

from __future__ import annotations

import trio
import trio.testing

from actors import FloorUpdate, System, SystemConfig, open_system
from actors.floor import REFRESH_SECONDS
from store import ActedBy, AgentStatus, MemoryStore, Priority, Role
from tests.actors.conftest import Recorder, online

STARVATION = 30.0


async def watcher(system: System) -> Recorder:
    admin = Recorder("boss")
    await system.connect(admin.session, Role.ADMIN)
    await system.watch_floor(admin.user_id, admin.session.id)
    return admin


def updates(recorder: Recorder) -> list[FloorUpdate]:
    return recorder.of(FloorUpdate)


async def test_a_watcher_gets_the_whole_floor_then_only_what_changed(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    admin = await watcher(system)
    [whole] = updates(admin)
    assert whole.full
    rows = [(a.agent_id, a.name, a.status, a.connections, a.load, a.max_load) for a in whole.agents]
    assert rows == [
        ("ann", "Ann", AgentStatus.AWAY, 0, 0, 3),
        ("bob", "Bob", AgentStatus.AWAY, 0, 0, 2),
        ("cy", "Cy", AgentStatus.AWAY, 0, 0, 1),
    ]  # fmt: skip
    assert whole.queue == ()
    assert whole.queue_length == 0

    await online(system, "ann")
    await trio.sleep(REFRESH_SECONDS * 2)
    # Connecting and going available, two changes within one period: one update, ann only.
    [change] = updates(admin)[1:]
    assert not change.full
    assert [(a.agent_id, a.status, a.connections) for a in change.agents] == [
        ("ann", AgentStatus.AVAILABLE, 1)
    ]
    assert change.queue is None  # the queue did not change
    assert change.removed == ()

    opened = await system.open_chat(
        "cust-1", title="Parcel", description="", priority=Priority.HIGH
    )
    await trio.sleep(REFRESH_SECONDS * 2)
    [assigned] = updates(admin)[2:]
    [ann] = assigned.agents
    assert (ann.load, [(c.chat_id, c.title, c.priority) for c in ann.chats]) == (
        1,
        [(opened.chat.id, "Parcel", Priority.HIGH)],
    )

    await trio.sleep(60)
    assert len(updates(admin)) == 3, "nothing changed, nothing sent"


async def test_an_away_agent_connecting_and_leaving_shows_on_the_floor(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    # Connecting and leaving while away changes no status and no chat: only the connection
    # count, which the floor shows all the same.
    admin = await watcher(system)
    ann = Recorder("ann")
    await system.connect(ann.session, Role.AGENT)
    await trio.sleep(REFRESH_SECONDS * 2)
    await system.disconnect(ann.session, Role.AGENT)
    await trio.sleep(REFRESH_SECONDS * 2)
    seen = [[(a.agent_id, a.status, a.connections) for a in u.agents] for u in updates(admin)[1:]]
    assert seen == [[("ann", AgentStatus.AWAY, 1)], [("ann", AgentStatus.AWAY, 0)]]


async def test_the_queue_in_serving_order_and_its_promotions(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_system(store, SystemConfig(starvation_after_seconds=STARVATION)) as system:
        await check_queue_and_promotions(system)


async def check_queue_and_promotions(system: System) -> None:
    admin = await watcher(system)
    low = await system.open_chat("cust-1", title="Low", description="", priority=Priority.LOW)
    high = await system.open_chat("cust-2", title="High", description="", priority=Priority.HIGH)
    await trio.sleep(REFRESH_SECONDS * 2)
    queue = updates(admin)[-1].queue
    assert queue is not None
    assert [(e.chat_id, e.title, e.position, e.effective_priority) for e in queue] == [
        (high.chat.id, "High", 1, Priority.HIGH),
        (low.chat.id, "Low", 2, Priority.LOW),
    ]
    seen = len(updates(admin))
    # Nothing happens but time: the starvation guard raises the low chat, and the watcher hears
    # of it then, not at its next unrelated change.
    await trio.sleep(STARVATION + 1)
    assert len(updates(admin)) == seen + 1
    queue = updates(admin)[-1].queue
    assert queue is not None
    assert [(e.chat_id, e.effective_priority) for e in queue] == [
        (high.chat.id, Priority.URGENT),
        (low.chat.id, Priority.MEDIUM),
    ]
    assert queue[1].waiting_seconds >= STARVATION


async def test_watchers_that_leave_get_nothing_more(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    stays, leaves, unwatches = Recorder("a1"), Recorder("a2"), Recorder("a3")
    for admin in (stays, leaves, unwatches):
        await system.connect(admin.session, Role.ADMIN)
        await system.watch_floor(admin.user_id, admin.session.id)
    await system.disconnect(leaves.session, Role.ADMIN)
    await system.unwatch_floor(unwatches.session.id)

    await system.set_max_load("bob", 5, actor_id="a1")
    await trio.sleep(REFRESH_SECONDS * 2)
    assert [len(updates(r)) for r in (stays, leaves, unwatches)] == [2, 1, 1]
    [bob] = updates(stays)[-1].agents
    assert (bob.agent_id, bob.max_load) == ("bob", 5)


async def test_a_slow_watcher_is_closed_and_dropped(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    admin = await watcher(system)

    def full(event: object) -> None:
        raise trio.WouldBlock

    # The connection's outbox is full from now on.
    object.__setattr__(admin.session, "offer", full)
    await system.set_agent_status("cy", AgentStatus.AVAILABLE, by=ActedBy.ADMIN, actor_id="boss")
    await trio.sleep(REFRESH_SECONDS * 2)
    assert admin.closed == [(1013, "too slow reading events; reconnect and resume")]
