"""A chat pushed to its agent and customer (`ChatAssigned`) carries what the edges show of it:
the chat as stored after the decision, its agent's public fields and its last message, so that
neither the assignment actor nor a connection's writer reads the store for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from actors import AgentCard, ChatAssigned, Speaker, System
from store import (
    ActedBy,
    Chat,
    ChatStatus,
    MemoryStore,
    MessageStatus,
    Priority,
    Role,
    User,
    utcnow,
)
from tests.actors.conftest import Recorder, online, seed_agents, settle

CUSTOMER = Speaker("cust-1", Role.CUSTOMER)
ANN = Speaker("ann", Role.AGENT)
READS = ("get_chat", "get_message", "get_user", "list_messages", "list_chats", "list_users")


class CountingStore(MemoryStore):
    """Counts the reads made while `counting` is on."""

    def __init__(self) -> None:
        super().__init__()
        self.counting = False
        self.reads: list[str] = []
        for name in READS:
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(
        self, name: str, read: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if self.counting:
                self.reads.append(name)
            return await read(*args, **kwargs)

        return counted


@pytest.fixture
async def store() -> CountingStore:
    """Overrides conftest's: its `system` fixture then runs on this one."""
    counting = CountingStore()
    await seed_agents(counting)
    return counting


async def test_a_waiting_chat_is_pushed_with_its_agent_and_last_message_reading_nothing(
    system: System, store: CountingStore
) -> None:
    customer = Recorder("cust-1")
    await system.connect(customer.session, Role.CUSTOMER)
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    chat_id = opened.chat.id
    assert opened.chat.status == ChatStatus.NEW  # nobody is online: it waits
    for n in (1, 2):
        await system.send_message(chat_id, CUSTOMER, client_msg_id=f"m{n}", content=f"hi {n}")
    store.counting = True
    ann = await online(system, "ann")
    await settle()
    store.counting = False
    assert store.reads == []
    [to_ann] = ann.of(ChatAssigned)
    [to_customer] = customer.of(ChatAssigned)
    stored = await store.get_chat(chat_id)
    assert stored is not None
    last = (await store.list_messages(chat_id))[-1]
    for event in (to_ann, to_customer):
        assert event.chat == stored  # as the store holds it after the decision
        assert event.agent == AgentCard("ann", "Ann", "ann@example.com")
        assert event.last_message == last
    assert (stored.status, stored.agent_id, stored.last_seq) == (ChatStatus.OPEN, "ann", 2)
    assert stored.agent_unread_count == 2


async def test_receipts_and_replies_move_what_a_reassigned_chat_shows(
    system: System, store: CountingStore
) -> None:
    await online(system, "ann")
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    chat_id = opened.chat.id
    await system.send_message(chat_id, CUSTOMER, client_msg_id="c1", content="parcel?")
    await system.mark_read(chat_id, ANN, seq=1, status=MessageStatus.SEEN)
    await system.send_message(chat_id, ANN, client_msg_id="a1", content="on its way")
    bob = await online(system, "bob")
    store.counting = True
    answer = await system.reassign_chat(chat_id, "bob", actor_id="admin")
    await settle()
    store.counting = False
    [pushed] = bob.of(ChatAssigned)
    stored = await store.get_chat(chat_id)
    assert stored is not None
    assert pushed.chat == answer == stored
    assert (stored.agent_unread_count, stored.customer_unread_count) == (0, 1)
    assert pushed.last_message is not None
    assert pushed.last_message.content == "on its way"
    assert pushed.agent == AgentCard("bob", "Bob", "bob@example.com")
    # Neither the reassign's answer nor the push read the store.
    assert store.reads == []


async def test_an_agent_renamed_is_pushed_with_the_new_name(
    system: System, store: CountingStore
) -> None:
    ann = await store.get_user("ann")
    assert ann is not None
    renamed: User = replace(ann, name="Ann Lee", email="ann.lee@example.com")
    stored = await system.edit_agent_profile(renamed)
    assert (stored.name, stored.email) == ("Ann Lee", "ann.lee@example.com")
    assert await store.get_user("ann") == stored
    tab = await online(system, "ann")
    store.counting = True
    await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    await settle()
    store.counting = False
    [pushed] = tab.of(ChatAssigned)
    assert pushed.agent == AgentCard("ann", "Ann Lee", "ann.lee@example.com")
    # Her actor told the assignment actor the new card: the push read nothing of her.
    assert "get_user" not in store.reads


async def test_parking_and_resolving_answer_the_stored_chat_reading_nothing(
    system: System, store: CountingStore
) -> None:
    """The assignment actor answers each decision with the chat as the batch stored it, from memory:
    one store read per answer made it wait on the store once per request."""
    await online(system, "ann")
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    chat_id = opened.chat.id
    await system.send_message(chat_id, CUSTOMER, client_msg_id="c1", content="parcel?")
    store.counting = True
    parked = await system.park_chat(chat_id, by=ActedBy.SELF, actor_id="ann")
    assert parked == await _stored(store, chat_id)
    await system.send_message(chat_id, CUSTOMER, client_msg_id="c2", content="still?")
    await settle()  # queued again and given back to ann
    resolved = await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id="ann")
    assert resolved == await _stored(store, chat_id)
    assert (resolved.status, resolved.agent_id, resolved.last_seq) == (
        ChatStatus.RESOLVED,
        "ann",
        2,
    )
    assert store.reads == []


async def _stored(store: CountingStore, chat_id: str) -> Chat:
    counting, store.counting = store.counting, False
    chat = await store.get_chat(chat_id)
    store.counting = counting
    assert chat is not None
    return chat


async def test_a_new_title_is_shown_in_what_is_answered_and_pushed_next(
    system: System, store: CountingStore
) -> None:
    await online(system, "ann")
    opened = await system.open_chat("cust-1", title="Help", description="", priority=Priority.LOW)
    chat_id = opened.chat.id
    renamed = await store.set_chat_details(
        chat_id, title="Lost parcel", description="order 42", at=utcnow()
    )
    assert renamed is not None
    await system.chat_details_changed(chat_id, "Lost parcel", "order 42")
    bob = await online(system, "bob")
    answer = await system.reassign_chat(chat_id, "bob", actor_id="admin")
    await settle()
    [pushed] = bob.of(ChatAssigned)
    assert (answer.title, answer.description) == ("Lost parcel", "order 42")
    assert pushed.chat == answer == await _stored(store, chat_id)
