"""What only the MongoDB backend promises beyond the contract.

An unreachable server is one clear StoreUnavailable, quickly, naming the URL without its
password; racing appends of one seq or one client_msg_id store exactly one message and count it
once; a server lost mid-run makes calls raise StoreUnavailable, and the same store works again
once the server is back; datetimes are BSON dates plus exact microseconds; the unique and TTL
indexes exist. Runs against the tests' wire-protocol server, and MONGODB_URL's when it is set.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import neosqlite
import outcome
import pytest
import trio
import trio.testing
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from store import (
    ActivityFilter,
    AgentStatus,
    Chat,
    ChatRouting,
    ChatStatus,
    DuplicateMessage,
    Fenced,
    Message,
    MessageStatus,
    MongoStore,
    NotFound,
    Role,
    StoreError,
    StoreUnavailable,
    new_id,
    open_mongo_store,
    open_store,
)
from store.mongo import drop_database
from store.mongo._schema import _INDEXES
from tests.store.factories import activity, at, chat, message, notification, user
from tests.store.mongo_server import (
    WireServer,
    free_port,
    fresh_database_url,
    fresh_mongo_store,
    running_wire_server,
)

QUICKLY = 10
"""Seconds: generous for a loaded machine, yet a third of PyMongo's own 30 s default wait."""

RACERS = 16

MONGODB_URL = os.environ.get("MONGODB_URL")


@pytest.fixture(params=["wire-protocol server", *(["MONGODB_URL"] if MONGODB_URL else [])])
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "MONGODB_URL":
        assert MONGODB_URL is not None
        return MONGODB_URL
    server: WireServer = request.getfixturevalue("wire_server")
    return server.url


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    url = fresh_database_url(server_url)
    yield url
    drop_database(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MongoStore]:
    async with open_mongo_store(database_url) as opened:
        yield opened


@contextmanager
def _looking_at(url: str) -> Iterator[Database[dict[str, Any]]]:
    """A plain PyMongo view of the database `url` names, to see what the store wrote."""
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    with client:
        yield client.get_default_database()


# opening


async def test_an_unreachable_server_is_one_clear_error_naming_the_url() -> None:
    port = free_port()  # nothing listens there
    url = f"mongodb://ada:s3cret@127.0.0.1:{port}/switchboard?serverSelectionTimeoutMS=300"
    with trio.fail_after(QUICKLY), pytest.raises(StoreUnavailable) as refused:
        async with open_store(url):
            pass
    text = str(refused.value)
    assert text.startswith(f"cannot reach MongoDB at mongodb://ada@127.0.0.1:{port}/switchboard: ")
    assert "Connection refused" in text
    assert "s3cret" not in text
    assert "serverSelectionTimeoutMS" not in text  # options may carry secrets too
    assert "Topology Description" not in text  # PyMongo's long tail, cut


async def test_a_malformed_url_is_a_store_error_naming_it_without_the_password() -> None:
    with pytest.raises(StoreError) as refused:
        async with open_mongo_store("mongodb://ada:s3cret@127.0.0.1:port/x"):
            pass
    assert str(refused.value).startswith("cannot use MongoDB at mongodb://ada@127.0.0.1:port/x: ")
    assert "s3cret" not in str(refused.value)


async def test_the_wire_protocol_server_is_used_without_transactions(
    wire_server: WireServer,
) -> None:
    # It presents itself as a standalone server, so MongoStore orders its writes instead.
    async with fresh_mongo_store(wire_server.url) as opened:
        assert opened.uses_transactions is False


async def test_calls_after_close_raise_store_error(database_url: str) -> None:
    async with open_mongo_store(database_url) as closed:
        await closed.count_users()
    with pytest.raises(StoreError, match="closed"):
        await closed.count_users()


# layout


