"""The Store contract, run against every backend in conftest.BACKENDS.

Covers every method of the protocol and the rules in store/_protocol.py's docstring: round trips,
case-insensitive unique emails, refused duplicates that change nothing, the chat counters kept by
append_message, complete and stable cursor paging, chat and activity filters, mark_messages,
notification scoping, token revocation, login failures and argument validation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import pytest
import trio

from store import (
    ActedBy,
    Activity,
    ActivityFilter,
    ActivityKind,
    AgentRouting,
    AgentStatus,
    Backend,
    Chat,
    ChatFilter,
    ChatRouting,
    ChatStatus,
    DuplicateEmail,
    DuplicateMessage,
    Fenced,
    MessageStatus,
    MigrationTarget,
    NotFound,
    Page,
    Priority,
    Role,
    StoreError,
    User,
    new_id,
    utcnow,
)
from tests.store.factories import activity, at, chat, message, notification, user

R = TypeVar("R")


async def collect_pages(fetch: Callable[[str | None], Awaitable[Page[R]]]) -> list[list[R]]:
    """Every page `fetch(cursor)` gives, following next_cursor to the end."""
    pages = [await fetch(None)]
    while pages[-1].next_cursor is not None:
        pages.append(await fetch(pages[-1].next_cursor))
    return [page.items for page in pages]


# users


async def test_user_round_trips_every_field(store: Backend) -> None:
    full = user(
        email="ada@example.com",
        role=Role.AGENT,
        password_hash="$argon2id$hash",
        phone="+44 20 7946 0000",
        avatar="https://example.com/ada.png",
        status=AgentStatus.AVAILABLE,
        max_load=5,
        external_id="shop-1",
        email_verified_at=at(1.5),
        created_at=at(2),
        updated_at=at(3),
    )
    assert await store.create_user(full) == full
    assert await store.get_user(full.id) == full
    assert await store.get_user(new_id()) is None


async def test_datetimes_come_back_as_the_same_instant(store: Backend) -> None:
    paris = timezone(timedelta(hours=2))
    created = datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=paris)
    stored = await store.create_user(user(created_at=created))
    fetched = await store.get_user(stored.id)
    assert fetched is not None
    assert fetched.created_at == created
    assert fetched.created_at.utcoffset() is not None


async def test_email_is_stored_lower_case_and_found_in_any_case(store: Backend) -> None:
    stored = await store.create_user(user(email="Ada.Lovelace@Example.COM"))
    assert stored.email == "ada.lovelace@example.com"
    assert await store.get_user_by_email("ADA.LOVELACE@example.com") == stored
    assert await store.get_user_by_email("nobody@example.com") is None


async def test_duplicate_email_is_refused_in_any_case_and_changes_nothing(store: Backend) -> None:
    first = await store.create_user(user(email="ada@example.com"))
    with pytest.raises(DuplicateEmail):
        await store.create_user(user(email="ADA@example.com", name="Impostor"))
    assert await store.count_users() == 1
    assert await store.get_user_by_email("ada@example.com") == first


async def test_reused_user_id_is_refused(store: Backend) -> None:
    first = await store.create_user(user())
    with pytest.raises(StoreError):
        await store.create_user(replace(first, email="other@example.com"))
    assert await store.get_user_by_email("other@example.com") is None


async def test_update_user_replaces_the_record(store: Backend) -> None:
    original = await store.create_user(user(email="ada@example.com"))
    changed = replace(original, email="Ada@Engine.org", name="Ada L.", phone="1", updated_at=at(9))
    updated = await store.update_user(changed)
    assert updated == replace(changed, email="ada@engine.org")
    assert await store.get_user(original.id) == updated
    # the old email is free again
    assert await store.get_user_by_email("ada@example.com") is None
    await store.create_user(user(email="ada@example.com"))


async def test_update_user_leaves_the_routing_fields_to_record_routing(store: Backend) -> None:
    agent = await store.create_user(user(role=Role.AGENT, max_load=3))
    await store.record_routing([], [AgentRouting(agent.id, AgentStatus.BUSY, 5, at(1))], [])
    # A profile edit made from a copy read before the routing decision:
    updated = await store.update_user(replace(agent, name="Ann B.", updated_at=at(2)))
    assert (updated.name, updated.status, updated.max_load) == ("Ann B.", AgentStatus.BUSY, 5)
    assert await store.get_user(agent.id) == updated
    # A demotion is a routing decision too: a profile edit from an older copy keeps it.
    demoted = AgentRouting(agent.id, AgentStatus.AWAY, 5, at(3), role=Role.USER)
    await store.record_routing([], [demoted], [])
    edited = await store.update_user(replace(agent, name="Ann C.", updated_at=at(4)))
    assert (edited.name, edited.role, edited.status) == ("Ann C.", Role.USER, AgentStatus.AWAY)


async def test_record_routing_writes_a_role_only_when_given(store: Backend) -> None:
    user_record = await store.create_user(user(role=Role.USER, max_load=2))
    approved = AgentRouting(user_record.id, AgentStatus.AWAY, 2, at(1), role=Role.AGENT)
    # fenced, as in cluster mode (MongoDB writes it through its journal)
    await store.record_routing([], [approved], [], fence=await store.claim_routing("test"))
    agent = await store.get_user(user_record.id)
    assert agent is not None
    assert (agent.role, agent.status, agent.updated_at) == (Role.AGENT, AgentStatus.AWAY, at(1))
    await store.record_routing([], [AgentRouting(agent.id, AgentStatus.BUSY, 2, at(2))], [])
    busy = await store.get_user(agent.id)
    assert busy is not None
    assert (busy.role, busy.status) == (Role.AGENT, AgentStatus.BUSY)
    assert [a.id for a in (await store.list_users(role=Role.AGENT)).items] == [agent.id]


async def test_update_user_refuses_a_missing_user_and_a_taken_email(store: Backend) -> None:
    with pytest.raises(NotFound):
        await store.update_user(user())
    ada = await store.create_user(user(email="ada@example.com"))
    grace = await store.create_user(user(email="grace@example.com"))
    with pytest.raises(DuplicateEmail):
        await store.update_user(replace(grace, email="ADA@example.com"))
    assert await store.get_user(grace.id) == grace
    assert await store.get_user_by_email("ada@example.com") == ada
    # keeping one's own email is not a clash
    assert await store.update_user(replace(grace, name="Grace H.")) == replace(
        grace, name="Grace H."
    )


async def test_delete_user_is_a_hard_delete(store: Backend) -> None:
    ada = await store.create_user(user(email="ada@example.com"))
    assert await store.delete_user(ada.id) is True
    assert await store.get_user(ada.id) is None
    assert await store.get_user_by_email("ada@example.com") is None
    assert await store.delete_user(ada.id) is False
    await store.create_user(user(email="ada@example.com"))


async def test_customer_by_external_id_finds_only_customers(store: Backend) -> None:
    await store.create_user(user(role=Role.AGENT, external_id="shop-7"))
    assert await store.get_customer_by_external_id("shop-7") is None
    first = await store.create_user(user(role=Role.CUSTOMER, external_id="shop-7"))
    await store.create_user(user(role=Role.CUSTOMER, external_id="shop-8"))
    assert await store.get_customer_by_external_id("shop-7") == first
    assert await store.get_customer_by_external_id("shop-9") is None


async def test_a_shop_id_names_one_customer(store: Backend) -> None:
    first = await store.create_user(user(role=Role.CUSTOMER, external_id="shop-7"))
    with pytest.raises(StoreError) as refused:
        await store.create_user(user(role=Role.CUSTOMER, external_id="shop-7"))
    assert not isinstance(refused.value, DuplicateEmail)
    assert await store.get_customer_by_external_id("shop-7") == first
    assert await store.count_users(role=Role.CUSTOMER) == 1


async def test_find_or_create_customer_makes_one_for_racing_first_requests(store: Backend) -> None:
    found: list[User] = []

    async def first_request() -> None:
        found.append(
            await store.find_or_create_customer(user(role=Role.CUSTOMER, external_id="shop-7"))
        )

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(first_request)
    assert len({customer.id for customer in found}) == 1
    assert await store.count_users(role=Role.CUSTOMER) == 1
    assert await store.get_customer_by_external_id("shop-7") == found[0]
    again = await store.find_or_create_customer(user(role=Role.CUSTOMER, external_id="shop-7"))
    assert again == found[0]
    with pytest.raises(ValueError, match="customer record"):
        await store.find_or_create_customer(user(role=Role.AGENT, external_id="shop-9"))


@pytest.mark.parametrize("page_size", [1, 3, 7, 50])
async def test_list_users_pages_every_user_once_in_id_order(store: Backend, page_size: int) -> None:
    created = [await store.create_user(user(role=Role.AGENT)) for _ in range(7)]
    pages = await collect_pages(lambda cursor: store.list_users(limit=page_size, cursor=cursor))
    assert [u for page in pages for u in page] == sorted(created, key=lambda u: u.id)
    assert all(len(page) <= page_size for page in pages)
    assert len(pages) == max(1, -(-7 // page_size))


async def test_list_users_of_an_empty_store_is_one_empty_page(store: Backend) -> None:
    assert await store.list_users() == Page(items=[], next_cursor=None)


async def test_list_and_count_users_by_role(store: Backend) -> None:
    agents = [await store.create_user(user(role=Role.AGENT)) for _ in range(3)]
    await store.create_user(user(role=Role.ADMIN))
    await store.create_user(user(role=Role.CUSTOMER))
    page = await store.list_users(role=Role.AGENT)
    assert page.items == sorted(agents, key=lambda u: u.id)
    assert page.next_cursor is None
    assert await store.count_users(role=Role.AGENT) == 3
    assert await store.count_users(role=Role.USER) == 0
    assert await store.count_users() == 5


# tokens and login throttling


async def test_revoked_tokens(store: Backend) -> None:
    # Expiries in the future: a backend may forget a revocation once its expiry has passed
    # (MongoDB's TTL index does), and the factories' times are in the past.
    soon = utcnow() + timedelta(hours=1)
    assert await store.is_token_revoked("jti-1") is False
    await store.revoke_token("jti-1", soon)
    await store.revoke_token("jti-1", soon + timedelta(hours=1))  # again: still revoked, no error
    assert await store.is_token_revoked("jti-1") is True
    assert await store.is_token_revoked("jti-2") is False


async def test_login_failures_are_counted_per_key_since_a_time(store: Backend) -> None:
    for seconds in (0, 10, 20, 30):
        await store.add_login_failure("ip:10.0.0.1", at(seconds))
    await store.add_login_failure("email:ada@example.com", at(30))
    assert await store.count_login_failures("ip:10.0.0.1", at(10)) == 3
    assert await store.count_login_failures("ip:10.0.0.1", at(31)) == 0
    assert await store.count_login_failures("email:ada@example.com", at(0)) == 1
    assert await store.login_failures("ip:10.0.0.1", at(10)) == (3, at(30))
    assert await store.login_failures("ip:10.0.0.1", at(31)) == (0, None)
    await store.clear_login_failures("ip:10.0.0.1")
    assert await store.count_login_failures("ip:10.0.0.1", at(0)) == 0
    assert await store.count_login_failures("email:ada@example.com", at(0)) == 1
    await store.clear_login_failures("never-failed")


# chats


async def test_chat_round_trips_every_field(store: Backend) -> None:
    full = chat(
        title="Заказ №1 — 🚚 '; DROP TABLE chats; --",
        description="It was due on Monday",
        status=ChatStatus.PENDING,
        priority=Priority.URGENT,
        agent_id=new_id(),
        customer_unread_count=2,
        agent_unread_count=3,
        last_message_id=new_id(),
        last_seq=5,
        created_at=at(1),
        updated_at=at(2),
        queued_at=at(3),
        resolved_at=at(4),
    )
    assert await store.create_chat(full) == full
    assert await store.get_chat(full.id) == full
    assert await store.get_chat(new_id()) is None


async def test_reused_chat_id_is_refused(store: Backend) -> None:
    first = await store.create_chat(chat())
    with pytest.raises(StoreError):
        await store.create_chat(replace(first, title="Another"))
    assert await store.get_chat(first.id) == first


async def test_restore_chat_replaces_the_record(store: Backend) -> None:
    assert isinstance(store, MigrationTarget)
    original = await store.create_chat(chat())
    changed = replace(
        original,
        status=ChatStatus.OPEN,
        agent_id=new_id(),
        priority=Priority.HIGH,
        updated_at=at(5),
        queued_at=None,
    )
    assert await store.restore_chat(changed) == changed
    assert await store.get_chat(original.id) == changed
    with pytest.raises(NotFound):
        await store.restore_chat(chat())


async def test_set_chat_details_changes_only_title_and_description(store: Backend) -> None:
    original = await store.create_chat(chat())
    await store.append_message(message(original, 1))
    counted = await store.get_chat(original.id)
    assert counted is not None
    changed = await store.set_chat_details(
        original.id, title="Refund", description="for order 42", at=at(9)
    )
    assert changed == replace(counted, title="Refund", description="for order 42", updated_at=at(9))
    assert await store.get_chat(original.id) == changed
    missing = await store.set_chat_details(new_id(), title="x", description="", at=at(9))
    assert missing is None


async def test_delete_chat_deletes_its_messages(store: Backend) -> None:
    doomed = await store.create_chat(chat())
    kept = await store.create_chat(chat())
    doomed_message = await store.append_message(message(doomed, 1))
    kept_message = await store.append_message(message(kept, 1))
    assert await store.delete_chat(doomed.id) is True
    assert await store.get_chat(doomed.id) is None
    assert await store.get_message(doomed_message.id) is None
    assert await store.list_messages(doomed.id) == []
    assert await store.get_message_by_client_id(doomed.id, doomed_message.client_msg_id) is None
    assert await store.delete_chat(doomed.id) is False
    assert await store.get_message(kept_message.id) == kept_message


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("page_size", [1, 4, 10, 11])
async def test_list_chats_pages_every_chat_once_in_id_order(
    store: Backend, page_size: int, newest_first: bool
) -> None:
    created = [await store.create_chat(chat()) for _ in range(10)]
    pages = await collect_pages(
        lambda cursor: store.list_chats(limit=page_size, cursor=cursor, newest_first=newest_first)
    )
    listed = [c for page in pages for c in page]
    assert listed == sorted(created, key=lambda c: c.id, reverse=newest_first)
    assert all(len(page) == page_size for page in pages[:-1])
    assert pages[-1]  # an exact multiple still ends with a full page, not an empty one


async def test_paging_stays_complete_while_chats_are_added(store: Backend) -> None:
    created = [await store.create_chat(chat()) for _ in range(5)]
    seen: list[Chat] = []
    cursor = None
    while True:
        page = await store.list_chats(limit=2, cursor=cursor)
        seen.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        if len(created) < 9:
            created.append(await store.create_chat(chat()))  # lands after the cursor
    assert seen == sorted(created, key=lambda c: c.id)


async def test_newest_first_paging_does_not_show_chats_added_meanwhile(store: Backend) -> None:
    created = [await store.create_chat(chat()) for _ in range(5)]
    first = await store.list_chats(limit=2, newest_first=True)
    await store.create_chat(chat())  # newer than the cursor: belongs before page one
    rest = await collect_pages(
        lambda cursor: store.list_chats(
            limit=2, cursor=cursor or first.next_cursor, newest_first=True
        )
    )
    listed = first.items + [c for page in rest for c in page]
    assert listed == sorted(created, key=lambda c: c.id, reverse=True)


async def test_chat_filters(store: Backend) -> None:
    agent, customer = new_id(), new_id()
    chats = [
        chat(status=ChatStatus.NEW, priority=Priority.LOW, created_at=at(0)),
        chat(status=ChatStatus.OPEN, agent_id=agent, created_at=at(10)),
        chat(status=ChatStatus.OPEN, agent_id=new_id(), customer_id=customer, created_at=at(20)),
        chat(
            status=ChatStatus.PENDING,
            customer_id=customer,
            priority=Priority.HIGH,
            created_at=at(30),
        ),
        chat(status=ChatStatus.RESOLVED, agent_id=agent, created_at=at(40)),
    ]
    for c in chats:
        await store.create_chat(c)
    new, open_mine, open_other, pending, resolved = chats
    cases = [
        (ChatFilter(), chats),
        (ChatFilter(status=ChatStatus.OPEN), [open_mine, open_other]),
        (ChatFilter(statuses=frozenset({ChatStatus.NEW, ChatStatus.PENDING})), [new, pending]),
        (ChatFilter(statuses=frozenset()), []),
        (ChatFilter(agent_id=agent), [open_mine, resolved]),
        (ChatFilter(customer_id=customer), [open_other, pending]),
        (ChatFilter(priority=Priority.HIGH), [pending]),
        (ChatFilter(created_from=at(10)), [open_mine, open_other, pending, resolved]),
        (ChatFilter(created_to=at(10)), [new]),
        (ChatFilter(created_from=at(10), created_to=at(30)), [open_mine, open_other]),
        (ChatFilter(agent_id=agent, status=ChatStatus.OPEN), [open_mine]),
        (ChatFilter(customer_id=customer, statuses=frozenset({ChatStatus.RESOLVED})), []),
    ]
    for chat_filter, expected in cases:
        page = await store.list_chats(chat_filter)
        assert page.items == sorted(expected, key=lambda c: c.id), chat_filter
        assert await store.count_chats(chat_filter) == len(expected), chat_filter


async def test_filtered_paging_is_complete(store: Backend) -> None:
    agent = new_id()
    mine = []
    for i in range(12):
        c = await store.create_chat(chat(agent_id=agent if i % 3 else None))
        if i % 3:
            mine.append(c)
    for newest_first in (False, True):

        async def fetch(cursor: str | None, newest_first: bool = newest_first) -> Page[Chat]:
            return await store.list_chats(
                ChatFilter(agent_id=agent), limit=3, cursor=cursor, newest_first=newest_first
            )

        pages = await collect_pages(fetch)
        listed = [c for page in pages for c in page]
        assert listed == sorted(mine, key=lambda c: c.id, reverse=newest_first)


# messages


async def test_message_round_trips_every_field(store: Backend) -> None:
    c = await store.create_chat(chat())
    full = message(
        c,
        1,
        client_msg_id="phone-42",
        sender_id=new_id(),
        sender_role=Role.AGENT,
        content="Hello 👋 — how can I help?",
        receiver_id=c.customer_id,
        status=MessageStatus.DELIVERED,
        created_at=at(7.25),
    )
    assert await store.append_message(full) == full
    assert await store.get_message(full.id) == full
    assert await store.get_message(new_id()) is None
    assert await store.get_message_by_client_id(c.id, "phone-42") == full
    assert await store.get_message_by_client_id(c.id, "phone-43") is None
    assert await store.get_message_by_client_id(new_id(), "phone-42") is None


async def test_append_updates_the_chat_counters(store: Backend) -> None:
    c = await store.create_chat(chat(customer_unread_count=1, agent_unread_count=2))
    agent = new_id()
    from_customer = await store.append_message(message(c, 1, created_at=at(100)))
    updated = await store.get_chat(c.id)
    assert updated == replace(
        c, last_message_id=from_customer.id, last_seq=1, updated_at=at(100), agent_unread_count=3
    )
    from_agent = await store.append_message(
        message(c, 2, sender_id=agent, sender_role=Role.AGENT, created_at=at(200))
    )
    updated = await store.get_chat(c.id)
    assert updated == replace(
        c,
        last_message_id=from_agent.id,
        last_seq=2,
        updated_at=at(200),
        agent_unread_count=3,
        customer_unread_count=2,
    )


async def test_system_and_admin_messages_count_as_unread_for_the_customer(store: Backend) -> None:
    c = await store.create_chat(chat())
    await store.append_message(message(c, 1, sender_id=new_id(), sender_role=Role.ADMIN))
    updated = await store.get_chat(c.id)
    assert updated is not None
    assert (updated.customer_unread_count, updated.agent_unread_count) == (1, 0)


async def test_append_to_a_missing_chat_is_not_found(store: Backend) -> None:
    orphan = message(chat(), 1)
    with pytest.raises(NotFound):
        await store.append_message(orphan)
    assert await store.get_message(orphan.id) is None


@pytest.mark.parametrize("clash", ["seq", "client_msg_id"])
async def test_duplicate_message_is_refused_and_changes_nothing(store: Backend, clash: str) -> None:
    c = await store.create_chat(chat())
    first = await store.append_message(message(c, 1, client_msg_id="a"))
    before = await store.get_chat(c.id)
    duplicate = (
        message(c, 1, client_msg_id="b", created_at=at(99))
        if clash == "seq"
        else message(c, 2, client_msg_id="a", created_at=at(99))
    )
    with pytest.raises(DuplicateMessage):
        await store.append_message(duplicate)
    assert await store.get_chat(c.id) == before
    assert await store.get_message(duplicate.id) is None
    assert await store.list_messages(c.id) == [first]
    assert await store.get_message_by_client_id(c.id, "b") is None


async def test_reused_message_id_is_refused(store: Backend) -> None:
    c = await store.create_chat(chat())
    first = await store.append_message(message(c, 1))
    before = await store.get_chat(c.id)
    with pytest.raises(StoreError):
        await store.append_message(replace(first, seq=2, client_msg_id="other"))
    assert await store.get_chat(c.id) == before
    assert await store.list_messages(c.id) == [first]


async def test_seq_and_client_msg_id_are_unique_per_chat_only(store: Backend) -> None:
    one = await store.create_chat(chat())
    two = await store.create_chat(chat())
    a = await store.append_message(message(one, 1, client_msg_id="same"))
    b = await store.append_message(message(two, 1, client_msg_id="same"))
    assert await store.get_message_by_client_id(one.id, "same") == a
    assert await store.get_message_by_client_id(two.id, "same") == b


async def test_append_messages_stores_a_run_with_the_counters_of_each(store: Backend) -> None:
    c = await store.create_chat(chat(customer_unread_count=1, agent_unread_count=2))
    agent = new_id()
    run = [
        message(c, 1, created_at=at(100)),
        message(c, 2, sender_id=agent, sender_role=Role.AGENT, created_at=at(200)),
        message(c, 3, created_at=at(300)),
    ]
    assert await store.append_messages(run) == run
    assert await store.list_messages(c.id) == run
    assert await store.get_chat(c.id) == replace(
        c,
        last_message_id=run[-1].id,
        last_seq=3,
        updated_at=at(300),
        agent_unread_count=4,
        customer_unread_count=2,
    )
    assert await store.append_messages([]) == []
    after = await store.append_messages([message(c, 4, created_at=at(400))])
    assert await store.list_messages(c.id, after_seq=3) == after


@pytest.mark.parametrize("clash", ["stored seq", "stored client_msg_id", "within the run", "id"])
async def test_append_messages_stores_all_or_none(store: Backend, clash: str) -> None:
    c = await store.create_chat(chat())
    first = await store.append_message(message(c, 1, client_msg_id="a"))
    before = await store.get_chat(c.id)
    run = [message(c, 2, client_msg_id="b"), message(c, 3, client_msg_id="c")]
    match clash:
        case "stored seq":
            run.append(message(c, 1, client_msg_id="d"))
            run = [run[2], run[0], run[1]]
        case "stored client_msg_id":
            run.append(message(c, 4, client_msg_id="a"))
        case "within the run":
            run.append(message(c, 4, client_msg_id="b"))
        case "id":
            run.append(replace(first, seq=4, client_msg_id="d"))
    with pytest.raises(StoreError) as refused:
        await store.append_messages(run)
    assert isinstance(refused.value, DuplicateMessage) == (clash != "id")
    assert await store.get_chat(c.id) == before
    assert await store.list_messages(c.id) == [first]
    for refused_message in run:
        if refused_message.id != first.id:
            assert await store.get_message(refused_message.id) is None


async def test_append_messages_to_a_missing_chat_stores_none(store: Backend) -> None:
    orphans = [message(chat(), 1), message(chat(), 2)]
    orphans[1] = replace(orphans[1], chat_id=orphans[0].chat_id)
    with pytest.raises(NotFound):
        await store.append_messages(orphans)
    for orphan in orphans:
        assert await store.get_message(orphan.id) is None


async def test_append_messages_takes_one_chat_in_ascending_seq(store: Backend) -> None:
    one = await store.create_chat(chat())
    two = await store.create_chat(chat())
    with pytest.raises(ValueError, match="one chat"):
        await store.append_messages([message(one, 1), message(two, 2)])
    with pytest.raises(ValueError, match="ascending"):
        await store.append_messages([message(one, 2), message(one, 1)])
    with pytest.raises(ValueError, match="ascending"):
        await store.append_messages([message(one, 1), message(one, 1, client_msg_id="x")])
    assert await store.list_messages(one.id) == []
    assert await store.list_messages(two.id) == []


async def test_list_messages_after_seq_in_seq_order(store: Backend) -> None:
    c = await store.create_chat(chat())
    other = await store.create_chat(chat())
    await store.append_message(message(other, 1))
    # stored out of order: the list still follows seq
    appended = {seq: await store.append_message(message(c, seq)) for seq in (2, 1, 4, 3, 5)}
    in_order = [appended[seq] for seq in range(1, 6)]
    assert await store.list_messages(c.id) == in_order
    assert await store.list_messages(c.id, after_seq=2) == in_order[2:]
    assert await store.list_messages(c.id, after_seq=1, limit=2) == in_order[1:3]
    assert await store.list_messages(c.id, after_seq=5) == []
    assert await store.list_messages(new_id()) == []


async def statuses(store: Backend, chat_id: str) -> list[MessageStatus]:
    return [m.status for m in await store.list_messages(chat_id)]


async def test_mark_messages_raises_statuses_of_the_other_side_up_to_seq(store: Backend) -> None:
    agent = new_id()
    c = await store.create_chat(chat(agent_id=agent))
    for seq in (1, 2, 3):
        await store.append_message(message(c, seq))  # from the customer
    await store.append_message(message(c, 4, sender_id=agent, sender_role=Role.AGENT))
    await store.append_message(message(c, 5))

    await store.mark_messages(c.id, reader_id=agent, up_to_seq=4, status=MessageStatus.DELIVERED)
    assert await statuses(store, c.id) == ["delivered", "delivered", "delivered", "sent", "sent"]

    await store.mark_messages(c.id, reader_id=agent, up_to_seq=2, status=MessageStatus.SEEN)
    assert await statuses(store, c.id) == ["seen", "seen", "delivered", "sent", "sent"]

    # never lowered: delivered does not replace seen
    await store.mark_messages(c.id, reader_id=agent, up_to_seq=5, status=MessageStatus.DELIVERED)
    assert await statuses(store, c.id) == ["seen", "seen", "delivered", "sent", "delivered"]

    # the customer reads the agent's message
    await store.mark_messages(c.id, reader_id=c.customer_id, up_to_seq=5, status=MessageStatus.SEEN)
    assert await statuses(store, c.id) == ["seen", "seen", "delivered", "seen", "delivered"]


async def test_mark_messages_after_seq_leaves_the_messages_up_to_it_alone(
    store: Backend,
) -> None:
    """The caller says the messages up to `after_seq` are marked already: they are not looked
    at, even where that is not so, and are not counted."""
    agent = new_id()
    c = await store.create_chat(chat(agent_id=agent))
    for seq in range(1, 6):
        await store.append_message(message(c, seq))

    await store.mark_messages(
        c.id, reader_id=agent, up_to_seq=4, status=MessageStatus.DELIVERED, after_seq=2
    )
    assert await statuses(store, c.id) == ["sent", "sent", "delivered", "delivered", "sent"]

    await store.mark_messages(
        c.id, reader_id=agent, up_to_seq=5, status=MessageStatus.SEEN, after_seq=3
    )
    assert await statuses(store, c.id) == ["sent", "sent", "delivered", "seen", "seen"]

    # an empty range still finds the chat, and still clears the reader's unread count
    await store.mark_messages(
        c.id, reader_id=agent, up_to_seq=5, status=MessageStatus.SEEN, after_seq=5
    )
    current = await store.get_chat(c.id)
    assert current is not None
    assert current.agent_unread_count == 0
    with pytest.raises(NotFound):
        await store.mark_messages(
            new_id(), reader_id=agent, up_to_seq=5, status=MessageStatus.DELIVERED, after_seq=5
        )


async def test_a_receipt_covers_only_the_messages_stored_when_it_was_made(
    store: Backend,
) -> None:
    """A receipt up to a seq past the last message marks what is there, not the messages stored
    after it; a later receipt up to a lower seq lowers nothing."""
    agent = new_id()
    c = await store.create_chat(chat(agent_id=agent))
    for seq in (1, 2, 3):
        await store.append_message(message(c, seq))
    await store.mark_messages(c.id, reader_id=agent, up_to_seq=99, status=MessageStatus.SEEN)
    await store.append_message(message(c, 4))
    await store.mark_messages(c.id, reader_id=agent, up_to_seq=1, status=MessageStatus.DELIVERED)
    assert await statuses(store, c.id) == ["seen", "seen", "seen", "sent"]
    await store.mark_messages(
        c.id, reader_id=agent, up_to_seq=4, status=MessageStatus.DELIVERED, after_seq=3
    )
    assert await statuses(store, c.id) == ["seen", "seen", "seen", "delivered"]
    second = await store.get_message_by_client_id(c.id, "client-2")
    assert second is not None
    assert second.status == MessageStatus.SEEN


@pytest.mark.parametrize("customer_id", ["shop.customer$1", "$7", "ünïcode 9"])
async def test_receipts_of_a_reader_whose_id_is_no_field_name(
    store: Backend, customer_id: str
) -> None:
    """A shop names its customers as it likes: ids with dots, dollars, spaces, any letters
    mark and read back as any other."""
    agent = new_id()
    c = await store.create_chat(chat(agent_id=agent, customer_id=customer_id))
    await store.append_message(message(c, 1, sender_id=agent, sender_role=Role.AGENT))
    await store.append_message(message(c, 2))
    await store.mark_messages(c.id, reader_id=customer_id, up_to_seq=2, status=MessageStatus.SEEN)
    assert await statuses(store, c.id) == ["seen", "sent"]
    found = await store.get_message((await store.list_messages(c.id))[0].id)
    assert found is not None
    assert found.status == MessageStatus.SEEN
    current = await store.get_chat(c.id)
    assert current is not None
    assert current.customer_unread_count == 0


async def test_marking_seen_clears_the_readers_unread_count(store: Backend) -> None:
    agent = new_id()
    c = await store.create_chat(chat(agent_id=agent))
    await store.append_message(message(c, 1))
    await store.append_message(message(c, 2))
    await store.append_message(message(c, 3, sender_id=agent, sender_role=Role.AGENT))

    async def unread() -> tuple[int, int]:
        current = await store.get_chat(c.id)
        assert current is not None
        return current.customer_unread_count, current.agent_unread_count

    assert await unread() == (1, 2)
    await store.mark_messages(c.id, reader_id=agent, up_to_seq=3, status=MessageStatus.DELIVERED)
    assert await unread() == (1, 2)  # delivered is not read
    await store.mark_messages(c.id, reader_id=agent, up_to_seq=3, status=MessageStatus.SEEN)
    assert await unread() == (1, 0)
    await store.mark_messages(c.id, reader_id=c.customer_id, up_to_seq=3, status=MessageStatus.SEEN)
    assert await unread() == (0, 0)


async def test_mark_messages_on_a_missing_chat_is_not_found(store: Backend) -> None:
    with pytest.raises(NotFound):
        await store.mark_messages(
            new_id(), reader_id=new_id(), up_to_seq=1, status=MessageStatus.SEEN
        )


# notifications


async def test_notifications_are_listed_newest_first_with_the_total(store: Backend) -> None:
    ada, grace = new_id(), new_id()
    adas = [await store.add_notification(notification(ada, title=f"n{i}")) for i in range(5)]
    await store.add_notification(notification(grace))
    newest_first = sorted(adas, key=lambda n: n.id, reverse=True)
    assert await store.list_notifications(ada) == (newest_first, 5)
    assert await store.list_notifications(ada, limit=2, offset=1) == (newest_first[1:3], 5)
    assert await store.list_notifications(ada, offset=5) == ([], 5)
    assert await store.list_notifications(new_id()) == ([], 0)


async def test_notification_round_trips_every_field(store: Backend) -> None:
    full = notification(new_id(), chat_id=new_id(), read=True, created_at=at(3))
    assert await store.add_notification(full) == full
    assert await store.list_notifications(full.user_id) == ([full], 1)
    with pytest.raises(StoreError):
        await store.add_notification(replace(full, title="again"))


async def test_marking_notifications_read_is_scoped_to_their_user(store: Backend) -> None:
    ada, grace = new_id(), new_id()
    first = await store.add_notification(notification(ada))
    await store.add_notification(notification(ada))
    await store.add_notification(notification(ada))
    graces = await store.add_notification(notification(grace))
    assert await store.count_unread_notifications(ada) == 3

    assert await store.mark_notification_read(grace, first.id) is False
    assert await store.mark_notification_read(ada, new_id()) is False
    assert await store.count_unread_notifications(ada) == 3

    assert await store.mark_notification_read(ada, first.id) is True
    assert await store.mark_notification_read(ada, first.id) is True  # already read: still theirs
    assert await store.count_unread_notifications(ada) == 2
    items, _ = await store.list_notifications(ada)
    assert [n.read for n in items if n.id == first.id] == [True]

    assert await store.mark_all_notifications_read(ada) == 2
    assert await store.mark_all_notifications_read(ada) == 0
    assert await store.count_unread_notifications(ada) == 0
    assert await store.count_unread_notifications(grace) == 1
    assert (await store.list_notifications(grace))[0] == [graces]


async def test_deleting_a_notification_is_scoped_to_its_user(store: Backend) -> None:
    ada, grace = new_id(), new_id()
    adas = await store.add_notification(notification(ada))
    assert await store.delete_notification(grace, adas.id) is False
    assert await store.list_notifications(ada) == ([adas], 1)
    assert await store.delete_notification(ada, adas.id) is True
    assert await store.delete_notification(ada, adas.id) is False
    assert await store.list_notifications(ada) == ([], 0)


# activity log


async def test_activity_round_trips_every_field(store: Backend) -> None:
    full = activity(
        kind=ActivityKind.ASSIGNMENT,
        actor=ActedBy.ADMIN,
        reason="least loaded: 1/3; candidates a (1/3), b (2/3)",
        at=at(4),
        agent_id=new_id(),
        chat_id=new_id(),
        from_value=None,
        to_value=new_id(),
        actor_id=new_id(),
    )
    await store.append_activity([full])
    assert (await store.list_activity(ActivityFilter())).items == [full]


async def test_activity_filters_and_paging(store: Backend) -> None:
    agent, chat_id = new_id(), new_id()
    both = activity(kind=ActivityKind.ASSIGNMENT, agent_id=agent, chat_id=chat_id)
    agent_only = activity(kind=ActivityKind.AGENT_STATUS, agent_id=agent, from_value="away")
    chat_only = activity(chat_id=chat_id, from_value="new", to_value="open")
    unrelated = activity(chat_id=new_id(), agent_id=new_id())
    entries = [both, agent_only, chat_only, unrelated]
    await store.append_activity(entries[:2])
    await store.append_activity(entries[2:])
    cases = [
        (ActivityFilter(), entries),
        (ActivityFilter(agent_id=agent), [both, agent_only]),
        (ActivityFilter(chat_id=chat_id), [both, chat_only]),
        (ActivityFilter(agent_id=agent, chat_id=chat_id), [both]),
        (ActivityFilter(agent_id=new_id()), []),
    ]
    for activity_filter, expected in cases:

        async def fetch(cursor: str | None, f: ActivityFilter = activity_filter) -> Page[Activity]:
            return await store.list_activity(f, limit=1, cursor=cursor)

        pages = await collect_pages(fetch)
        listed = [e for page in pages for e in page]
        assert listed == sorted(expected, key=lambda e: e.id), activity_filter


async def test_append_activity_stores_all_entries_or_none(store: Backend) -> None:
    kept = activity()
    await store.append_activity([kept])
    with pytest.raises(StoreError):
        await store.append_activity([activity(), replace(kept, reason="again")])
    assert (await store.list_activity(ActivityFilter())).items == [kept]
    await store.append_activity([])
    assert (await store.list_activity(ActivityFilter())).items == [kept]


# routing


async def test_record_routing_writes_only_routing_fields_with_activity(store: Backend) -> None:
    agent = await store.create_user(user(role=Role.AGENT, status=AgentStatus.AWAY, max_load=3))
    opened = await store.create_chat(chat(title="kept"))
    await store.append_message(message(opened, 1))
    entry = activity(chat_id=opened.id, from_value="new", to_value="open")
    await store.record_routing(
        [ChatRouting(opened.id, ChatStatus.OPEN, agent.id, None, None, at(9))],
        [AgentRouting(agent.id, AgentStatus.BUSY, 1, at(9))],
        [entry],
    )
    routed = await store.get_chat(opened.id)
    assert routed is not None
    assert (routed.status, routed.agent_id, routed.updated_at) == (ChatStatus.OPEN, agent.id, at(9))
    # the counters an append wrote are untouched by the routing write
    assert (routed.title, routed.last_seq, routed.agent_unread_count) == ("kept", 1, 1)
    moved = await store.get_user(agent.id)
    assert moved is not None
    assert (moved.status, moved.max_load, moved.email) == (AgentStatus.BUSY, 1, agent.email)
    assert (await store.list_activity(ActivityFilter(chat_id=opened.id))).items == [entry]


async def test_record_routing_skips_deleted_rows_and_is_atomic(store: Backend) -> None:
    kept = activity()
    await store.append_activity([kept])
    gone = ChatRouting(new_id(), ChatStatus.OPEN, None, None, None, at(1))
    await store.record_routing([gone], [AgentRouting(new_id(), AgentStatus.AWAY, 2, at(1))], [])
    assert await store.count_chats() == 0
    survivor = await store.create_chat(chat())
    with pytest.raises(StoreError):
        await store.record_routing(
            [ChatRouting(survivor.id, ChatStatus.RESOLVED, None, None, at(2), at(2))],
            [],
            [replace(kept, reason="again")],
        )
    unchanged = await store.get_chat(survivor.id)
    assert unchanged is not None
    assert unchanged.status is ChatStatus.NEW


async def test_record_routing_creates_new_chats_in_the_same_write(store: Backend) -> None:
    agent = await store.create_user(user(role=Role.AGENT, status=AgentStatus.AVAILABLE))
    waiting = await store.create_chat(chat())
    opened = chat(status=ChatStatus.OPEN, agent_id=agent.id, queued_at=None)
    queued = chat(status=ChatStatus.NEW, queued_at=at(3))
    entry = activity(chat_id=opened.id)
    await store.record_routing(
        [ChatRouting(waiting.id, ChatStatus.RESOLVED, None, None, at(4), at(4))],
        [AgentRouting(agent.id, AgentStatus.BUSY, 1, at(4))],
        [entry],
        new_chats=[opened, queued],
    )
    assert await store.get_chat(opened.id) == opened
    assert await store.get_chat(queued.id) == queued
    resolved = await store.get_chat(waiting.id)
    assert resolved is not None
    assert resolved.status is ChatStatus.RESOLVED
    assert (await store.list_activity(ActivityFilter(chat_id=opened.id))).items == [entry]
    # A new chat can take messages like any other.
    await store.append_message(message(opened, 1))


async def test_record_routing_with_a_taken_chat_id_writes_nothing(store: Backend) -> None:
    agent = await store.create_user(user(role=Role.AGENT, status=AgentStatus.AWAY, max_load=2))
    taken = await store.create_chat(chat(title="first"))
    with pytest.raises(StoreError):
        await store.record_routing(
            [], [AgentRouting(agent.id, AgentStatus.AVAILABLE, 2, at(5))], [],
            new_chats=[replace(taken, title="second")],
        )  # fmt: skip
    assert await store.get_chat(taken.id) == taken
    unchanged = await store.get_user(agent.id)
    assert unchanged is not None
    assert unchanged.status is AgentStatus.AWAY


async def test_a_fenced_decision_creates_its_new_chats(store: Backend) -> None:
    token = await store.claim_routing("node-a")
    created = chat(queued_at=at(2))
    await store.record_routing(
        [], [], [activity(chat_id=created.id)], new_chats=[created], fence=token
    )
    assert await store.get_chat(created.id) == created
    # Refused under a replaced token: the chat is not created.
    await store.claim_routing("node-b")
    late = chat()
    with pytest.raises(Fenced):
        await store.record_routing([], [], [], new_chats=[late], fence=token)
    assert await store.get_chat(late.id) is None


# fencing: one arbiter at a time


async def test_each_claim_gives_a_later_token(store: Backend) -> None:
    first = await store.claim_routing("node-a")
    second = await store.claim_routing("node-b")
    assert second > first >= 1


async def test_a_decision_under_a_replaced_token_is_refused_and_changes_nothing(
    store: Backend,
) -> None:
    agent = await store.create_user(user(role=Role.AGENT, status=AgentStatus.AVAILABLE))
    waiting = await store.create_chat(chat())
    old = await store.claim_routing("node-a")
    opened = ChatRouting(waiting.id, ChatStatus.OPEN, agent.id, None, None, at(5))
    await store.record_routing([opened], [], [activity(chat_id=waiting.id)], fence=old)
    new = await store.claim_routing("node-b")
    # The former holder, unaware (paused past its lease), decides again: refused whole.
    with pytest.raises(Fenced, match="another node"):
        await store.record_routing(
            [replace(opened, status=ChatStatus.PENDING, agent_id=None, updated_at=at(6))],
            [AgentRouting(agent.id, AgentStatus.AWAY, 1, at(6))],
            [activity(chat_id=waiting.id, reason="late")],
            fence=old,
        )
    kept = await store.get_chat(waiting.id)
    assert kept is not None
    assert (kept.status, kept.agent_id) == (ChatStatus.OPEN, agent.id)
    still = await store.get_user(agent.id)
    assert still is not None
    assert (still.status, still.max_load) == (agent.status, agent.max_load)
    reasons = [e.reason for e in (await store.list_activity(ActivityFilter())).items]
    assert "late" not in reasons
    # The new holder decides freely; an unfenced write (one process, no cluster) is not checked.
    await store.record_routing([replace(opened, agent_id=None)], [], [], fence=new)
    await store.record_routing([replace(opened, status=ChatStatus.NEW)], [], [])
    moved = await store.get_chat(waiting.id)
    assert moved is not None
    assert (moved.status, moved.agent_id) == (ChatStatus.NEW, agent.id)


async def test_fenced_decisions_in_turn_each_write_their_own_chat(store: Backend) -> None:
    # An arbiter's decisions one after another, each on another chat (as chats open): each is
    # written to its chat and to no other.
    agent = await store.create_user(user(role=Role.AGENT, status=AgentStatus.AVAILABLE))
    token = await store.claim_routing("node-a")
    waiting = [await store.create_chat(chat()) for _ in range(4)]
    for number, each in enumerate(waiting):
        await store.record_routing(
            [ChatRouting(each.id, ChatStatus.OPEN, agent.id, None, None, at(number))],
            [AgentRouting(agent.id, AgentStatus.AVAILABLE, 4, at(number))],
            [activity(chat_id=each.id)],
            fence=token,
        )
    for number, each in enumerate(waiting):
        stored = await store.get_chat(each.id)
        assert stored is not None
        assert (stored.status, stored.agent_id, stored.updated_at) == (
            ChatStatus.OPEN,
            agent.id,
            at(number),
        )


async def test_a_token_never_claimed_is_refused(store: Backend) -> None:
    waiting = await store.create_chat(chat())
    with pytest.raises(Fenced):
        await store.record_routing(
            [ChatRouting(waiting.id, ChatStatus.OPEN, None, None, None, at(1))], [], [], fence=7
        )
    assert (await store.get_chat(waiting.id)) == waiting


# argument validation


async def test_naive_datetimes_are_refused(store: Backend) -> None:
    naive = datetime(2024, 5, 1, 12)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create_user(user(created_at=naive))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.revoke_token("jti", naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.count_chats(ChatFilter(created_from=naive))
    assert await store.count_users() == 0
    assert await store.is_token_revoked("jti") is False


async def test_page_sizes_below_one_are_refused(store: Backend) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_users(limit=0)
    with pytest.raises(ValueError, match="limit"):
        await store.list_chats(limit=-1)
    with pytest.raises(ValueError, match="limit"):
        await store.list_messages(new_id(), limit=0)
    with pytest.raises(ValueError, match="offset"):
        await store.list_notifications(new_id(), offset=-1)
    with pytest.raises(ValueError, match="limit"):
        await store.list_activity(ActivityFilter(), limit=0)


async def test_records_with_only_defaults_round_trip(store: Backend) -> None:
    bare = User(id=new_id(), email="bare@example.com", name="Bare", role=Role.USER)
    assert bare.created_at == datetime(1970, 1, 1, tzinfo=UTC)
    await store.create_user(bare)
    assert await store.get_user(bare.id) == bare
    bare_chat = Chat(id=new_id(), customer_id=bare.id, title="Hi")
    await store.create_chat(bare_chat)
    assert await store.get_chat(bare_chat.id) == bare_chat
