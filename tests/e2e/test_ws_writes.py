"""How /ws frames reach the socket: what is queued for a connection together leaves in one write
(one system call, one wake-up of the peer), in order.

A real server on 127.0.0.1; the writes are recorded where hypercorn hands bytes to the socket.
"""

from __future__ import annotations

import pytest
from hypercorn.events import Event, RawData

from api._hypercorn import OneConnection
from tests.conftest import Live
from tests.e2e.wsclient import connect, open_chat, ready_agent, say

ANN = "ann@switchboard.example"


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write to a socket of the server, in order."""
    written: list[bytes] = []
    original = OneConnection.protocol_send

    async def recording(self: OneConnection, event: Event) -> None:
        if isinstance(event, RawData):
            written.append(bytes(event.data))
        await original(self, event)

    monkeypatch.setattr(OneConnection, "protocol_send", recording)
    return written


async def test_a_message_and_its_ack_leave_in_one_write(live: Live, writes: list[bytes]) -> None:
    async with (
        connect(live, await live.login(ANN)) as agent,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        for n in range(1, 4):
            writes.clear()
            ack = await say(customer, chat["id"], f"c{n}", f"question {n}")
            echoed = await customer.expect("message", seq=n)
            await agent.expect("message", seq=n)
            with_ack = [write for write in writes if b'"type":"ack"' in write]
            assert ack["seq"] == echoed["seq"] == n
            assert len(with_ack) == 1, writes
            # The customer's own message (fanned out first) and its ack, in that order.
            assert with_ack[0].index(b'"type":"message"') < with_ack[0].index(b'"type":"ack"')
