"""SQLite's writer process: it runs every write and ends with the store; one that is killed is
replaced, and the batch it held is answered by the next, from the database if it was committed
and by running it if not; it dies with a server that crashes; and what it cannot send back
still reaches the caller.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from store import Message, StoreError, StoreUnavailable, open_sqlite_store
from store.sqlite._process import WriterGone, WriterProcess
from store.sqlite._schema import SCHEMA_VERSION
from store.sqlite._transaction import Writer, connect, portable
from store.sqlite._writer import _recorded
from tests.store.factories import chat, message, user
from tools._server import exited


async def gone(pid: int) -> None:
    """Until the process `pid` has exited (bounded)."""
    await exited(pid, 10)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


async def test_writes_run_in_a_process_of_the_store_s_own_that_ends_with_it(
    tmp_path: Path,
) -> None:
    async with open_sqlite_store(tmp_path / "store.db") as store:
        pid = store.writer_pid
        ada = await store.create_user(user())
        assert pid != os.getpid()
        assert parent_of(pid) == os.getpid()
        assert os.getsid(pid) == pid  # a session of its own: Ctrl-C reaches the server only
    with pytest.raises(ProcessLookupError):  # exited, and waited for
        os.kill(pid, 0)
    async with open_sqlite_store(tmp_path / "store.db") as reopened:
        assert await reopened.get_user(ada.id) == ada


async def test_a_killed_writer_is_replaced_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "store.db") as store:
        c = await store.create_chat(chat())
        before = [await store.append_message(message(c, seq)) for seq in (1, 2, 3)]
        first = store.writer_pid
        os.kill(first, signal.SIGKILL)
        await gone(first)
        # Found dead before the next batch is sent: that batch goes to its successor.
        after = [await store.append_message(message(c, seq)) for seq in (4, 5)]
        assert store.writer_pid != first
        assert await store.list_messages(c.id) == [*before, *after]


async def test_a_batch_whose_writer_died_uncommitted_is_run_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        c = await store.create_chat(chat())
        first = await store.append_message(message(c, 1))
        # Another connection holds the write lock: the writer waits in its batch (busy timeout).
        held = sqlite3.connect(path, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        answers: list[Message] = []
        try:
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:

                    async def append() -> None:
                        answers.append(await store.append_message(message(c, 2)))

                    nursery.start_soon(append)
                    await trio.testing.wait_all_tasks_blocked()
                    dead = store.writer_pid
                    os.kill(dead, signal.SIGKILL)
                    await gone(dead)
                    held.execute("ROLLBACK")  # the next writer can commit
        finally:
            held.close()
        assert store.writer_pid != dead
        assert await store.list_messages(c.id) == [first, *answers]


async def test_a_batch_committed_by_a_writer_that_died_unanswered_is_answered_from_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer lost on the way (the writer killed once it committed, before the server read
    it): the next writer answers from the database; running the batch again would have stored
    it twice, or refused it as a duplicate."""
    receive = WriterProcess._receive
    lost: list[int] = []

    async def lose_one_answer(self: WriterProcess) -> object:
        if lost or not armed:
            return await receive(self)
        await trio.lowlevel.wait_readable(self._stream.socket)  # answered: so committed
        os.kill(self.pid, signal.SIGKILL)
        await gone(self.pid)
        lost.append(self.pid)
        return None  # as if it died before answering

    armed = False
    async with open_sqlite_store(tmp_path / "store.db") as store:
        c = await store.create_chat(chat())
        monkeypatch.setattr(WriterProcess, "_receive", lose_one_answer)
        armed = True
        stored = await store.append_message(message(c, 1))
        assert len(lost) == 1
        assert store.writer_pid != lost[0]
        assert await store.list_messages(c.id) == [stored]
        updated = await store.get_chat(c.id)
    assert updated is not None
    assert updated.last_seq == 1


