"""How the HTTP server's connections read: straight from the socket, in as few coroutines as a
wait for it takes (each stays suspended for an idle connection's whole life), and ending with
`Closed` however the connection ends: the peer's FIN, its reset, or an abort from another task."""

from __future__ import annotations

import gc
import socket
import struct
from typing import Any

import trio
import trio.testing
from hypercorn.events import Closed, RawData

from api._hypercorn import _CancellableApp
from tests.api.one_connection import one_connection


def _stack(coro: Any) -> list[str]:
    names: list[str] = []
    while coro is not None:
        names.append(getattr(coro, "__qualname__", type(coro).__name__))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return names


async def test_what_the_peer_sends_arrives_then_its_end() -> None:
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        connection, protocol = one_connection(trio.SocketStream(ours))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._read_data)
            await peer.send(b"GET / HTTP/1.1\r\n")
            await trio.testing.wait_all_tasks_blocked()
            await peer.send(b"\r\n")
            await trio.testing.wait_all_tasks_blocked()
            peer.shutdown(socket.SHUT_WR)
        received = b"".join(event.data for event in protocol.events[:-2])
        assert received == b"GET / HTTP/1.1\r\n\r\n"
        assert protocol.events[-2:] == [RawData(data=b""), Closed()]


async def test_a_reset_ends_the_connection() -> None:
    ours, peer = _tcp_pair()
    with ours, peer:
        connection, protocol = one_connection(trio.SocketStream(ours))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._read_data)
            await trio.testing.wait_all_tasks_blocked()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()
        assert protocol.events[-1] == Closed()


async def test_an_abort_from_another_task_ends_the_read() -> None:
    ours, peer = trio.socket.socketpair()
    with peer:
        connection, protocol = one_connection(trio.SocketStream(ours))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._read_data)
            await trio.testing.wait_all_tasks_blocked()
            await connection.abort()
        assert protocol.events == [Closed()]


async def test_an_idle_read_waits_on_the_socket_itself() -> None:
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        connection, _ = one_connection(trio.SocketStream(ours))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._read_data)
            await trio.testing.wait_all_tasks_blocked()
            (task,) = nursery.child_tasks
            stack = _stack(task.coro)
            # The read that found nothing is not kept either (an exception with its traceback).
            # type() rather than isinstance(): a dead weakref.proxy among the objects raises
            # ReferenceError when isinstance() asks it for its class.
            kept = [each for each in gc.get_objects() if type(each) is BlockingIOError]
            nursery.cancel_scope.cancel()
        assert stack[0] == "OneConnection._read_data", stack
        assert stack[1] == "wait_readable", stack
        assert kept == []


def _tcp_pair() -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """A connected pair over loopback TCP (a reset is TCP's)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return trio.socket.from_stdlib_socket(server), trio.socket.from_stdlib_socket(client)


async def test_a_scope_handed_over_after_the_peer_left_is_cancelled_at_once() -> None:
    app = _CancellableApp(None, None)  # type: ignore[arg-type]
    app.cancel()  # the peer left while the handshake ended
    served = trio.CancelScope()
    app.hand_over(served)
    assert served.cancel_called
    later = trio.CancelScope()
    _CancellableApp(None, None).hand_over(later)  # type: ignore[arg-type]
    assert not later.cancel_called


async def test_the_peer_leaving_cancels_the_scope_handed_over() -> None:
    app = _CancellableApp(None, None)  # type: ignore[arg-type]
    handshake, served = app.scope, trio.CancelScope()
    app.hand_over(served)
    app.cancel()
    assert served.cancel_called
    assert not handshake.cancel_called


class _Handler:
    """Stands in for what takes a websocket's frames once its app's task has ended."""

    def __init__(self) -> None:
        self.told_gone = 0

    async def frame(self, data: str | bytes | None, more: bool) -> None:
        raise AssertionError("no frame here")

    def gone(self) -> None:
        self.told_gone += 1


async def test_the_peer_leaving_tells_the_handler_that_took_the_frames() -> None:
    app = _CancellableApp(None, None)  # type: ignore[arg-type]
    served, handler = trio.CancelScope(), _Handler()
    app.hand_over(served)  # what attached the connection, until the handler takes the frames
    app.take_frames(handler)
    assert handler.told_gone == 0
    app.cancel()
    assert handler.told_gone == 1
    assert not served.cancel_called


async def test_frames_taken_after_the_peer_left_tell_the_handler_at_once() -> None:
    app = _CancellableApp(None, None)  # type: ignore[arg-type]
    app.cancel()
    handler = _Handler()
    app.take_frames(handler)
    assert handler.told_gone == 1


async def test_frames_given_back_leave_the_peer_s_end_to_cancel_the_app_again() -> None:
    # An app whose task stayed while a handler took the frames, returning now: the peer's end
    # cancels it as before, and the handler hears of it no more.
    app = _CancellableApp(None, None)  # type: ignore[arg-type]
    handler = _Handler()
    app.take_frames(handler)
    app.give_back_frames()
    app.cancel()
    assert handler.told_gone == 0
    assert app.scope.cancel_called


class _Websocket:
    """Stands in for the connection's websocket stream."""

    def __init__(self) -> None:
        self.cut_count = 0

    def cut(self) -> None:
        self.cut_count += 1


async def test_a_cancelled_read_tells_the_connection_s_websocket() -> None:
    # The server's last moment: the handler of a websocket without a task of its own hears of
    # the end from the reader's.
    ours, peer = trio.socket.socketpair()
    with ours, peer:
        connection, _ = one_connection(trio.SocketStream(ours))
        websocket = _Websocket()
        connection.websocket = websocket  # type: ignore[assignment]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection._read_data)
            await trio.testing.wait_all_tasks_blocked()
            assert websocket.cut_count == 0
            nursery.cancel_scope.cancel()
        assert websocket.cut_count == 1
