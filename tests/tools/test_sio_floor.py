"""The transport floor of `switchboard bench socketio` (tools/_sio_floor.py) on a real port:
hypercorn in this process, trio-websocket clients speaking the frames socket.io-client sends.

Rules: every wait is bounded (`trio.fail_after`) and waits for a frame, never for time to pass;
frames are compared exactly, as the Node client parses them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from tools._sio_floor import payload, serve

WAIT_SECONDS = 10.0


@asynccontextmanager
async def floor(agents: int) -> AsyncIterator[str]:
    """A floor server for `agents` agents until the block ends: its base websocket URL."""
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, agents))
        yield binds[0].replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
        nursery.cancel_scope.cancel()


async def receive(conn: WebSocketConnection) -> str:
    with trio.fail_after(WAIT_SECONDS):
        message = await conn.get_message()
    assert isinstance(message, str), message  # Engine.IO's text frames
    return message


class Connected:
    """A socket past its handshake: frames in and out, each wait bounded."""

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn

    async def send(self, text: str) -> None:
        await self.conn.send_message(text)

    async def receive(self) -> str:
        return await receive(self.conn)


@asynccontextmanager
async def socket(url: str, role: str, n: int, connect: str = "40") -> AsyncIterator[Connected]:
    """A Socket.IO socket of `role` number `n`, past the open packet and the CONNECT."""
    async with open_websocket_url(f"{url}&role={role}&n={n}") as conn:
        opened = await receive(conn)
        assert opened.startswith("0")
        handshake = json.loads(opened[1:])
        assert set(handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
        assert (handshake["upgrades"], handshake["pingInterval"]) == ([], 25000)
        await conn.send_message(connect)
        connected = await receive(conn)
        assert connected.startswith("40")
        assert set(json.loads(connected[2:])) == {"sid"}
        yield Connected(conn)


def send_message(ack: int, chat_id: str, message: str) -> str:
    event = ["sendMessage", {"chatId": chat_id, "message": message}]
    return f"42{ack}{json.dumps(event)}"


async def test_a_customer_message_is_acked_delivered_and_received_by_its_agent() -> None:
    async with (
        floor(agents=2) as url,
        socket(url, "agent", 0) as agent0,
        socket(url, "agent", 1) as agent1,
        socket(url, "customer", 3, connect='40{"token":"ignored"}') as customer3,
        socket(url, "customer", 2) as customer2,
    ):
        await customer3.send(send_message(7, "chat-3", "hello"))
        sent = '{"message":{"content":"hello","senderRole":"customer","chatId":"chat-3"}}'
        assert payload("chat-3", "hello") == sent
        assert await customer3.receive() == f"437[{sent}]"
        assert await customer3.receive() == f'42["messageDelivered",{sent}]'
        assert await agent1.receive() == f'42["messageReceived",{sent}]'

        # Customer 3's message was queued before its ack: had it gone to agent 0, it would come
        # before customer 2's.
        await customer2.send(send_message(8, "chat-2", "hi there"))
        other = payload("chat-2", "hi there")
        assert await customer2.receive() == f"438[{other}]"
        assert await customer2.receive() == f'42["messageDelivered",{other}]'
        assert await agent0.receive() == f'42["messageReceived",{other}]'


async def test_pings_are_answered_and_other_packets_ignored() -> None:
    async with floor(agents=1) as url, socket(url, "customer", 0) as customer:
        await customer.send('42["typing",{"chatId":"c"}]')  # not sendMessage: ignored
        await customer.send("42not json")
        await customer.send("3")
        await customer.send("2")
        assert await customer.receive() == "3"


async def test_a_socket_without_a_role_is_refused() -> None:
    async with floor(agents=1) as url:
        with trio.fail_after(WAIT_SECONDS), pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(url):
                pass
        assert refused.value.status_code == 403
