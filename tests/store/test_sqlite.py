"""What only the SQLite backend promises beyond the contract.

Data survives closing and reopening; the schema version is recorded and a newer one refused;
expired revocations are pruned at start; reads never queue behind the writer; group commit puts
concurrent operations in fewer transactions than operations, one refused operation does not fail
the rest of its batch, and closing the store answers every caller (stored, or StoreError)
without losing what was stored.
"""

from __future__ import annotations

import pickle
import re
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import trio
import trio.testing

from store import (
    ActivityFilter,
    DuplicateMessage,
    Message,
    MessageStatus,
    StoreError,
    open_sqlite_store,
    utcnow,
)
from store.sqlite._operations import _Database, mark_statement
from store.sqlite._schema import _MIGRATIONS, SCHEMA_VERSION
from store.sqlite._transaction import Call, Result, Writer, connect
from tests.cancelling import scopes_entered
from tests.store.factories import activity, at, chat, message, notification, user


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ada = user(email="ada@example.com")
    c = chat(customer_id=ada.id)
    m = message(c, 1, created_at=at(1))
    n = notification(ada.id)
    a = activity(chat_id=c.id)
    async with open_sqlite_store(path) as store:
        await store.create_user(ada)
        await store.create_chat(c)
        await store.append_message(m)
        await store.mark_messages(
            c.id, reader_id="someone-else", up_to_seq=1, status=MessageStatus.DELIVERED
        )
        await store.add_notification(n)
        await store.append_activity([a])
        await store.revoke_token("jti-1", utcnow() + timedelta(hours=1))
        await store.add_login_failure("ip:10.0.0.1", at(0))
        stored_chat = await store.get_chat(c.id)
    async with open_sqlite_store(path) as store:
        assert await store.get_user_by_email("ada@example.com") == ada
        assert await store.get_chat(c.id) == stored_chat
        assert await store.list_messages(c.id) == [replace(m, status=MessageStatus.DELIVERED)]
        assert await store.list_notifications(ada.id) == ([n], 1)
        assert (await store.list_activity(ActivityFilter(chat_id=c.id))).items == [a]
        assert await store.is_token_revoked("jti-1") is True
        assert await store.count_login_failures("ip:10.0.0.1", at(0)) == 1


def _pragma(path: Path, name: str) -> object:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


@pytest.mark.parametrize("statuses", [1, 2])
async def test_a_receipt_reads_only_the_seqs_it_may_change(tmp_path: Path, statuses: int) -> None:
    """The update of a receipt is a range of the (chat_id, seq) key bounded on both sides, so it
    costs the messages after the last receipt, however long the chat."""
    path = tmp_path / "store.db"
    async with open_sqlite_store(path):
        pass
    connection = sqlite3.connect(path)
    try:
        plan = connection.execute(
            f"EXPLAIN QUERY PLAN {mark_statement(statuses)}", [None] * (5 + statuses)
        ).fetchall()
    finally:
        connection.close()
    # The unique (chat_id, seq) key's index has a name SQLite makes up.
    [(_, _, _, detail)] = plan
    assert re.fullmatch(
        r"SEARCH messages USING INDEX \S+ \(chat_id=\? AND seq>\? AND seq<\?\)", detail
    )


async def test_schema_version_and_wal_mode_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path):
        pass
    assert SCHEMA_VERSION >= 1
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert _pragma(path, "journal_mode") == "wal"
    # reopening an up-to-date database migrates nothing and keeps working
    async with open_sqlite_store(path) as store:
        assert await store.count_users() == 0
    assert _pragma(path, "user_version") == SCHEMA_VERSION


async def test_a_first_version_database_is_migrated_with_its_users(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[0]:
        connection.execute(statement)
    connection.execute(
        "INSERT INTO users (id, email, name, role, status, max_load, created_at, updated_at)"
        " VALUES ('000000000000000000000001', 'ada@example.com', 'Ada', 'user', 'away', 3,"
        " '2024-05-01T12:00:00.000000Z', '2024-05-01T12:00:00.000000Z')"
    )
    connection.execute("PRAGMA user_version = 1")
    connection.close()
    async with open_sqlite_store(path) as store:
        ada = await store.get_user("000000000000000000000001")
        assert ada is not None
        assert ada.token_generation == 0
        assert await store.due_mail(ada.created_at) == []
    assert _pragma(path, "user_version") == SCHEMA_VERSION


async def test_customers_a_race_made_twice_keep_one_shop_id(tmp_path: Path) -> None:
    """Before the unique key, racing first requests could store two customers with one shop id;
    the first (which every look-up found) keeps it, so the key can be made."""
    path = tmp_path / "store.db"
    connection = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[:3]:
        for statement in statements:
            connection.execute(statement)
    for number in (1, 2):
        connection.execute(
            "INSERT INTO users (id, email, name, role, status, max_load, external_id, created_at,"
            f" updated_at) VALUES ('00000000000000000000000{number}', 'c{number}@example.com',"
            " 'Cy', 'customer', 'away', 3, 'shop-7', '2024-05-01T12:00:00.000000Z',"
            " '2024-05-01T12:00:00.000000Z')"
        )
    connection.execute("PRAGMA user_version = 3")
    connection.close()
    async with open_sqlite_store(path) as store:
        kept = await store.get_customer_by_external_id("shop-7")
        assert kept is not None
        assert kept.id == "000000000000000000000001"
        other = await store.get_user("000000000000000000000002")
        assert other is not None
        assert other.external_id is None
    assert _pragma(path, "user_version") == SCHEMA_VERSION


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path):
        pass
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreError, match="schema version"):
        async with open_sqlite_store(path):
            pass
    assert _pragma(path, "user_version") == SCHEMA_VERSION + 1


