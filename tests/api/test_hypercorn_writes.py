"""How the HTTP server's connections write: bytes the socket takes at once go out without
waiting (no lock, no cancel scope, no trip through the scheduler); the rest waits in order."""

from __future__ import annotations

import trio
import trio.testing
from hypercorn.events import Closed, RawData

from tests.api.one_connection import one_connection


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
        big = bytes(range(256)) * 16_384  # 4 MiB: more than a socket buffer holds
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def read_all() -> None:
                received.append(await _read(peer, len(big) + 5))

            nursery.start_soon(read_all)
            await connection.protocol_send(RawData(data=big))
            await connection.protocol_send(RawData(data=b"after"))
        assert received == [big + b"after"]


async def test_a_write_to_a_closed_peer_closes_the_connection() -> None:
    ours, peer = trio.socket.socketpair()
    with ours:
        peer.close()
        connection, protocol = one_connection(trio.SocketStream(ours))
        await connection.protocol_send(RawData(data=b"x" * 100_000))
        await connection.protocol_send(RawData(data=b"x" * 100_000))
        assert isinstance(protocol.events[0], Closed)