def test_a_committed_batch_s_answer_is_kept_with_it_and_no_other(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    writer = Writer(connect(path), owner=1)
    c = chat()
    try:
        answer = writer.run(7, [("create_chat", (c,))])
        refused = writer.run(8, [("create_chat", (c,))])  # the same id again: rolled back
    finally:
        writer.close()
    assert pickle.loads(answer) == (True, [(True, c)])
    assert pickle.loads(refused)[0] is False
    # A command beside the server (`switchboard unlock`) commits through a store of its own.
    beside = Writer(connect(path), owner=2)
    try:
        beside.run(7, [("create_user", (user(),))])
    finally:
        beside.close()
    again = Writer(connect(path), owner=1)  # as the next writer of the first store
    try:
        assert again.outcome(7) == answer
        assert again.outcome(8) is None  # not committed: run it
    finally:
        again.close()


async def test_the_writer_dies_with_a_server_that_crashes_and_its_batch_with_it(
    tmp_path: Path,
) -> None:
    """Left alive, a writer would commit the batch it holds after the server that sent it is
    gone, behind the back of the server that starts next."""
    path = tmp_path / "store.db"
    program = (
        "import sys, trio, trio.testing\n"
        "from pathlib import Path\n"
        "from store import open_sqlite_store\n"
        "from tests.store.factories import user\n"
        "async def main():\n"
        "    async with open_sqlite_store(Path(sys.argv[1])) as store:\n"
        "        print(store.writer_pid, flush=True)\n"
        "        await trio.to_thread.run_sync(sys.stdin.readline)\n"
        "        async with trio.open_nursery() as nursery:\n"
        "            nursery.start_soon(store.create_user, user())\n"
        "            await trio.testing.wait_all_tasks_blocked()\n"
        "            print('sent', flush=True)\n"
        "trio.run(main)\n"
    )
    with trio.fail_after(30):
        server = await trio.lowlevel.open_process(
            [sys.executable, "-c", program, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        held = sqlite3.connect(path, isolation_level=None)
        try:
            assert server.stdin is not None
            assert server.stdout is not None
            writer = int(await line_from(server.stdout))
            assert parent_of(writer) == server.pid
            held.execute("BEGIN IMMEDIATE")  # the batch waits in the writer for this lock
            await server.stdin.send_all(b"go\n")
            assert await line_from(server.stdout) == "sent"
        finally:
            server.kill()
            await server.wait()
            held.execute("ROLLBACK")  # the lock is free: a writer still alive would commit
            held.close()
        await gone(writer)
    async with open_sqlite_store(path) as reopened:
        assert await reopened.count_users() == 0


async def line_from(stream: trio.abc.ReceiveStream) -> str:
    line = b""
    while not line.endswith(b"\n"):
        line += await stream.receive_some(1)
    return line.decode().strip()


class TwoPartError(Exception):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def test_an_error_that_cannot_cross_to_the_server_becomes_a_store_error() -> None:
    crossing = portable(TwoPartError("the record", "refused"))
    assert type(crossing) is StoreError
    assert str(crossing) == "TwoPartError: the record: refused"
    refusal = StoreUnavailable("the disk is full")
    assert portable(refusal) is refusal


def test_a_sqlite_write_must_be_one_operations_call() -> None:
    ada = user()
    assert _recorded(lambda db: db.create_user(ada)) == ("create_user", (ada,))
    with pytest.raises(TypeError, match="one call"):
        _recorded(lambda db: [db.create_user(ada)])


async def test_a_writer_that_cannot_be_started_fails_the_write_as_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of file descriptors (a flood of connections): the write fails as the store being
    # unavailable, which every caller handles, not as an OSError; the next one tries again.
    def no_descriptors() -> tuple[socket.socket, socket.socket]:
        raise OSError(errno.EMFILE, "Too many open files")

    async with open_sqlite_store(tmp_path / "store.db") as store:
        c = await store.create_chat(chat())
        first = store.writer_pid
        os.kill(first, signal.SIGKILL)
        await gone(first)
        with monkeypatch.context() as patched:
            patched.setattr(socket, "socketpair", no_descriptors)
            with pytest.raises(StoreUnavailable, match="cannot start the SQLite writer"):
                await store.append_message(message(c, 1))
        stored = await store.append_message(message(c, 1))
        assert await store.list_messages(c.id) == [stored]


async def test_a_writer_whose_socket_closed_is_ended_though_it_still_runs() -> None:
    # Its socket closes before it can be reaped: asked again at once, it looked alive, and the
    # retries of the batch it held all went to it instead of a new writer.
    ours, theirs = socket.socketpair()
    theirs.close()  # the writer's end, gone
    process = subprocess.Popen(  # noqa: ASYNC220 (as start_writer makes it)
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    writer = WriterProcess(process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
    assert writer.alive
    with pytest.raises(WriterGone):
        await writer.exchange(1, [("create_user", (user(),))])
    assert not writer.alive
    await writer.aclose()  # it was killed: nothing to wait for
    assert process.returncode == -signal.SIGKILL


class Key(str):
    """A class the writer process cannot import (it has the store's modules only)."""


async def test_calls_the_writer_cannot_unpickle_refuse_their_batch_only(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "store.db") as store:
        pid = store.writer_pid
        with pytest.raises(StoreError, match="could not read the batch") as refused:
            await store.delete_user(Key("someone"))
        assert not isinstance(refused.value, StoreUnavailable)  # nothing stored: a refusal
        ada = await store.create_user(user())
        assert store.writer_pid == pid  # the writer did not die of it
        assert await store.get_user(ada.id) == ada


async def test_a_writer_that_cannot_start_after_a_death_leaves_the_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_descriptors() -> tuple[socket.socket, socket.socket]:
        raise OSError(errno.EMFILE, "Too many open files")

    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        c = await store.create_chat(chat())
        held = sqlite3.connect(path, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        failures: list[StoreError] = []

        async def append() -> None:
            try:
                await store.append_message(message(c, 1))
            except StoreError as exc:
                failures.append(exc)

        try:
            with trio.fail_after(10), monkeypatch.context() as patched:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(append)
                    await trio.testing.wait_all_tasks_blocked()
                    patched.setattr(socket, "socketpair", no_descriptors)
                    os.kill(store.writer_pid, signal.SIGKILL)
        finally:
            held.execute("ROLLBACK")
            held.close()
        [failure] = failures
        assert isinstance(failure, StoreUnavailable)
        assert "may or may not be stored" in str(failure)


async def test_a_replacement_writer_does_not_create_a_deleted_database(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path) as store:
        await store.create_user(user())
        for leftover in tmp_path.glob("store.db*"):  # noqa: ASYNC240 (a test's few files)
            if leftover.name != "store.db.lock":
                leftover.unlink()
        first = store.writer_pid
        os.kill(first, signal.SIGKILL)
        await gone(first)
        with pytest.raises(StoreError, match="cannot open the SQLite database"):
            await store.create_user(user())
        assert not path.exists()  # not an empty database in its place


async def test_a_database_with_the_first_form_of_the_answers_table_is_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with open_sqlite_store(path):
        pass
    with sqlite3.connect(path, isolation_level=None) as old:  # as the first form made it
        old.execute("DROP TABLE writer_outcome")
        old.execute(
            "CREATE TABLE writer_outcome (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " batch INTEGER NOT NULL, answer BLOB NOT NULL)"
        )
        old.execute("INSERT INTO writer_outcome VALUES (1, 0, x'')")
        old.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    async with open_sqlite_store(path) as store:
        ada = await store.create_user(user())
        assert await store.get_user(ada.id) == ada
