"""`switchboard migrate` and the CLI on MongoDB: a SQLite store copied to MongoDB and back comes
back equal, record for record; migrating again copies nothing; a chat cut off part way through its
messages is completed with the source's counters; an email taken in the target is reported, not
overwritten; an unreachable MongoDB is one error line; `seed` works on MongoDB too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from api import DEMO_CUSTOMERS, DEMO_STAFF
from store import (
    ActedBy,
    Activity,
    ActivityFilter,
    ActivityKind,
    AgentRouting,
    AgentStatus,
    ChatRouting,
    ChatStatus,
    MessageStatus,
    Page,
    Priority,
    Role,
    Store,
    open_store,
    pages,
)
from store.mongo import drop_database
from tests.store.factories import activity, at, chat, message, notification, user
from tests.store.mongo_server import (
    WireServer,
    free_port,
    fresh_database_url,
    running_wire_server,
)
from tools.cli import main

R = TypeVar("R")

LONG_CHAT = 250
"""Messages in one chat: more than a page of list_messages and of the migration."""


@pytest.fixture(scope="module")
def wire_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireServer]:
    with running_wire_server(tmp_path_factory.mktemp("nx-27017")) as server:
        yield server


@pytest.fixture
def mongo_url(wire_server: WireServer) -> Iterator[str]:
    url = fresh_database_url(wire_server.url)
    yield url
    drop_database(url)


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


async def fill(url: str) -> None:
    """One of every kind of record, in the states the system puts them in."""
    async with open_store(url) as store:
        admin = await store.create_user(user(role=Role.ADMIN, email="admin@example.com"))
        agent = await store.create_user(user(role=Role.AGENT, password_hash="$argon2id$x"))
        customer = await store.create_user(user(role=Role.CUSTOMER, external_id="shop-1"))
        long = await store.create_chat(chat(customer_id=customer.id, agent_id=agent.id))
        for seq in range(1, LONG_CHAT + 1):
            sender = (customer.id, Role.CUSTOMER) if seq % 3 else (agent.id, Role.AGENT)
            await store.append_message(
                message(long, seq, sender_id=sender[0], sender_role=sender[1])
            )
        await store.mark_messages(
            long.id, reader_id=agent.id, up_to_seq=200, status=MessageStatus.SEEN
        )
        short = await store.create_chat(chat(customer_id=customer.id, priority=Priority.HIGH))
        await store.append_message(message(short, 1, content="Заказ №1 🚚"))
        await store.create_chat(chat(customer_id=customer.id, status=ChatStatus.RESOLVED))
        entries = [
            activity(
                kind=ActivityKind.ASSIGNMENT,
                chat_id=long.id,
                agent_id=agent.id,
                to_value=agent.id,
                reason="least loaded: 0/3",
            ),
            activity(kind=ActivityKind.CHAT_STATUS, chat_id=long.id, from_value="new"),
        ]
        await store.record_routing(
            [ChatRouting(long.id, ChatStatus.OPEN, agent.id, None, None, at(5))],
            [AgentRouting(agent.id, AgentStatus.BUSY, 4, at(5))],
            entries,
        )
        await store.append_activity(
            [
                activity(
                    kind=ActivityKind.AGENT_STATUS,
                    agent_id=agent.id,
                    actor=ActedBy.ADMIN,
                    actor_id=admin.id,
                    from_value="available",
                    to_value="away",
                )
            ]
        )
        await store.add_notification(notification(agent.id, chat_id=long.id))
        read = await store.add_notification(notification(agent.id, title="read"))
        await store.mark_notification_read(agent.id, read.id)
        await store.add_notification(notification(admin.id))


async def every_record(url: str) -> dict[str, Any]:
    """Everything a store holds that `migrate` copies, read back through the protocol."""
    async with open_store(url) as store:
        users = await collect(lambda cursor: store.list_users(cursor=cursor))
        chats = await collect(lambda cursor: store.list_chats(cursor=cursor))
        return {
            "users": users,
            "chats": chats,
            "messages": {c.id: await store.list_messages(c.id, limit=1000) for c in chats},
            "notifications": {u.id: await store.list_notifications(u.id, limit=100) for u in users},
            "activity": await all_activity(store),
        }


async def all_activity(store: Store) -> list[Activity]:
    return await collect(lambda cursor: store.list_activity(ActivityFilter(), cursor=cursor))


async def collect(fetch: Callable[[str | None], Awaitable[Page[R]]]) -> list[R]:
    return [item async for page in pages(fetch) for item in page]


def migrate(source: str, target: str) -> int:
    return main(["migrate", "--from", source, "--to", target])


def test_sqlite_to_mongodb_to_sqlite_comes_back_equal(
    tmp_path: Path, mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, last = sqlite_url(tmp_path, "first.db"), sqlite_url(tmp_path, "last.db")
    trio.run(fill, first)
    original = trio.run(every_record, first)
    assert len(original["messages"][original["chats"][0].id]) == LONG_CHAT

    assert migrate(first, mongo_url) == 0
    out = capsys.readouterr().out
    for line in (
        "users: 3 copied, 0 already there",
        "chats: 3 copied, 0 already there",
        f"messages: {LONG_CHAT + 1} copied, 0 already there",
        "notifications: 3 copied, 0 already there",
        "activity: 3 copied, 0 already there",
        "not copied: token revocations and login-failure counts",
    ):
        assert line in out
    assert trio.run(every_record, mongo_url) == original

    assert migrate(mongo_url, last) == 0
    capsys.readouterr()
    assert trio.run(every_record, last) == original


def test_migrating_again_copies_nothing(
    tmp_path: Path, mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sqlite_url(tmp_path, "source.db")
    trio.run(fill, source)
    assert migrate(source, mongo_url) == 0
    capsys.readouterr()
    assert migrate(source, mongo_url) == 0
    out = capsys.readouterr().out
    assert "users: 0 copied, 3 already there" in out
    assert f"messages: 0 copied, {LONG_CHAT + 1} already there" in out
    assert "activity: 0 copied, 3 already there" in out
    assert trio.run(every_record, mongo_url) == trio.run(every_record, source)


def test_a_chat_cut_off_part_way_is_completed_with_the_source_counters(
    tmp_path: Path, mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sqlite_url(tmp_path, "source.db")
    trio.run(fill, source)

    async def copy_the_start_of_one_chat() -> None:
        # what an earlier migration left when it stopped in the middle of a chat
        async with open_store(source) as original, open_store(mongo_url) as target:
            long = (await original.list_chats(limit=1)).items[0]
            await target.create_chat(long)
            for m in await original.list_messages(long.id, limit=10):
                await target.append_message(m)

    trio.run(copy_the_start_of_one_chat)
    assert migrate(source, mongo_url) == 0
    assert "chats: 2 copied, 1 already there" in capsys.readouterr().out
    assert trio.run(every_record, mongo_url) == trio.run(every_record, source)


def test_an_email_taken_in_the_target_is_reported_not_overwritten(
    tmp_path: Path, mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sqlite_url(tmp_path, "source.db")
    trio.run(fill, source)

    async def an_other_admin() -> None:
        async with open_store(mongo_url) as target:
            await target.create_user(user(email="admin@example.com", name="Someone else"))

    trio.run(an_other_admin)
    assert migrate(source, mongo_url) == 1
    captured = capsys.readouterr()
    assert "users: 2 copied, 0 already there" in captured.out
    assert "1 users not copied" in captured.err
    assert "admin@example.com" in captured.err
    copied = trio.run(every_record, mongo_url)
    assert [u.name for u in copied["users"] if u.email == "admin@example.com"] == ["Someone else"]
    assert len(copied["chats"]) == 3


def test_an_unreachable_mongodb_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    target = f"mongodb://127.0.0.1:{port}/switchboard?serverSelectionTimeoutMS=300"
    source = sqlite_url(tmp_path, "source.db")
    trio.run(fill, source)  # a source must exist: migrate never creates one
    assert migrate(source, target) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"switchboard: error: cannot reach MongoDB at mongodb://127.0.0.1:{port}")
    assert err.count("\n") == 1


def test_the_same_store_on_both_sides_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path, "one.db")
    assert migrate(url, url) == 2
    assert "same store" in capsys.readouterr().err


def test_seed_on_mongodb_is_idempotent(mongo_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = len(DEMO_STAFF) + len(DEMO_CUSTOMERS)
    assert main(["seed", "--store", mongo_url]) == 0
    assert f"seed: {seeded} created, 0 already there" in capsys.readouterr().out
    assert main(["seed", "--store", mongo_url]) == 0
    assert f"seed: 0 created, {seeded} already there" in capsys.readouterr().out


def test_migrate_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["migrate", "--help"])
    assert stopped.value.code == 0
    help_text = capsys.readouterr().out
    assert "--from URL" in help_text
    assert "--to URL" in help_text


def test_a_mongodb_source_that_is_not_there_is_refused_not_created(
    tmp_path: Path, mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate(mongo_url, sqlite_url(tmp_path, "copy.db")) == 2
    err = capsys.readouterr().err
    database = mongo_url.partition("?")[0].rpartition("/")[2]
    assert err == f"switchboard: error: there is no database {database!r} on this MongoDB server\n"
    assert not (tmp_path / "copy.db").exists()
