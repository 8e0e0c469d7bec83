"""What an idle /ws connection keeps: each coroutine frame of a task lives as long as the
connection (a few hundred bytes each, times every idle connection), so once attached it keeps no
task of its own (the server's reader hands its edge the frames), and what it holds stays small.

A real server on 127.0.0.1, in the test's own trio run, so its tasks can be looked at.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from api._auth import Principal
from api._ws import JsonEdge
from store import User
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import WsClient, connect


def _tasks(nursery: trio.Nursery) -> Iterator[trio.lowlevel.Task]:
    for task in nursery.child_tasks:
        yield task
        for child in task.child_nurseries:
            yield from _tasks(child)


def _stack(coro: Any) -> list[str]:
    """The qualified names of the coroutines and generators a task is suspended in, outermost
    first."""
    names: list[str] = []
    while coro is not None:
        names.append(getattr(coro, "__qualname__", type(coro).__name__))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return names


def _stacks() -> list[list[str]]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return [_stack(task.coro) for nursery in root.child_nurseries for task in _tasks(nursery)]


def _edges() -> list[JsonEdge]:
    return [each for each in gc.get_objects() if type(each) is JsonEdge]


def _the_edge() -> JsonEdge:
    (found,) = _edges()
    return found


# What served a connection before it was handed to the server's reader, and its writer.
_SERVING = ("_CancellableApp.run", "AcceptedSocket.serve", "JsonEdge.run", "JsonEdge._write")


async def test_an_idle_connection_keeps_no_task_of_its_own(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")
        stacks = _stacks()
        edge = _the_edge()
    # The app's task ended as the server's reader task took the frames, and the writer that
    # wrote the pong ended once it had. Quart's websocket dispatch had returned before.
    serving = [stack for stack in stacks if set(_SERVING) & set(stack)]
    assert serving == [], serving
    for gone in ("DirectWebsocket.__call__", "ASGIWebsocketConnection.handle_websocket"):
        assert not [stack for stack in stacks if gone in stack], stacks
    # Nor a cancel scope: each task that runs for it enters one while it runs.
    assert edge._work is None


async def test_a_connection_that_never_sends_a_frame_keeps_no_task_either(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shop page opens its websocket and waits: nothing comes from the client. The ASGI
    # connect event once stayed queued and counted as a frame waiting, so the app's task waited
    # behind it for the client's first frame.
    handed = trio.Event()
    run = JsonEdge.run

    async def observed(self: JsonEdge, transport: Any) -> None:
        await run(self, transport)
        handed.set()

    monkeypatch.setattr(JsonEdge, "run", observed)
    async with connect(live, await live.customer_token("shop-customer-1")):
        with trio.fail_after(10):  # a bound on the failure, not a wait for success
            await handed.wait()
        stacks = _stacks()
        edge = _the_edge()
        assert edge._handed
    serving = [stack for stack in stacks if set(_SERVING) & set(stack)]
    assert serving == [], serving


async def test_a_peer_cut_as_the_connection_attaches_still_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server cuts the client (a frame over the limit: 1009) after the connection's last
    # checkpoint before it takes the frames: the cut comes as the hand-over begins, and the
    # connection must still end (detach, log, free its slot) exactly once.
    client: list[WsClient] = []
    connected = trio.Event()
    ended: list[JsonEdge] = []
    let_go_called = trio.Event()
    attach, let_go = JsonEdge._attach, JsonEdge._let_go

    async def attach_while_cut(self: JsonEdge) -> None:
        await attach(self)
        with trio.CancelScope(shield=True):  # no checkpoint of the connection's own after this
            await connected.wait()
            await client[0].send_raw("x" * 2000)
            assert (await client[0].closed()).code == 1009
            await trio.testing.wait_all_tasks_blocked()  # the server's reader has cut it

    def counted(self: JsonEdge) -> None:
        ended.append(self)
        let_go(self)
        let_go_called.set()

    monkeypatch.setattr(JsonEdge, "_attach", attach_while_cut)
    monkeypatch.setattr(JsonEdge, "_let_go", counted)
    settings = make_settings(tmp_path, ws_max_frame_bytes=1024)
    async with running_server(settings) as live:
        async with connect(live, await live.customer_token("shop-customer-1")) as opened:
            client.append(opened)
            connected.set()
            with trio.fail_after(10):  # a bound on the failure, not a wait for success
                await let_go_called.wait()
        assert len(ended) == 1
        assert ended[0]._ended


async def test_an_answer_is_written_by_the_reader_without_a_writer_task(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst of frames on many connections at once (every client pinging) then holds neither a
    # writer task nor a suspended stack for each while the others are handled.
    writers: list[JsonEdge] = []
    write = JsonEdge._write

    async def counted(self: JsonEdge) -> None:
        writers.append(self)
        await write(self)

    monkeypatch.setattr(JsonEdge, "_write", counted)
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        for _ in range(3):
            await client.send({"type": "ping"})
            await client.expect("pong")
        await client.send({"type": "typing", "chatId": "nope", "on": True})
        error = await client.expect("error")
    assert error["code"] == "chat_not_found"
    assert writers == []


def _kept(edge: JsonEdge) -> list[Any]:
    """The slots of the connection's own objects (its edge, the edge's core)."""
    return [
        getattr(owner, name, None) for owner in (edge, edge._core) for name in type(owner).__slots__
    ]


async def test_an_attached_connection_keeps_neither_its_token_nor_its_user_record(
    live: Live,
) -> None:
    token = await live.customer_token("shop-customer-1")
    async with connect(live, token) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")  # read after the edge attached and checked the token again
        kept = _kept(_the_edge())
    # The token served the handshake and the check as the connection attached; the session keeps
    # its id for sign-out. The principal's user record served the handshake's checks.
    assert not [value for value in kept if isinstance(value, str) and value == token]
    assert not [value for value in kept if isinstance(value, Principal | User)]


async def test_an_accepted_connection_keeps_no_request_headers(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")
        transport = _the_edge()._transport
        assert transport is not None
    # The headers (the bearer token among them) served the handshake and its log line only.
    assert transport.scope["headers"] == []


async def test_a_failure_while_serving_is_logged_and_closes_with_1011(
    live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The app task's outermost frame does what hypercorn's own did around the app.
    async def failing(self: JsonEdge, transport: object) -> None:
        raise RuntimeError("broken edge")

    monkeypatch.setattr(JsonEdge, "run", failing)
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        closed = await client.closed()
    assert closed.code == 1011
    assert any(
        "Error in ASGI Framework" in record.getMessage()
        and record.exc_info is not None
        and "broken edge" in str(record.exc_info[1])
        for record in caplog.records
    ), caplog.records
