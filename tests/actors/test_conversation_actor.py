"""The ConversationActor: gapless seqs, dedupe, persist-before-ack, who may write, passivation,
and that a crash mid-traffic loses nothing that was acknowledged.

Each test opens a chat with `ann` online so it is assigned; senders are `Speaker`s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import pytest
import trio
import trio.testing

from actors import MessageAdded, Sent, Speaker, System, SystemConfig, open_system
from actors.messages import DeleteTranscript
from router import Refused
from store import (
    ActedBy,
    MemoryStore,
    Message,
    MessageStatus,
    Priority,
    Role,
    StoreError,
    StoreUnavailable,
)
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
    await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id="ann")
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
    await system.mark_read(chat_id, ANN, seq=2, status=MessageStatus.SEEN)
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


async def test_a_resolved_chats_conversation_passivates_after_the_short_quiet_time(
    system: System, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Resolved, it is gone after `conversation_closed_idle_seconds` without a message instead
    of the whole idle time; what still comes (a late receipt, a resend, a send that crossed
    the resolution, a history read) starts it again and gets the same answers as before."""
    chat_id = await assigned_chat(system)
    first = await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")
    closed_idle = system.config.conversation_closed_idle_seconds
    assert closed_idle < IDLE / 2

    def running() -> bool:
        return any(info.name == f"chat:{chat_id}" for info in system._actors.snapshot())

    await trio.sleep(IDLE / 2)
    await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id="ann")
    await trio.sleep(closed_idle / 2)
    assert running()  # the quiet time counts from the resolution, not the last message
    # A message within the quiet time pushes it back.
    await system.mark_read(chat_id, ANN, seq=1, status=MessageStatus.DELIVERED)
    await trio.sleep(closed_idle * 0.75)
    assert running()
    await trio.sleep(closed_idle / 2)
    assert not running()

    # Started again by what still comes, with the same answers.
    await system.mark_read(chat_id, ANN, seq=1, status=MessageStatus.SEEN)
    resent = await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")
    assert resent.duplicate
    assert (resent.message.id, resent.message.seq) == (first.message.id, 1)
    with pytest.raises(Refused) as refused:
        await system.send_message(chat_id, CUSTOMER, client_msg_id="m2", content="hello?")
    assert refused.value.code == "chat_resolved"
    history = await system.history(chat_id, CUSTOMER, after_seq=0, limit=10)
    assert [m.seq for m in history.messages] == [1]
    assert running()
    # Started for a resolved chat, it keeps only the short quiet time too.
    await trio.sleep(closed_idle * 1.5)
    assert not running()


async def test_an_active_chats_conversation_keeps_the_whole_idle_time(
    system: System, autojump_clock: trio.testing.MockClock
) -> None:
    """Another chat's resolution does not cut an active chat's idle time short."""
    chat_id = await assigned_chat(system)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")
    other = await system.open_chat("cust-2", title="Other", description="", priority=Priority.LOW)
    await system.send_message(
        other.chat.id, Speaker("cust-2", Role.CUSTOMER), client_msg_id="x", content="hi"
    )
    await system.resolve_chat(other.chat.id, by=ActedBy.SELF, actor_id="ann")
    await trio.sleep(system.config.conversation_closed_idle_seconds * 2)
    names = {info.name for info in system._actors.snapshot()}
    assert f"chat:{chat_id}" in names
    assert f"chat:{other.chat.id}" not in names


class CrashingStore(MemoryStore):
    """Fails every `fail_every`-th append after the write was made durable: the worst case, an
    error that hides a success. `appends` counts the messages stored."""

    fail_every = 0
    appends = 0
    calls = 0

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        stored = await super().append_messages(messages)
        self._written(len(stored))
        return stored

    async def append_message(self, message: Message) -> Message:
        stored = await super().append_message(message)
        self._written(1)
        return stored

    def _written(self, messages: int) -> None:
        self.appends += messages
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise StoreError("connection reset after commit")


