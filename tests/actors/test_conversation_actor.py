"""The ConversationActor: gapless seqs, dedupe, persist-before-ack, who may write, passivation,
and that a crash mid-traffic loses nothing that was acknowledged.

Each test opens a chat with `ann` online so it is assigned; senders are `Speaker`s.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing

from actors import MessageAdded, Speaker, System, open_system
from router import ActorDead, HandlerCrashed, Refused
from store import Actor as By
from store import MemoryStore, Message, MessageStatus, Priority, Role, StoreError
from tests.actors.conftest import IDLE, Recorder, online, seed_agents, settle

CUSTOMER = Speaker("cust-1", Role.CUSTOMER)
ANN = Speaker("ann", Role.AGENT)


async def assigned_chat(system: System) -> str:
    await online(system, "ann")
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    return opened.chat.id


async def test_seqs_have_no_gaps_under_concurrent_senders(
    system: System, store: MemoryStore
) -> None:
    chat_id = await assigned_chat(system)
    acks: list[int] = []

    async def send(speaker: Speaker, n: int) -> None:
        sent = await system.send_message(
            chat_id, speaker, client_msg_id=f"{speaker.user_id}-{n}", content=f"#{n}"
        )
        acks.append(sent.message.seq)

    async with trio.open_nursery() as nursery:
        for n in range(25):
            nursery.start_soon(send, CUSTOMER, n)
            nursery.start_soon(send, ANN, n)
    stored = await store.list_messages(chat_id)
    assert [message.seq for message in stored] == list(range(1, 51))
    assert sorted(acks) == list(range(1, 51))
    chat = await store.get_chat(chat_id)
    assert chat is not None
    assert chat.last_seq == 50


async def test_ack_comes_after_the_message_is_stored_and_fanned_out(
    system: System, store: MemoryStore
) -> None:
    ann_tab = await online(system, "ann")
    customer = Recorder("cust-1")
    await system.connect(customer.session, Role.CUSTOMER)
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    sent = await system.send_message(opened.chat.id, CUSTOMER, client_msg_id="a", content="hi")
    assert await store.get_message(sent.message.id) == sent.message
    assert sent.message.receiver_id == "ann"
    assert [e.message for e in ann_tab.of(MessageAdded)] == [sent.message]
    assert [e.message for e in customer.of(MessageAdded)] == [sent.message]


async def test_a_resent_client_msg_id_is_acked_again_and_stored_once(
    system: System, store: MemoryStore
) -> None:
    chat_id = await assigned_chat(system)
    first = await system.send_message(chat_id, CUSTOMER, client_msg_id="dup", content="once")
    again = await system.send_message(chat_id, CUSTOMER, client_msg_id="dup", content="once")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.message == first.message
    assert len(await store.list_messages(chat_id)) == 1
    with pytest.raises(Refused) as refused:
        await system.send_message(chat_id, ANN, client_msg_id="dup", content="mine")
    assert refused.value.code == "client_msg_id_taken"


@pytest.mark.parametrize(
    ("speaker", "code"),
    [
        (Speaker("cust-2", Role.CUSTOMER), "not_a_participant"),
        (Speaker("bob", Role.AGENT), "not_a_participant"),
        (Speaker("admin", Role.ADMIN), "not_a_participant"),
    ],
)
async def test_outsiders_cannot_write_and_nothing_is_stored(
    system: System, store: MemoryStore, speaker: Speaker, code: str
) -> None:
    chat_id = await assigned_chat(system)
    with pytest.raises(Refused) as refused:
        await system.send_message(chat_id, speaker, client_msg_id="x", content="let me in")
    assert refused.value.code == code
    assert await store.list_messages(chat_id) == []


async def test_a_resolved_chat_takes_no_more_messages(system: System, store: MemoryStore) -> None:
    chat_id = await assigned_chat(system)
    await system.resolve_chat(chat_id, by=By.SELF, actor_id="ann")
    with pytest.raises(Refused) as refused:
        await system.send_message(chat_id, CUSTOMER, client_msg_id="late", content="hello?")
    assert refused.value.code == "chat_resolved"
    history = await system.history(chat_id, ANN, after_seq=0, limit=10)
    assert history.messages == ()


async def test_unknown_chat_is_refused(system: System) -> None:
    with pytest.raises(Refused) as refused:
        await system.send_message("nope", CUSTOMER, client_msg_id="x", content="?")
    assert refused.value.code == "chat_not_found"


async def test_read_marks_seen_and_tells_the_other_side(system: System, store: MemoryStore) -> None:
    ann_tab = await online(system, "ann")
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    chat_id = opened.chat.id
    for n in range(3):
        await system.send_message(chat_id, CUSTOMER, client_msg_id=f"m{n}", content="?")
    changed = await system.mark_read(chat_id, ANN, seq=2, status=MessageStatus.SEEN)
    assert changed == 2
    statuses = [message.status for message in await store.list_messages(chat_id)]
    assert statuses == [MessageStatus.SEEN, MessageStatus.SEEN, MessageStatus.SENT]
    await system.typing(chat_id, CUSTOMER, on=True)
    await settle()
    kinds = [type(event).__name__ for event in ann_tab.events[-1:]]
    assert kinds == ["TypingEvent"]


async def test_history_pages_and_says_when_it_is_incomplete(system: System) -> None:
    chat_id = await assigned_chat(system)
    for n in range(5):
        await system.send_message(chat_id, CUSTOMER, client_msg_id=f"m{n}", content=str(n))
    tail = await system.history(chat_id, CUSTOMER, after_seq=2, limit=10)
    assert [m.seq for m in tail.messages] == [3, 4, 5]
    assert tail.complete
    head = await system.history(chat_id, ANN, after_seq=0, limit=2)
    assert ([m.seq for m in head.messages], head.complete, head.last_seq) == ([1, 2], False, 5)
    with pytest.raises(Refused):
        await system.history(chat_id, Speaker("cust-2", Role.CUSTOMER), after_seq=0, limit=10)


async def test_idle_conversation_passivates_and_comes_back_with_its_state(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    chat_id = await assigned_chat(system)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")

    def running() -> bool:
        return any(info.name == f"chat:{chat_id}" for info in system._actors.snapshot())

    await trio.sleep(IDLE / 2)
    assert running()
    await trio.sleep(IDLE)
    assert not running()
    sent = await system.send_message(chat_id, ANN, client_msg_id="m2", content="two")
    assert sent.message.seq == 2
    resent = await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")
    assert resent.duplicate
    assert resent.message.seq == 1


class CrashingStore(MemoryStore):
    """Fails every `fail_every`-th append after the write was made durable: the worst case, an
    error that hides a success."""

    fail_every = 0
    appends = 0

    async def append_message(self, message: Message) -> Message:
        stored = await super().append_message(message)
        self.appends += 1
        if self.fail_every and self.appends % self.fail_every == 0:
            raise StoreError("connection reset after commit")
        return stored


async def test_crash_mid_traffic_loses_nothing_acknowledged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CrashingStore()
    await seed_agents(store)
    store.fail_every = 7
    acked: dict[str, int] = {}
    async with open_system(store) as system:
        chat_id = await assigned_chat(system)

        async def send_until_acked(speaker: Speaker, client_msg_id: str) -> None:
            # What a client does: resend with the same id until it gets an ack.
            while True:
                try:
                    sent = await system.send_message(
                        chat_id, speaker, client_msg_id=client_msg_id, content=client_msg_id
                    )
                except (HandlerCrashed, ActorDead):
                    # The chat crashed (or was given up after crashing too often): back off on
                    # the virtual clock, then resend.
                    await trio.sleep(1)
                    continue
                acked[client_msg_id] = sent.message.seq
                return

        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(send_until_acked, CUSTOMER, f"c{n}")
                nursery.start_soon(send_until_acked, ANN, f"a{n}")
    stored = await store.list_messages(chat_id)
    # Every 7th append failed after its commit: the resend found it instead of storing it again.
    assert store.appends == 60
    assert [m.seq for m in stored] == list(range(1, 61))
    assert {m.client_msg_id: m.seq for m in stored} == acked


async def test_a_chat_counter_behind_its_messages_does_not_reuse_a_seq(
    system: System, store: MemoryStore
) -> None:
    chat_id = await assigned_chat(system)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")
    chat = await store.get_chat(chat_id)
    assert chat is not None
    # As after a lost connection between the insert and the counter update: the message is
    # stored, the counter still says 0. A fresh incarnation must continue after the message.
    await store.restore_chat(replace(chat, last_seq=0))
    await system._actors.stop(f"chat:{chat_id}")
    sent = await system.send_message(chat_id, ANN, client_msg_id="m2", content="two")
    assert sent.message.seq == 2
    assert [m.seq for m in await store.list_messages(chat_id)] == [1, 2]


async def test_a_message_to_an_offline_reader_leaves_one_notification_per_chat(
    system: System, store: MemoryStore
) -> None:
    ann_tab = await online(system, "ann")
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    chat_id = opened.chat.id
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="hello")
    assert await store.count_unread_notifications("ann") == 0  # she is online
    await system.disconnect(ann_tab.session, Role.AGENT)  # her grace period starts
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m2", content="anyone there?")
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m3", content="hello??")
    notifications, total = await store.list_notifications("ann")
    assert total == 1
    assert (notifications[0].chat_id, notifications[0].body) == (chat_id, "anyone there?")
    await system.send_message(chat_id, ANN, client_msg_id="a1", content="here")
    # The customer has no live connection in this test either: the reply waits for them.
    assert await store.count_unread_notifications("cust-1") == 1


async def test_a_chat_deleted_under_its_conversation_is_refused_not_a_crash(
    system: System, store: MemoryStore
) -> None:
    """Deleted by something else than the conversation (another node, a tool): the receipt is
    refused as a missing chat and the conversation stops, with no restart that cannot load."""
    chat_id = await assigned_chat(system)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="a", content="hi")
    assert await store.delete_chat(chat_id)
    with pytest.raises(Refused) as refused:
        await system.mark_read(chat_id, ANN, seq=1, status=MessageStatus.SEEN)
    assert refused.value.code == "chat_not_found"
    await settle()
    assert f"chat:{chat_id}" not in {actor.name for actor in system.actor_states()}
    assert not any(actor.restarts for actor in system.actor_states())


async def test_delete_resolves_then_the_conversation_deletes_and_stops(
    system: System, store: MemoryStore
) -> None:
    chat_id = await assigned_chat(system)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="a", content="hi")
    assert await system.delete_chat(chat_id, actor_id="admin")
    assert await store.get_chat(chat_id) is None
    assert await store.list_messages(chat_id) == []
    assert system.route(chat_id) is None
    snapshot = await system.snapshot()
    assert next(agent for agent in snapshot.core.agents if agent.agent_id == "ann").load == 0
    assert f"chat:{chat_id}" not in {actor.name for actor in system.actor_states()}
    assert not await system.delete_chat(chat_id, actor_id="admin")
    with pytest.raises(Refused) as refused:
        await system.send_message(chat_id, CUSTOMER, client_msg_id="b", content="again")
    assert refused.value.code == "chat_not_found"
