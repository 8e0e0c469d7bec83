"""What answering a /ws frame costs the server's event loop, and how a frame under way ends
when its connection does. A real server on 127.0.0.1 with real websocket clients."""

from __future__ import annotations

import sys
from typing import Any, cast

import pytest
import trio
import trio.testing

from actors import System
from store import Role
from tests.conftest import Live
from tests.e2e.wsclient import agent_and_customer, edge_of, say
from tools._ws_client import message_send

ANN = "ann@switchboard.example"


async def test_a_message_enters_one_cancel_scope_on_its_way_in(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trio cancel scope is about thirty calls (5 to 6 µs, README, Performance): the
    # frame's answer has one, the bound of its ask, which
    # is also what ends it with the connection. The frame itself and the store's write enter
    # none.
    entered: list[str] = []
    enter = trio.CancelScope.__enter__

    def counted(scope: trio.CancelScope) -> trio.CancelScope:
        caller = sys._getframe(1).f_code
        entered.append(f"{caller.co_filename.rsplit('/', 2)[-2]}:{caller.co_qualname}")
        return enter(scope)

    async with agent_and_customer(live, ANN, "shop-customer-1") as (agent, customer, chat):
        for n in range(1, 4):
            monkeypatch.setattr(trio.CancelScope, "__enter__", counted)
            try:
                await say(customer, chat["id"], f"c{n}", f"question {n}")
            finally:
                monkeypatch.undo()
            await agent.expect("message", seq=n)
            # The delivery receipts' task (on the way out, coalesced) has a scope of its own.
            ours = [
                name
                for name in entered
                if name.split(":")[0] in ("api", "store") and name != "api:JsonEdge._receipts"
            ]
            assert ours == ["api:Connection._send_run"], entered
            entered.clear()


class _Stuck:
    """The domain as a connection sees it, except that a send is never answered."""

    def __init__(self, system: Any) -> None:
        self._system = system
        self.asked = trio.Event()
        self.cancelled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._system, name)

    async def send_messages(self, *args: Any) -> Any:
        self.asked.set()
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled = True


async def test_a_frame_waiting_for_its_answer_ends_with_its_connection(live: Live) -> None:
    # The frame is answered in the server's reader task: were its ask left waiting, the reader
    # (and the connection's memory) would stay until the ask's 10 s bound.
    async with agent_and_customer(live, ANN, "shop-customer-1") as (_agent, customer, chat):
        edge = edge_of(Role.CUSTOMER)
        stuck = _Stuck(edge._core._system)
        edge._core._system = cast(System, stuck)
        await customer.send(message_send(chat["id"], "c1", "never answered"))
        with trio.fail_after(5):
            await stuck.asked.wait()
            edge._go_away()  # as when the server begins to stop
            closed = await customer.closed()
            await trio.testing.wait_all_tasks_blocked()
        assert closed.code == 1001
        assert stuck.cancelled