async def test_a_user_stored_before_token_generations_reads_as_generation_zero(
    store: MongoStore, database_url: str
) -> None:
    ada = await store.create_user(user())
    with _looking_at(database_url) as database:
        database["users"].update_one({"_id": ada.id}, {"$unset": {"token_generation": ""}})
    assert await store.get_user(ada.id) == ada
    assert (await store.set_password(ada.id, "new", ada.updated_at)).token_generation == 1


async def test_datetimes_are_bson_dates_with_exact_microseconds(
    store: MongoStore, database_url: str
) -> None:
    c = await store.create_chat(chat())
    assert c.created_at.microsecond % 1000 != 0  # the factories' times have microseconds
    with _looking_at(database_url) as database:
        document = database["chats"].find_one({"_id": c.id})
    assert document is not None
    # what people, tools and TTL indexes read: a date, to the millisecond
    assert document["created_at"] == c.created_at.replace(
        microsecond=c.created_at.microsecond // 1000 * 1000, tzinfo=None
    )
    # what the record is rebuilt from: every microsecond
    assert document["created_at_us"] % 1_000_000 == c.created_at.microsecond
    assert document["queued_at"] is None
    assert await store.get_chat(c.id) == c


async def test_the_unique_and_expiry_indexes_exist(store: MongoStore, database_url: str) -> None:
    def indexes(collection: str) -> dict[tuple[str, ...], Mapping[str, Any]]:
        # by keys: the wire-protocol server names indexes its own way
        with _looking_at(database_url) as database:
            return {tuple(i["key"]): i for i in database[collection].list_indexes()}

    users, messages, revoked = indexes("users"), indexes("messages"), indexes("revoked_tokens")
    assert users[("email",)]["unique"] is True
    assert messages[("chat_id", "seq")]["unique"] is True
    assert messages[("chat_id", "client_msg_id")]["unique"] is True
    assert revoked[("expires_at",)]["expireAfterSeconds"] == 0


# round trips


