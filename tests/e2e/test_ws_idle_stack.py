"""What an idle /ws connection keeps on its tasks' stacks: each coroutine frame lives as long as
the connection (a few hundred bytes each, times every idle connection), so the frames of the
handshake's dispatch and of the library layers a read goes through must not stay.

A real server on 127.0.0.1, in the test's own trio run, so its tasks can be looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio

from api._auth import Principal
from api._ws import JsonEdge
from store import User
from tests.conftest import Live
from tests.e2e.wsclient import connect


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


def _coroutines(coro: Any) -> Iterator[Any]:
    while coro is not None:
        yield coro
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def _stacks() -> list[list[str]]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return [_stack(task.coro) for nursery in root.child_nurseries for task in _tasks(nursery)]


def _serving() -> Any:
    """The coroutine of the one `AcceptedSocket.serve` running."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    (found,) = [
        coro
        for nursery in root.child_nurseries
        for task in _tasks(nursery)
        for coro in _coroutines(task.coro)
        if getattr(coro, "__qualname__", "") == "AcceptedSocket.serve"
    ]
    return found


def _one_with(name: str) -> list[str]:
    found = [stack for stack in _stacks() if name in stack]
    assert len(found) == 1, found
    return found[0]


async def test_an_idle_connection_keeps_no_frame_of_the_handshake_dispatch(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")
        app = _one_with("AcceptedSocket.serve")
    # Quart's entry and dispatch, the middleware and the ASGI adapter returned as the handshake
    # ended; the connection is served from the app task's own (outermost) frame.
    assert app[:2] == ["_CancellableApp.run", "AcceptedSocket.serve"], app
    for gone in ("Quart.asgi_app", "CloseAfterEarlyAnswer.__call__", "DirectWebsocket.__call__"):
        assert gone not in app, app


def _kept(serving: Any) -> list[Any]:
    """What the serving coroutines' frames hold, and the slots of the connection's own objects
    among them (the accepted socket, its edge, the edge's core)."""
    values: list[Any] = []
    for coro in _coroutines(serving):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            values.extend(frame.f_locals.values())
    accepted, edge = serving.cr_frame.f_locals["self"], serving.cr_frame.f_locals["edge"]
    for owner in (accepted, edge, edge._core):
        values.extend(getattr(owner, name, None) for name in type(owner).__slots__)
    return values


async def test_an_attached_connection_keeps_neither_its_token_nor_its_user_record(
    live: Live,
) -> None:
    token = await live.customer_token("shop-customer-1")
    async with connect(live, token) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")  # read after the edge attached and checked the token again
        kept = _kept(_serving())
    # The token served the handshake and the check as the connection attached; the session keeps
    # its id for sign-out. The principal's user record served the handshake's checks.
    assert not [value for value in kept if isinstance(value, str) and value == token]
    assert not [value for value in kept if isinstance(value, Principal | User)]


def _app_task() -> trio.lowlevel.Task:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    (found,) = [
        task
        for nursery in root.child_nurseries
        for task in _tasks(nursery)
        if getattr(task.coro, "__qualname__", "") == "_CancellableApp.run"
    ]
    return found


async def test_an_idle_connection_keeps_no_cancel_scope_of_its_handshake(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")
        task = _app_task()
        # Waiting for a frame inside the connection's nursery, whose scope the peer's end
        # cancels: the handshake's, which did until the edge took over, is gone.
        status = task._cancel_status
        parent = task.parent_nursery
        assert parent is not None
        assert status.parent is parent.cancel_scope._cancel_status


async def test_an_accepted_connection_keeps_no_request_headers(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.send({"type": "ping"})
        await client.expect("pong")
        scope = _serving().cr_frame.f_locals["transport"].scope
    # The headers (the bearer token among them) served the handshake and its log line only.
    assert scope["headers"] == []


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