async def test_a_write_failing_after_its_commit_loses_nothing_acknowledged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CrashingStore()
    await seed_agents(store)
    store.fail_every = 3
    acked: dict[str, int] = {}
    failed: list[str] = []
    async with open_system(store) as system:
        chat_id = await assigned_chat(system)

        async def send_until_acked(speaker: Speaker, client_msg_id: str) -> None:
            # What a client does: resend with the same id until it gets an ack.
            while True:
                try:
                    sent = await system.send_message(
                        chat_id, speaker, client_msg_id=client_msg_id, content=client_msg_id
                    )
                except StoreUnavailable:
                    # The write failed, perhaps after it committed: resend with the same id.
                    failed.append(client_msg_id)
                    await trio.sleep(1)
                    continue
                acked[client_msg_id] = sent.message.seq
                return

        async def converse(speaker: Speaker, name: str) -> None:
            for k in range(6):
                await send_until_acked(speaker, f"{name}-{k}")

        async with trio.open_nursery() as nursery:
            for n in range(5):  # in rounds of about ten sends, so of several batches
                nursery.start_soon(converse, CUSTOMER, f"c{n}")
                nursery.start_soon(converse, ANN, f"a{n}")
        # A failed write is answered, not a crash: the conversation caught up and went on.
        assert not any(actor.restarts for actor in system.actor_states())
    stored = await store.list_messages(chat_id)
    # Every 3rd append failed after its commit: the resends found them instead of storing them
    # again.
    assert store.calls >= 3
    assert failed
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


class GatedStore(MemoryStore):
    """Holds the first append of messages until `release` is set, so that the sends made
    meanwhile wait in the conversation's mailbox; records the size of every append call."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = trio.Event()
        self.release = trio.Event()
        self.runs: list[int] = []
        self.failing: dict[int, Exception] = {}  # by call number, from 1: raised instead

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        self.runs.append(len(messages))
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        failure = self.failing.get(len(self.runs))
        if failure is not None:
            raise failure
        return await super().append_messages(messages)

    async def append_message(self, message: Message) -> Message:
        self.runs.append(-1)  # one by one
        return await super().append_message(message)


async def _queued_behind_a_held_append(
    system: System, store: GatedStore, chat_id: str, sends: list[tuple[Speaker, str]]
) -> dict[str, Sent | type[Exception]]:
    """A first send holds the store; `sends` queue up behind it in this order; then the store
    goes on. Each client id's answer (or the type of its error)."""
    answers: dict[str, Sent | type[Exception]] = {}

    async def send(speaker: Speaker, client_msg_id: str) -> None:
        try:
            answers[client_msg_id] = await system.send_message(
                chat_id, speaker, client_msg_id=client_msg_id, content=client_msg_id
            )
        except (Refused, StoreUnavailable) as error:
            answers[client_msg_id] = type(error)

    with trio.fail_after(30):
        await _queue(send, store, sends)
    return answers


async def _queue(
    send: Callable[[Speaker, str], Awaitable[None]],
    store: GatedStore,
    sends: list[tuple[Speaker, str]],
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, CUSTOMER, "first")
        await store.holding.wait()
        for speaker, client_msg_id in sends:
            nursery.start_soon(send, speaker, client_msg_id)
            await settle()  # in the mailbox, in this order
        store.release.set()


@pytest.fixture
async def gated() -> GatedStore:
    store = GatedStore()
    await seed_agents(store)
    return store


async def test_sends_waiting_in_the_mailbox_are_stored_in_one_append(gated: GatedStore) -> None:
    async with open_system(gated) as system:
        ann_tab = await online(system, "ann")
        opened = await system.open_chat(
            "cust-1", title="Help", description="", priority=Priority.LOW
        )
        chat_id = opened.chat.id
        sends = [(CUSTOMER if n % 2 else ANN, f"m{n}") for n in range(10)]
        answers = await _queued_behind_a_held_append(system, gated, chat_id, sends)
        restarts = [actor.restarts for actor in system.actor_states()]
    assert gated.runs == [1, 10]
    stored = await gated.list_messages(chat_id)
    assert [m.seq for m in stored] == list(range(1, 12))
    assert [m.client_msg_id for m in stored] == ["first", *(cid for _, cid in sends)]
    assert {cid: a.message.seq for cid, a in answers.items() if isinstance(a, Sent)} == {
        m.client_msg_id: m.seq for m in stored
    }
    # Each ack came after its message was stored and fanned out, in seq order.
    assert [e.message.seq for e in ann_tab.of(MessageAdded)] == list(range(1, 12))
    assert not any(restarts)