class _Commands(monitoring.CommandListener):
    """The names of the commands a client sent, in order, and the commands themselves."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.documents: list[Mapping[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)
        self.documents.append(event.command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("bulk", [False, True], ids=["separate commands", "bulkWrite"])
async def test_round_trips_per_write(
    database_url: str, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    """A message (or a run of them) and its chat's counters: one bulkWrite where the server has
    it, else one insert and one update; a delivery receipt: one update, of the chat alone."""
    commands = _Commands()
    listening = functools.partial(MongoClient, event_listeners=[commands])
    monkeypatch.setattr("store.mongo._client.MongoClient", listening)
    async with open_mongo_store(database_url, bulk=bulk) as store:
        c = await store.create_chat(chat())
        commands.sent.clear()
        await store.append_message(message(c, 1))
        one = list(commands.sent)
        commands.sent.clear()
        await store.append_messages([message(c, 2), message(c, 3), message(c, 4)])
        run = list(commands.sent)
        commands.sent.clear()
        commands.documents.clear()
        agent = user(role=Role.AGENT)
        await store.mark_messages(
            c.id, reader_id=agent.id, up_to_seq=4, status=MessageStatus.DELIVERED
        )
        delivered = list(commands.sent)
        [written] = [d for d in commands.documents if d.get("update") or d.get("bulkWrite")]
    expected = ["bulkWrite"] if bulk else ["insert", "update"]
    assert one == expected
    assert run == expected
    assert delivered == ["update"]
    assert written["update"] == "chats"


@pytest.mark.parametrize("status", [MessageStatus.DELIVERED, MessageStatus.SEEN])
async def test_a_receipt_is_a_range_of_the_chat_seq_index(
    database_url: str, monkeypatch: pytest.MonkeyPatch, status: MessageStatus
) -> None:
    """A receipt whose `after_seq` is past its reader's mark (here: none) raises the messages'
    own statuses, reading the seqs after `after_seq` from the (chat_id, seq) index, not every
    message. nx-27017 answers from an index only `$eq`, `$ne` and ranges (a plain equality or
    an `$in` reads the whole collection): the filter is made of those, and the server's plan
    for it (its SQLite plan; MongoDB's stages) is a range of that index."""
    commands = _Commands()
    listening = functools.partial(MongoClient, event_listeners=[commands])
    monkeypatch.setattr("store.mongo._client.MongoClient", listening)
    async with open_mongo_store(database_url, bulk=False) as store:
        c = await store.create_chat(chat())
        await store.append_messages([message(c, seq) for seq in (1, 2, 3)])
        commands.documents.clear()
        await store.mark_messages(c.id, reader_id=new_id(), up_to_seq=3, status=status, after_seq=1)
        assert [m.status for m in await store.list_messages(c.id)] == ["sent", status, status]
    [update] = [d for d in commands.documents if d.get("update") == "messages"]
    [statement] = update["updates"]
    query = statement["q"]
    assert query["seq"] == {"$gt": 1, "$lte": 3}
    plan = _plan(database_url, "messages", query)
    on_nx = "USING INDEX idx_messages_chat_id_seq (<expr>=? AND <expr>>? AND <expr><?)"
    assert on_nx in plan or ("IXSCAN" in plan and "chat_seq" in plan), plan
    # nx-27017's update reads the filter with another translator than its find
    assert on_nx in _nx_update_plan("messages", query)


async def test_a_receipt_is_a_mark_on_its_chat_that_a_restore_keeps(database_url: str) -> None:
    """A receipt moves its reader's mark on the chat document and writes no message: their
    documents still say sent, and they read back seen. Restoring the chat's record (as
    `switchboard migrate` does) keeps the marks, and so the statuses."""
    agent = new_id()
    async with open_mongo_store(database_url) as store:
        c = await store.create_chat(chat(agent_id=agent))
        await store.append_messages([message(c, 1), message(c, 2)])
        await store.mark_messages(c.id, reader_id=agent, up_to_seq=2, status=MessageStatus.SEEN)
        with _looking_at(database_url) as database:
            stored = [d["status"] for d in database["messages"].find({"chat_id": c.id})]
            document = database["chats"].find_one({"_id": c.id})
        assert stored == ["sent", "sent"]
        assert document is not None
        assert document["reads"] == {"u" + agent: {"delivered": 2, "seen": 2}}
        current = await store.get_chat(c.id)
        assert current is not None
        await store.restore_chat(replace(current, title="Restored"))
        seen = [MessageStatus.SEEN] * 2
        assert [m.status for m in await store.list_messages(c.id)] == seen


def _plan(database_url: str, collection: str, query: Mapping[str, Any]) -> str:
    """The server's plan for finding `query` in `collection`: SQLite's on nx-27017, MongoDB's
    stages on MongoDB."""
    with _looking_at(database_url) as database:
        explained = database.command("explain", {"find": collection, "filter": query})
    return str(explained["queryPlanner"]["winningPlan"])


def _nx_update_plan(collection: str, query: Mapping[str, Any]) -> str:
    """The SQLite plan nx-27017 gives `query` in an update or a count, whose translator is not
    the one its `find` (and so `explain`) uses: made by that translator (of neosqlite, the
    library under nx-27017) on an empty copy of the collection's indexes."""
    connection = neosqlite.Connection(":memory:")
    try:
        target = connection[collection]
        for index in _INDEXES:
            if index.collection == collection:
                target.create_index([(key, 1) for key in index.keys if key != "_id"])
        where, parameters = target.query_engine.sql_translator.translate_match(dict(query))
        if where is None:
            return "every document, in Python"
        plan = connection.db.execute(
            f"EXPLAIN QUERY PLAN SELECT id FROM {collection} {where}", parameters
        )
        return str([row[3] for row in plan])
    finally:
        connection.close()


def _filters(commands: _Commands) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(command, collection, filter) of every find, count (an aggregate's $match) and update."""
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    for command in commands.documents:
        if "find" in command:
            found.append(("find", command["find"], command["filter"]))
        elif "aggregate" in command:
            for stage in command["pipeline"]:
                if "$match" in stage:
                    found.append(("aggregate", command["aggregate"], stage["$match"]))
        elif "update" in command:
            for statement in command["updates"]:
                found.append(("update", command["update"], statement["q"]))
    return found


@pytest.mark.parametrize(
    "read",
    [
        "list_messages",
        "get_message_by_client_id",
        "list_notifications",
        "count_unread_notifications",
        "mark_all_notifications_read",
    ],
)
async def test_a_conversations_reads_are_answered_from_an_index(
    database_url: str, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """What a conversation reads when it starts, resends or leaves a notification, and the
    notification bell: each query is one the server answers from an index, whatever the
    collection holds (on nx-27017 a plain equality reads every document)."""
    commands = _Commands()
    listening = functools.partial(MongoClient, event_listeners=[commands])
    monkeypatch.setattr("store.mongo._client.MongoClient", listening)
    async with open_mongo_store(database_url) as store:
        c = await store.create_chat(chat())
        await store.append_messages([message(c, seq) for seq in (1, 2, 3)])
        await store.add_notification(notification(c.customer_id))
        commands.documents.clear()
        match read:
            case "list_messages":
                assert len(await store.list_messages(c.id, after_seq=1)) == 2
            case "get_message_by_client_id":
                assert await store.get_message_by_client_id(c.id, "client-2") is not None
            case "list_notifications":
                assert (await store.list_notifications(c.customer_id))[1] == 1
            case "count_unread_notifications":
                assert await store.count_unread_notifications(c.customer_id) == 1
            case "mark_all_notifications_read":
                assert await store.mark_all_notifications_read(c.customer_id) == 1
    with _looking_at(database_url) as database:
        on_nx = database.client.admin.command("buildInfo").get("process") == "nx_27017"
    filters = _filters(commands)
    assert filters
    for command, collection, query in filters:
        if on_nx and command != "find":
            plan = _nx_update_plan(collection, query)
        else:
            plan = _plan(database_url, collection, query)
        assert "USING INDEX" in plan or "IXSCAN" in plan, (command, query, plan)


# group commit


@pytest.mark.parametrize(
    "mode",
    ["separate commands", "transactions", "bulkWrite"],
)
async def test_appends_of_many_chats_waiting_on_one_write_share_the_next(
    database_url: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The first append goes at once; the 19 that arrive while it is in flight leave together,
    one insert and one update for all of them, each chat counted exactly as alone."""
    commands = _Commands()
    listening = functools.partial(MongoClient, event_listeners=[commands])
    monkeypatch.setattr("store.mongo._client.MongoClient", listening)
    options = {"transactions": mode == "transactions", "bulk": mode == "bulkWrite"}
    async with open_mongo_store(database_url, **options) as store:
        chats = [await store.create_chat(chat()) for _ in range(20)]
        commands.sent.clear()
        with trio.fail_after(QUICKLY):
            async with trio.open_nursery() as nursery:
                for c in chats:
                    nursery.start_soon(store.append_messages, [message(c, 1), message(c, 2)])
        assert store.appends.writes == 2
        sent = [name for name in commands.sent if name not in ("commitTransaction", "endSessions")]
        one_write = ["bulkWrite"] if mode == "bulkWrite" else ["insert", "update"]
        assert sent == one_write * 2
        for c in chats:
            assert [m.seq for m in await store.list_messages(c.id)] == [1, 2]
            counted = await store.get_chat(c.id)
            assert counted is not None
            assert (counted.last_seq, counted.agent_unread_count) == (2, 2)


async def test_receipts_of_many_chats_waiting_on_one_write_share_the_next(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Receipts too: the first goes at once, the 19 that arrive while it is in flight leave
    together as one update command, and each chat reads back as marked alone."""
    commands = _Commands()
    listening = functools.partial(MongoClient, event_listeners=[commands])
    monkeypatch.setattr("store.mongo._client.MongoClient", listening)
    agent = new_id()
    async with open_mongo_store(database_url) as store:
        chats = [await store.create_chat(chat(agent_id=agent)) for _ in range(20)]
        for c in chats:
            await store.append_messages([message(c, 1), message(c, 2)])
        commands.sent.clear()
        with trio.fail_after(QUICKLY):
            async with trio.open_nursery() as nursery:
                for c in chats:
                    nursery.start_soon(
                        functools.partial(
                            store.mark_messages,
                            c.id,
                            reader_id=agent,
                            up_to_seq=2,
                            status=MessageStatus.SEEN,
                        )
                    )
        assert store.receipts.writes == 2
        # The first, alone, tries the customer's side, then the agent's: the 19 are one update.
        assert commands.sent == ["update", "update", "update"]
        for c in chats:
            assert [m.status for m in await store.list_messages(c.id)] == ["seen", "seen"]
            read = await store.get_chat(c.id)
            assert read is not None
            assert read.agent_unread_count == 0


async def test_a_receipt_lets_the_append_in_flight_go_first(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt made while an append's write is in flight starts its own once that write
    ends, so a server running one command at a time does not hold the message behind it."""
    commands = _Commands()
    listening = functools.partial(MongoClient, event_listeners=[commands])
    monkeypatch.setattr("store.mongo._client.MongoClient", listening)
    agent = new_id()
    async with open_mongo_store(database_url) as store:
        busy, read = [await store.create_chat(chat(agent_id=agent)) for _ in range(2)]
        await store.append_messages([message(read, 1)])
        held = threading.Event()
        append_runs = store._database.append_runs

        def held_append_runs(runs: list[Sequence[Message]]) -> list[outcome.Outcome[list[Message]]]:
            held.wait(QUICKLY)
            return append_runs(runs)

        monkeypatch.setattr(store._database, "append_runs", held_append_runs)
        calls = 0
        call = store._call

        async def counted(run: Callable[[Any], Any]) -> Any:
            nonlocal calls
            calls += 1
            return await call(run)

        monkeypatch.setattr(store, "_call", counted)
        commands.sent.clear()
        with trio.fail_after(QUICKLY):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.append_messages, [message(busy, 1)])
                await trio.testing.wait_all_tasks_blocked()
                receipt = functools.partial(
                    store.mark_messages,
                    read.id,
                    reader_id=agent,
                    up_to_seq=1,
                    status=MessageStatus.DELIVERED,
                )
                nursery.start_soon(receipt)
                await trio.testing.wait_all_tasks_blocked()
                assert calls == 1  # the append's, held; the receipt waits for it
                held.set()
        assert calls == 2
        assert commands.sent == ["insert", "update", "update"]
        assert [m.status for m in await store.list_messages(read.id)] == ["delivered"]


async def test_receipts_written_together_that_do_not_all_follow_on_are_made_alone(
    database_url: str,
) -> None:
    """In one combined write: a receipt past the last message, one after a gap, one to a chat
    that is gone and one that follows on. The gone chat's is refused, to its caller only; each
    other is made exactly as alone."""
    agent = new_id()
    async with open_mongo_store(database_url) as store:
        first, past, gap, plain, gone = (chat(agent_id=agent) for _ in range(5))
        for c in (first, past, gap, plain):
            await store.create_chat(c)
            await store.append_messages([message(c, seq) for seq in (1, 2, 3)])
        answers: dict[str, object] = {}

        async def mark(c: Chat, up_to_seq: int, after_seq: int = 0) -> None:
            try:
                await store.mark_messages(
                    c.id,
                    reader_id=agent,
                    up_to_seq=up_to_seq,
                    status=MessageStatus.DELIVERED,
                    after_seq=after_seq,
                )
                answers[c.id] = "marked"
            except StoreError as exc:
                answers[c.id] = exc

        writes = store.receipts.writes
        with trio.fail_after(QUICKLY):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(mark, first, 3)
                await trio.testing.wait_all_tasks_blocked()  # its write is in flight
                nursery.start_soon(mark, past, 99)
                nursery.start_soon(mark, gap, 3, 1)
                nursery.start_soon(mark, plain, 2)
                nursery.start_soon(mark, gone, 2)
        assert store.receipts.writes == writes + 2  # the four after the first went together
        assert isinstance(answers.pop(gone.id), NotFound)
        assert set(answers.values()) == {"marked"}
        expected = {
            first.id: ["delivered"] * 3,
            past.id: ["delivered"] * 3,
            gap.id: ["sent", "delivered", "delivered"],
            plain.id: ["delivered", "delivered", "sent"],
        }
        for chat_id, statuses in expected.items():
            assert [m.status for m in await store.list_messages(chat_id)] == statuses


@pytest.mark.parametrize("resend", [True, False], ids=["a resend and a gone chat", "a gone chat"])
@pytest.mark.parametrize("mode", ["separate commands", "transactions", "bulkWrite"])
async def test_a_run_refused_among_others_is_refused_alone(
    database_url: str, mode: str, resend: bool
) -> None:
    """A chat that is gone (and a resent message), in one combined write with good runs: the
    gone chat's run is refused as not found (and the resend as a duplicate), to their callers
    only; the good runs are stored and counted, and nothing else is."""
    options = {"transactions": mode == "transactions", "bulk": mode == "bulkWrite"}
    async with open_mongo_store(database_url, **options) as store:
        first, resent, good, gone = (chat() for _ in range(4))
        for c in (first, resent, good):
            await store.create_chat(c)
        original = await store.append_message(message(resent, 1))
        answers: dict[str, object] = {}

        async def append(c: Chat, m: Message) -> None:
            try:
                answers[c.id] = await store.append_messages([m])
            except StoreError as exc:
                answers[c.id] = exc

        writes = store.appends.writes
        with trio.fail_after(QUICKLY):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(append, first, message(first, 1))
                await trio.testing.wait_all_tasks_blocked()  # its write is in flight
                again = message(resent, 2, client_msg_id="client-1" if resend else "client-2")
                nursery.start_soon(append, resent, again)
                nursery.start_soon(append, good, message(good, 1))
                nursery.start_soon(append, gone, message(gone, 1))
        assert store.appends.writes == writes + 2  # the three after the first went together
        if resend:
            assert isinstance(answers[resent.id], DuplicateMessage)
        else:
            assert answers[resent.id] == [again]
        assert isinstance(answers[gone.id], NotFound)
        stored = answers[good.id]
        assert isinstance(stored, list)
        assert [m.seq for m in stored] == [1]
        assert await store.list_messages(resent.id) == [original] + ([] if resend else [again])
        assert await store.list_messages(gone.id) == []
        for c, count in ((first, 1), (resent, 1 if resend else 2), (good, 1)):
            counted = await store.get_chat(c.id)
            assert counted is not None
            assert (counted.last_seq, counted.agent_unread_count) == (count, count)


# races


@pytest.mark.parametrize("clash", ["seq", "client_msg_id"])
async def test_racing_appends_store_exactly_one(store: MongoStore, clash: str) -> None:
    c = await store.create_chat(chat())
    racers = [
        message(c, 1, client_msg_id=f"phone-{i}")
        if clash == "seq"
        else message(c, i + 1, client_msg_id="phone")
        for i in range(RACERS)
    ]
    stored: list[Message] = []
    refused: list[Message] = []

    async def append(m: Message) -> None:
        try:
            stored.append(await store.append_message(m))
        except DuplicateMessage:
            refused.append(m)

    with trio.fail_after(QUICKLY):
        async with trio.open_nursery() as nursery:
            for m in racers:
                nursery.start_soon(append, m)
    assert len(stored) == 1
    assert len(refused) == RACERS - 1
    assert await store.list_messages(c.id) == stored
    counted = await store.get_chat(c.id)
    assert counted is not None
    assert (counted.last_message_id, counted.last_seq) == (stored[0].id, stored[0].seq)
    assert counted.agent_unread_count == 1


# fencing


async def test_a_holder_frozen_between_its_commit_and_its_writes_changes_nothing_late(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' stores on one database. The first holder's decision passes its commit
    point, then the holder freezes (as under SIGSTOP) before writing it out; the second claims,
    which completes that decision, and decides again; the first wakes and writes: nothing it
    writes lands, and its next decision is refused."""
    async with open_mongo_store(database_url) as first, open_mongo_store(database_url) as second:
        ann = await first.create_user(user(role=Role.AGENT, status=AgentStatus.AVAILABLE))
        bob = await first.create_user(user(role=Role.AGENT, status=AgentStatus.AVAILABLE))
        waiting = await first.create_chat(chat())
        old = await first.claim_routing("first")
        frozen, thawed = threading.Event(), threading.Event()
        write_out = first._database._apply_journal

        def freeze_then_write(*args: Any) -> None:
            frozen.set()
            thawed.wait(QUICKLY)
            write_out(*args)

        monkeypatch.setattr(first._database, "_apply_journal", freeze_then_write)
        to_ann = ChatRouting(waiting.id, ChatStatus.OPEN, ann.id, None, None, at(1))
        accepted = activity(chat_id=waiting.id, reason="to ann")
        born = chat(status=ChatStatus.OPEN, agent_id=ann.id)  # created by the frozen decision

        async def decide_then_freeze() -> None:
            await first.record_routing([to_ann], [], [accepted], new_chats=[born], fence=old)

        with trio.fail_after(QUICKLY):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(decide_then_freeze)
                await trio.to_thread.run_sync(frozen.wait)
                new = await second.claim_routing("second")
                taken_over = await second.get_chat(waiting.id)
                assert taken_over is not None
                assert taken_over.agent_id == ann.id  # the claim completed the accepted decision
                assert await second.get_chat(born.id) is not None  # and created its chat
                to_bob = replace(to_ann, agent_id=bob.id, updated_at=at(2))
                born_to_bob = replace(to_bob, chat_id=born.id)
                await second.record_routing(
                    [to_bob, born_to_bob],
                    [],
                    [activity(chat_id=waiting.id, reason="to bob")],
                    fence=new,
                )
                thawed.set()
        final = await second.get_chat(waiting.id)
        assert final is not None
        assert (final.agent_id, final.updated_at) == (bob.id, at(2))
        reborn = await second.get_chat(born.id)
        assert reborn is not None
        assert (reborn.agent_id, reborn.updated_at) == (bob.id, at(2))  # the late insert: skipped
        log = (await second.list_activity(ActivityFilter(chat_id=waiting.id))).items
        assert [entry.reason for entry in log] == ["to ann", "to bob"]
        with pytest.raises(Fenced):
            await first.record_routing([to_ann], [], [], fence=old)
        assert (await second.get_chat(waiting.id)) == final


# a lost server


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[WireServer]:
    """A wire-protocol server of this test's own, for tests that stop it."""
    with running_wire_server(tmp_path / "nx-27017") as server:
        yield server


async def test_a_lost_server_makes_calls_unavailable_until_it_is_back(
    own_server: WireServer,
) -> None:
    url = fresh_database_url(own_server.url)
    shown = url.partition("?")[0]
    async with open_mongo_store(url) as store:
        kept = await store.create_user(user())

        own_server.kill()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get_user(kept.id),  # a read on the connection the server dropped
            lambda: store.create_user(user()),  # a write while there is no server at all
        ]
        for call in calls:
            with trio.fail_after(QUICKLY), pytest.raises(StoreUnavailable) as lost:
                await call()
            assert str(lost.value).startswith(f"lost MongoDB at {shown}: ")

        # the same port and data: a restarted server, as after a crash or a failover
        with ExitStack() as stack:
            restarted = running_wire_server(own_server.data_dir, own_server.port)
            await trio.to_thread.run_sync(lambda: stack.enter_context(restarted))
            with trio.fail_after(QUICKLY):
                assert await store.get_user(kept.id) == kept
                await store.create_user(user())
                assert await store.count_users() == 2
