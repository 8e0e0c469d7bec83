"""What answering a /ws frame costs the server's event loop, and how a frame under way ends
when its connection does. A real server on 127.0.0.1 with real websocket clients."""

from __future__ import annotations

from typing import cast

import trio
import trio.testing

from actors import System
from store import Role
from tests.cancelling import Stuck, scopes_entered
from tests.conftest import Live
from tests.e2e.wsclient import agent_and_customer, edge_of, say
from tools._ws_client import message_send

ANN = "ann@switchboard.example"


async def test_a_message_enters_one_cancel_scope_on_its_way_in(live: Live) -> None:
    # A trio cancel scope is about thirty calls (5 to 6 µs, README, Performance): the
    # frame's answer has one, the bound of its ask, which is also what ends it with the
    # connection. The frame itself and the store's write enter none.
    async with agent_and_customer(live, ANN, "shop-customer-1") as (agent, customer, chat):
        for n in range(1, 4):
            with scopes_entered() as entered:
                await say(customer, chat["id"], f"c{n}", f"question {n}")
            await agent.expect("message", seq=n)
            # The delivery receipts' task (on the way out, coalesced) has a scope of its own.
            ours = [
                name
                for name in entered
                if name.split(":")[0] in ("api", "store") and name != "api:JsonEdge._receipts"
            ]
            assert ours == ["api:Connection._send_run"], entered


async def test_a_frame_waiting_for_its_answer_ends_with_its_connection(live: Live) -> None:
    # The frame is answered in the server's reader task: were its ask left waiting, the reader
    # (and the connection's memory) would stay until the ask's 10 s bound.
    async with agent_and_customer(live, ANN, "shop-customer-1") as (_agent, customer, chat):
        edge = edge_of(Role.CUSTOMER)
        stuck = Stuck(edge._core._system, "send_messages")
        edge._core._system = cast(System, stuck)
        await customer.send(message_send(chat["id"], "c1", "never answered"))
        with trio.fail_after(5):
            await stuck.asked.wait()
            edge._go_away()  # as when the server begins to stop
            closed = await customer.closed()
            await trio.testing.wait_all_tasks_blocked()
        assert closed.code == 1001
        assert stuck.cancelled
