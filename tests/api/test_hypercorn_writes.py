"""How the HTTP server's connections write: bytes the socket takes at once go out without
waiting (no lock, no cancel scope, no trip through the scheduler); the rest waits in order."""

from __future__ import annotations

import trio
import trio.testing
from hypercorn.events import Closed, RawData
from hypercorn.trio.task_group import TaskGroup

from tests.api.one_connection import one_connection

BIG = bytes(range(256)) * 16_384  # 4 MiB: more than a socket buffer holds


async def _read(peer: trio.socket.SocketType, size: int) -> bytes:
    got = b""
    while len(got) < size:
        got += await peer.recv(size - len(got))
    return got


async def test_a_write_the_socket_takes_goes_out_without_a_checkpoint() -> None:
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        connection, protocol = one_connection(trio.SocketStream(ours))
        with trio.testing.assert_no_checkpoints():
            await connection.protocol_send(RawData(data=b"frame one"))
            await connection.protocol_send(RawData(data=b"frame two"))
        assert await _read(peer, 18) == b"frame oneframe two"
        assert protocol.events == []


async def test_what_the_socket_cannot_take_now_waits_and_keeps_its_order() -> None:
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        connection, _ = one_connection(trio.SocketStream(ours))
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def read_all() -> None:
                received.append(await _read(peer, len(BIG) + 5))

            nursery.start_soon(read_all)
            await connection.protocol_send(RawData(data=BIG))
            await connection.protocol_send(RawData(data=b"after"))
        assert received == [BIG + b"after"]


async def test_a_write_to_a_closed_peer_closes_the_connection() -> None:
    ours, peer = trio.socket.socketpair()
    with ours:
        peer.close()
        connection, protocol = one_connection(trio.SocketStream(ours))
        await connection.protocol_send(RawData(data=b"x" * 100_000))
        await connection.protocol_send(RawData(data=b"x" * 100_000))
        assert isinstance(protocol.events[0], Closed)


async def test_a_write_now_owes_what_the_socket_cannot_take_and_it_leaves_first() -> None:
    # `write_now` is for a caller that must not wait (the domain's side of a websocket): the
    # socket takes what it can, the rest is owed, written by a task of the connection's, and
    # everything sent after it (a ping's pong, a close) goes out behind it.
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        connection, _ = one_connection(trio.SocketStream(ours))
        received: list[bytes] = []
        async with TaskGroup() as tasks:
            connection._task_group = tasks
            assert connection.can_write_now()
            with trio.testing.assert_no_checkpoints():
                connection.write_now(BIG)
            # Owed: nothing else may write straight to the socket now.
            assert not connection.can_write_now()
            tasks.spawn(connection.protocol_send, RawData(data=b"after"))
            received.append(await _read(peer, len(BIG) + 5))
        assert received == [BIG + b"after"]
        assert connection.can_write_now()  # all written: nothing owed


async def test_a_write_now_to_a_closed_peer_closes_the_connection() -> None:
    ours, peer = trio.socket.socketpair()
    with ours:
        peer.close()
        connection, protocol = one_connection(trio.SocketStream(ours))
        async with TaskGroup() as tasks:
            connection._task_group = tasks
            connection.write_now(b"x" * 4_000_000)
        assert isinstance(protocol.events[0], Closed)