async def test_a_refused_batch_is_appended_one_by_one_so_the_others_are_stored(
    gated: GatedStore,
) -> None:
    """A client id stored before the conversation restarted is no longer in its memory: the
    batch holding its resend is refused as a whole, then each is appended alone, the resend is
    answered with the stored message and the others are stored with no gap."""
    async with open_system(gated) as system:
        chat_id = await assigned_chat(system)
        gated.holding.set()  # nothing held yet
        before = await system.send_message(chat_id, CUSTOMER, client_msg_id="old", content="old")
        await system._actors.stop(f"chat:{chat_id}")
        gated.holding = trio.Event()
        sends = [
            (ANN, "a"),
            (CUSTOMER, "old"),
            (CUSTOMER, "b"),
            (Speaker("cust-2", Role.CUSTOMER), "c"),
        ]
        answers = await _queued_behind_a_held_append(system, gated, chat_id, sends)
    assert gated.runs == [1, 1, 3, -1, -1, -1]
    stored = await gated.list_messages(chat_id)
    assert [(m.seq, m.client_msg_id) for m in stored] == [
        (1, "old"),
        (2, "first"),
        (3, "a"),
        (4, "b"),
    ]
    resend = answers["old"]
    assert isinstance(resend, Sent)
    assert (resend.duplicate, resend.message) == (True, before.message)
    assert answers["c"] is Refused  # an outsider is refused alone, before anything is written
    for client_msg_id, seq in (("first", 2), ("a", 3), ("b", 4)):
        answer = answers[client_msg_id]
        assert isinstance(answer, Sent)
        assert (answer.duplicate, answer.message.seq) == (False, seq)


async def test_a_failed_append_answers_its_whole_batch_unavailable_and_the_chat_goes_on(
    gated: GatedStore,
) -> None:
    async with open_system(gated) as system:
        chat_id = await assigned_chat(system)
        gated.failing[2] = StoreUnavailable("the database is restarting")
        sends = [(ANN, "a"), (CUSTOMER, "b"), (ANN, "c")]
        answers = await _queued_behind_a_held_append(system, gated, chat_id, sends)
        assert gated.runs == [1, 3]
        assert {cid: answer for cid, answer in answers.items() if cid != "first"} == {
            "a": StoreUnavailable,
            "b": StoreUnavailable,
            "c": StoreUnavailable,
        }
        # The senders resend, with the same ids: stored after the first, with no gap.
        for speaker, client_msg_id in sends:
            sent = await system.send_message(
                chat_id, speaker, client_msg_id=client_msg_id, content=client_msg_id
            )
            assert not sent.duplicate
        restarts = [actor.restarts for actor in system.actor_states()]
    stored = await gated.list_messages(chat_id)
    assert [(m.seq, m.client_msg_id) for m in stored] == [
        (1, "first"),
        (2, "a"),
        (3, "b"),
        (4, "c"),
    ]
    assert not any(restarts)


async def test_a_seq_taken_behind_its_back_is_answered_unavailable_then_caught_up(
    system: System, store: MemoryStore
) -> None:
    chat_id = await assigned_chat(system)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="m1", content="one")
    # Another writer (a tool, a second owner for a moment) stores seq 2.
    other = replace((await store.list_messages(chat_id))[0], id="other", seq=2, client_msg_id="x")
    await store.append_message(other)
    with pytest.raises(StoreUnavailable):
        await system.send_message(chat_id, ANN, client_msg_id="m2", content="two")
    sent = await system.send_message(chat_id, ANN, client_msg_id="m2", content="two")
    assert (sent.duplicate, sent.message.seq) == (False, 3)
    assert [m.seq for m in await store.list_messages(chat_id)] == [1, 2, 3]
    assert not any(actor.restarts for actor in system.actor_states())


async def test_a_send_batched_behind_a_delete_is_not_written_to_the_gone_chat(
    gated: GatedStore,
) -> None:
    async with open_system(gated) as system:
        chat_id = await assigned_chat(system)
        outcomes: dict[str, object] = {}

        async def send(client_msg_id: str) -> None:
            try:
                outcomes[client_msg_id] = await system.send_message(
                    chat_id, CUSTOMER, client_msg_id=client_msg_id, content=client_msg_id
                )
            except Refused as refusal:
                outcomes[client_msg_id] = refusal.code

        async def delete() -> None:
            deleted: bool = await system._ask_conversation(chat_id, DeleteTranscript)
            outcomes["delete"] = deleted

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, "first")
                await gated.holding.wait()
                nursery.start_soon(delete)
                await settle()
                nursery.start_soon(send, "late")
                await settle()
                gated.release.set()
    assert outcomes["delete"] is True
    assert outcomes["late"] == "chat_not_found"
    assert await gated.list_messages(chat_id) == []