async def test_expired_revocations_are_pruned_at_start(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        await store.revoke_token("expired", utcnow() - timedelta(minutes=1))
        await store.revoke_token("live", utcnow() + timedelta(hours=1))
        assert await store.is_token_revoked("expired") is True
    async with open_sqlite_store(path) as store:
        assert await store.is_token_revoked("expired") is False
        assert await store.is_token_revoked("live") is True


async def test_concurrent_appends_all_land_in_fewer_transactions(tmp_path: Path) -> None:
    chats_count, per_chat = 4, 50
    async with open_sqlite_store(tmp_path / "store.db") as store:
        chats = [await store.create_chat(chat()) for _ in range(chats_count)]
        before = store.committed_transactions
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for c in chats:
                    for seq in range(1, per_chat + 1):
                        nursery.start_soon(store.append_message, message(c, seq))
        writes = chats_count * per_chat
        assert store.committed_transactions - before < writes
        for c in chats:
            stored = await store.list_messages(c.id, limit=per_chat + 1)
            assert [m.seq for m in stored] == list(range(1, per_chat + 1))
            updated = await store.get_chat(c.id)
            assert updated is not None
            assert updated.agent_unread_count == per_chat


async def test_reads_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        ada = await store.create_user(user())
        # Another process holds the write lock: the store's writer waits for it (busy timeout).
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            async with trio.open_nursery() as nursery:
                written = trio.Event()

                async def write() -> None:
                    await store.create_user(user())
                    written.set()

                nursery.start_soon(write)
                await trio.testing.wait_all_tasks_blocked()
                with trio.fail_after(2):
                    assert await store.get_user(ada.id) == ada
                assert not written.is_set()
                other.execute("COMMIT")
        finally:
            other.close()
        assert written.is_set()
        assert await store.count_users() == 2


async def test_one_refused_operation_does_not_fail_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        c = await store.create_chat(chat())
        first = await store.append_message(message(c, 1, client_msg_id="first"))
        duplicate = message(c, 100, client_msg_id="first")
        others = [message(c, seq) for seq in range(2, 42)]
        refused: list[Message] = []

        async def append(m: Message) -> None:
            try:
                await store.append_message(m)
            except DuplicateMessage:
                refused.append(m)

        # Another process holds the write lock, so a first write waits in flight (busy timeout)
        # while the others queue behind it: they then share one transaction.
        held = sqlite3.connect(path, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        before = store.committed_transactions
        try:
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(store.create_user, user())
                    await trio.testing.wait_all_tasks_blocked()
                    for m in [*others, duplicate]:
                        nursery.start_soon(append, m)
                    await trio.testing.wait_all_tasks_blocked()
                    held.execute("COMMIT")
        finally:
            held.close()
        assert store.committed_transactions - before == 2  # the first write, then the others
        assert refused == [duplicate]
        assert await store.list_messages(c.id) == [first, *others]
        updated = await store.get_chat(c.id)
        assert updated is not None
        assert updated.agent_unread_count == 1 + len(others)


def test_a_lone_write_is_its_transaction_alone_and_a_lone_refusal_leaves_nothing(
    tmp_path: Path,
) -> None:
    """No savepoint around a write that has its transaction to itself (two statements fewer,
    and most writes are lone); refused, the whole transaction is rolled back, the chat's
    update with it. (The writer process runs `Writer`; here it runs in the test.)"""
    connection = connect(tmp_path / "store.db")
    writer = Writer(connection, owner=1)
    database = _Database(connection)

    def run(*calls: Call) -> tuple[bool, list[Result]]:
        answer: tuple[bool, list[Result]] = pickle.loads(writer.run(1, calls))
        return answer

    c = chat()
    statements: list[str] = []
    try:
        assert run(("create_chat", (c,))) == (True, [(True, c)])
        first = message(c, 1, client_msg_id="first")
        assert run(("append_messages", ([first],))) == (True, [(True, [first])])
        connection.set_trace_callback(statements.append)
        second = message(c, 2)
        assert run(("append_messages", ([second],))) == (True, [(True, [second])])
        committed, [(ok, refusal)] = run(
            ("append_messages", ([message(c, 3, client_msg_id="first")],))
        )
        connection.set_trace_callback(None)
        assert (committed, ok) == (False, False)
        assert isinstance(refusal, DuplicateMessage)
        assert database.list_messages(c.id, 0, 10) == [first, second]
        updated = database.get_chat(c.id)
    finally:
        writer.close()
    # (UPDATE includes the batch's answer, kept in its transaction: see test_sqlite_writer.py)
    assert [s for s in statements if not s.startswith(("UPDATE", "INSERT", "SELECT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
        "BEGIN IMMEDIATE",
        "ROLLBACK",
    ]
    assert updated is not None
    assert (updated.last_seq, updated.agent_unread_count) == (2, 2)


async def test_calls_after_close_raise_store_error(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "store.db") as store:
        await store.create_user(user())
    with pytest.raises(StoreError, match="closed"):
        await store.count_users()


async def test_closing_answers_every_caller_and_keeps_what_it_stored(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    c = chat()
    messages = [message(c, seq) for seq in range(1, 201)]
    answers: dict[str, bool] = {}

    async def append(m: Message) -> None:
        try:
            await store.append_message(m)
        except StoreError:
            answers[m.id] = False
        else:
            answers[m.id] = True

    with trio.fail_after(30):
        async with trio.open_nursery() as callers:
            with trio.CancelScope() as store_scope:
                async with open_sqlite_store(path) as store:
                    await store.create_chat(c)
                    for m in messages[:100]:
                        callers.start_soon(append, m)
                    # the first hundred are queued or running; these queue behind them
                    await trio.testing.wait_all_tasks_blocked()
                    for m in messages[100:]:
                        callers.start_soon(append, m)
                    await trio.testing.wait_all_tasks_blocked()
                    store_scope.cancel()

    assert len(answers) == len(messages)
    # the first hundred were already in the writer's hands when the store closed
    assert all(answers[m.id] for m in messages[:100])
    async with open_sqlite_store(path) as reopened:
        stored = {m.id for m in await reopened.list_messages(c.id, limit=1000)}
    assert stored == {m.id for m in messages if answers[m.id]}


async def test_a_lone_write_is_made_by_its_caller_with_no_hand_over(tmp_path: Path) -> None:
    class Steps(trio.abc.Instrument):
        def __init__(self) -> None:
            self.tasks: set[trio.lowlevel.Task] = set()

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.tasks.add(task)

    async with open_sqlite_store(tmp_path / "store.db") as store:
        await store.create_user(user())
        steps = Steps()
        trio.lowlevel.add_instrument(steps)
        try:
            await store.create_user(user())
        finally:
            trio.lowlevel.remove_instrument(steps)
    # No writer task woke to take it and wake the caller back: each was a scheduler round.
    # (Trio's own system task runs the thread's reply into the loop.)
    trio_own = trio.lowlevel.current_root_task()
    woken = {
        t for t in steps.tasks if t.parent_nursery and t.parent_nursery.parent_task != trio_own
    }
    assert woken == {trio.lowlevel.current_task()}


async def test_a_batch_enters_one_cancel_scope_not_one_a_write_and_cancelled_writes_are_stored(
    tmp_path: Path,
) -> None:
    # A trio cancel scope for every write was a measurable share of a message's CPU (README,
    # Performance): the writes wait uncancellably instead, which keeps what the scope was for.
    # A batch's exchange with the writer process is shielded once, for all its writes.
    ada = user(email="ada@example.com")
    c = chat(customer_id=ada.id)
    async with open_sqlite_store(tmp_path / "store.db") as store:
        await store.create_user(ada)
        await store.create_chat(c)
        with scopes_entered() as entered:
            async with trio.open_nursery() as nursery:
                for seq in (1, 2, 3):  # the first leads a batch; the others join the next
                    nursery.start_soon(store.append_message, message(c, seq))
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()  # every caller, while their writes are under way
        assert entered == [
            "_core:NurseryManager.__aenter__",  # the test's own nursery
            "sqlite:WriterProcess.exchange",
            "sqlite:WriterProcess.exchange",
        ]
        assert [m.seq for m in await store.list_messages(c.id, after_seq=0, limit=10)] == [1, 2, 3]
