"""How websocket frames reach the socket, on /ws and on /socket.io/: what is queued for a
connection together leaves in one write (one system call, one wake-up of the peer), in order.

A real server on 127.0.0.1; the writes are recorded where hypercorn hands bytes to the socket.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from api._hypercorn import OneConnection
from store import Role
from tests.conftest import Live
from tests.e2e.wsclient import (
    agent_and_customer,
    connect,
    edge_of,
    open_chat,
    ready_agent,
    say,
)

ANN = "ann@switchboard.example"


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write to a socket of the server, in order: each goes first to `_send_now`, from
    `protocol_send` or, for a websocket's frames sent together, from the stream itself."""
    written: list[bytes] = []
    original = OneConnection._send_now

    def recording(self: OneConnection, data: bytes) -> bytes:
        written.append(bytes(data))
        return original(self, data)

    monkeypatch.setattr(OneConnection, "_send_now", recording)
    return written


async def test_a_message_and_its_ack_leave_in_one_write(live: Live, writes: list[bytes]) -> None:
    async with agent_and_customer(live, ANN, "shop-customer-1") as (agent, customer, chat):
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


async def test_a_socketio_message_event_and_its_ack_leave_in_one_write(
    live: Live, writes: list[bytes]
) -> None:
    token = await live.customer_token("shop-customer-1")
    async with (
        connect(live, await live.login(ANN)) as agent,
        connect(live, token) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
    url = live.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    answers: list[tuple[str, str]] = []  # (messageDelivered, ack) of each send, as read
    acks: list[list[bytes]] = []  # the writes that carried each send's ack
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # the Engine.IO handshake
            await ws.send_message("40" + json.dumps({"token": token}))
            assert str(await ws.get_message()).startswith('40{"sid":')
            await ws.send_message('421["joinChat",' + json.dumps({"chatId": chat["id"]}) + "]")
            assert str(await ws.get_message()).startswith("431[")
            for n in range(2, 5):
                writes.clear()
                send = {"chatId": chat["id"], "message": f"question {n}"}
                await ws.send_message(f'42{n}["sendMessage",{json.dumps(send)}]')
                answers.append((str(await ws.get_message()), str(await ws.get_message())))
                acks.append([write for write in writes if f"43{n}[".encode() in write])
    assert len(answers) == len(acks) == 3
    for n, (delivered, ack), carried in zip(range(2, 5), answers, acks, strict=True):
        assert delivered.startswith('42["messageDelivered"')
        assert f"question {n}" in delivered
        assert ack.startswith(f"43{n}[")
        assert f"question {n}" in ack
        assert len(carried) == 1, carried
        # The event first, then the ack, in the one write.
        assert carried[0].index(b'42["messageDelivered"') < carried[0].index(f"43{n}[".encode())


class _Spawned(trio.abc.Instrument):
    """The names of the tasks started while it is added."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def test_no_writer_task_is_started_for_a_message(live: Live, writes: list[bytes]) -> None:
    # The agent's connection is idle when the customer's message reaches it: the actor's step
    # writes the frame to the socket. The customer's own connection is answering its frame: its
    # copy waits for the answer and leaves with the ack, from the task that answered.
    async with agent_and_customer(live, ANN, "shop-customer-1") as (agent, customer, chat):
        for n in range(1, 4):
            spawned = _Spawned()
            trio.lowlevel.add_instrument(spawned)
            try:
                writes.clear()
                await say(customer, chat["id"], f"c{n}", f"question {n}")
                await agent.expect("message", seq=n)
            finally:
                trio.lowlevel.remove_instrument(spawned)
            writers = [name for name in spawned.names if name.endswith("JsonEdge._write")]
            assert writers == [], spawned.names
            carried = [w for w in writes if f"question {n}".encode() in w]
            assert len(carried) == 2, writes  # the agent's copy; the customer's, with the ack
            assert sum(b'"type":"ack"' in w for w in carried) == 1, carried


class _TasksOver:
    """A connection's transport whose tasks are over: starting one raises, as trio's does."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def spawn(self, run: Any) -> None:
        raise RuntimeError("Nursery is closed to new arrivals")


async def test_an_event_written_from_the_actor_s_step_never_fails_the_actor(live: Live) -> None:
    # The write from the actor's step may start the delivery receipts' task; a connection whose
    # tasks are over refuses it, and the actor that delivered the message must not fail for it.
    async with agent_and_customer(live, ANN, "shop-customer-1") as (agent, customer, chat):
        await trio.testing.wait_all_tasks_blocked()
        edge = edge_of(Role.AGENT)
        edge._transport = _TasksOver(edge._transport)
        for n in range(1, 4):
            ack = await say(customer, chat["id"], f"c{n}", f"question {n}")
            assert ack["seq"] == n
            assert (await agent.expect("message", seq=n))["message"]["content"] == f"question {n}"