class ReceiptStore(MemoryStore):
    """Records every receipt as (reader, after_seq, up_to_seq, status)."""

    def __init__(self) -> None:
        super().__init__()
        self.receipts: list[tuple[str, int, int, MessageStatus]] = []

    async def mark_messages(
        self,
        chat_id: str,
        *,
        reader_id: str,
        up_to_seq: int,
        status: MessageStatus,
        after_seq: int = 0,
    ) -> None:
        self.receipts.append((reader_id, after_seq, up_to_seq, status))
        await super().mark_messages(
            chat_id, reader_id=reader_id, up_to_seq=up_to_seq, status=status, after_seq=after_seq
        )


@pytest.fixture
async def receipts() -> ReceiptStore:
    store = ReceiptStore()
    await seed_agents(store)
    return store


async def _statuses(store: MemoryStore, chat_id: str) -> list[str]:
    return [message.status.value for message in await store.list_messages(chat_id)]


async def test_a_receipt_starts_after_the_readers_last_one(
    receipts: ReceiptStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A receipt asks the store only about the seqs after the last receipt of the same reader
    with the same or a later status (so its cost does not grow with the chat); the first one
    after the conversation was passivated starts from the first message again."""
    delivered, seen = MessageStatus.DELIVERED, MessageStatus.SEEN
    async with open_system(receipts, SystemConfig(conversation_idle_seconds=IDLE)) as system:
        chat_id = await assigned_chat(system)
        for n in range(3):
            await system.send_message(chat_id, CUSTOMER, client_msg_id=f"c{n}", content="?")
        await system.mark_read(chat_id, ANN, seq=3, status=delivered)
        await system.send_message(chat_id, CUSTOMER, client_msg_id="c3", content="?")
        await system.send_message(chat_id, CUSTOMER, client_msg_id="c4", content="?")
        await system.send_message(chat_id, ANN, client_msg_id="a0", content="!")
        await system.mark_read(chat_id, ANN, seq=6, status=delivered)
        await system.mark_read(chat_id, ANN, seq=4, status=seen)
        await system.mark_read(chat_id, ANN, seq=6, status=delivered)
        await system.mark_read(chat_id, ANN, seq=6, status=seen)
        await system.mark_read(chat_id, CUSTOMER, seq=6, status=seen)
        assert await _statuses(receipts, chat_id) == ["seen"] * 6
        assert receipts.receipts == [
            ("ann", 0, 3, delivered),
            ("ann", 3, 6, delivered),
            ("ann", 0, 4, seen),
            ("ann", 6, 6, delivered),
            ("ann", 4, 6, seen),
            ("cust-1", 0, 6, seen),
        ]

        await trio.sleep(IDLE * 2)  # passivated: its memory of the receipts is gone
        receipts.receipts.clear()
        await system.send_message(chat_id, CUSTOMER, client_msg_id="c5", content="?")
        await system.mark_read(chat_id, ANN, seq=7, status=delivered)
        await system.mark_read(chat_id, ANN, seq=7, status=seen)
    assert receipts.receipts == [("ann", 0, 7, delivered), ("ann", 0, 7, seen)]
    assert await _statuses(receipts, chat_id) == ["seen"] * 7


async def test_a_receipt_past_the_last_message_still_leaves_later_ones_to_mark(
    receipts: ReceiptStore,
) -> None:
    """A client may name a seq not stored yet: its receipt covers only the messages there
    were, so the messages stored after it are marked by the next one."""
    async with open_system(receipts) as system:
        chat_id = await assigned_chat(system)
        await system.send_message(chat_id, CUSTOMER, client_msg_id="c0", content="?")
        await system.mark_read(chat_id, ANN, seq=10, status=MessageStatus.DELIVERED)
        await system.send_message(chat_id, CUSTOMER, client_msg_id="c1", content="?")
        await system.send_message(chat_id, CUSTOMER, client_msg_id="c2", content="?")
        await system.mark_read(chat_id, ANN, seq=3, status=MessageStatus.DELIVERED)
    assert [after for _, after, _, _ in receipts.receipts] == [0, 1]
    assert await _statuses(receipts, chat_id) == ["delivered"] * 3
