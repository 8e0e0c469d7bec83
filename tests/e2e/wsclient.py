"""A small websocket test client over trio-websocket: JSON frames, waits bounded by WAIT_SECONDS.

Waiting is always for a frame or a close, never for time to pass.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
)

from api._ws import JsonEdge
from store import Role
from tests.conftest import Live
from tools._ws_client import bearer as bearer
from tools._ws_client import dial, message_send

WAIT_SECONDS = 10.0
Frame = dict[str, Any]


def ws_url(live: Live) -> str:
    return live.url.replace("http://", "ws://", 1) + "/ws"


@dataclass
class WsClient:
    conn: WebSocketConnection
    frames: list[Frame] = field(default_factory=list)  # everything received, in order
    _unclaimed: list[Frame] = field(default_factory=list)  # received, not yet expected

    async def send(self, frame: Frame) -> None:
        await self.conn.send_message(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.conn.send_message(data)

    async def _receive(self) -> Frame:
        message = await self.conn.get_message()
        frame: Frame = json.loads(message)
        self.frames.append(frame)
        self._unclaimed.append(frame)
        return frame

    async def expect(self, frame_type: str, **fields: Any) -> Frame:
        """The first frame not expected before with that type and those field values, already
        received or still to come; frames skipped over stay claimable."""

        def matches(frame: Frame) -> bool:
            return frame["type"] == frame_type and all(
                frame.get(name) == value for name, value in fields.items()
            )

        return await self._first(matches, WAIT_SECONDS)

    async def _first(self, matches: Callable[[Frame], bool], seconds: float) -> Frame:
        for frame in self._unclaimed:
            if matches(frame):
                self._unclaimed.remove(frame)
                return frame
        with trio.fail_after(seconds):
            while not matches(frame := await self._receive()):
                pass
        self._unclaimed.remove(frame)
        return frame

    async def sent(self, chat_id: str, client_msg_id: str, content: str) -> Frame:
        """Send a message; its `ack`, or the `error` that refers to it (the caller decides)."""
        await self.send(message_send(chat_id, client_msg_id, content))

        def answers(frame: Frame) -> bool:
            return (frame["type"], frame.get("clientMsgId")) == ("ack", client_msg_id) or (
                frame["type"],
                frame.get("ref"),
            ) == ("error", client_msg_id)

        # The server's own bound on an ask, and slack.
        return await self._first(answers, WAIT_SECONDS * 2)

    async def request(self, frame: Frame, answer: str, **fields: Any) -> Frame:
        await self.send(frame)
        return await self.expect(answer, **fields)

    async def closed(self) -> CloseReason:
        """Read until the server closes; the close reason (code and text)."""
        with trio.fail_after(WAIT_SECONDS):
            try:
                while True:
                    await self._receive()
            except ConnectionClosed as closed:
                reason: CloseReason | None = closed.reason
        assert reason is not None
        return reason

    async def ping(self) -> None:
        """Round trip: proves the connection is open and every earlier frame was handled."""
        await self.request({"type": "ping"}, "pong")

    def of_type(self, frame_type: str) -> list[Frame]:
        return [frame for frame in self.frames if frame["type"] == frame_type]


@asynccontextmanager
async def connect(
    live: Live,
    token: str | None,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    message_queue_size: int = 64,
) -> AsyncIterator[WsClient]:
    async with dial(
        ws_url(live),
        token,
        headers=headers or [],
        subprotocols=subprotocols,
        message_queue_size=message_queue_size,
        max_message_size=4 * 1024 * 1024,
        connect_seconds=WAIT_SECONDS,
        disconnect_seconds=WAIT_SECONDS,
    ) as conn:
        yield WsClient(conn)


async def ready_agent(live: Live, client: WsClient) -> None:
    """Make a connected agent available, so chats are assigned to them."""
    await client.request(
        {"type": "status.set", "status": "available"}, "agent.status", status="available"
    )


async def open_chat(customer: WsClient, title: str = "Where is my order?") -> Frame:
    opened = await customer.request({"type": "chat.open", "title": title}, "chat.opened")
    chat: Frame = opened["chat"]
    return chat


async def say(client: WsClient, chat_id: str, client_msg_id: str, content: str) -> Frame:
    """Send a message and wait for its ack."""
    return await client.request(
        message_send(chat_id, client_msg_id, content), "ack", clientMsgId=client_msg_id
    )


@asynccontextmanager
async def agent_and_customer(
    live: Live, agent_email: str, customer_id: str
) -> AsyncIterator[tuple[WsClient, WsClient, Frame]]:
    """An available agent and a customer connected, with a chat of theirs assigned to the agent:
    (agent, customer, chat)."""
    async with (
        connect(live, await live.login(agent_email)) as agent,
        connect(live, await live.customer_token(customer_id)) as customer,
    ):
        await ready_agent(live, agent)
        chat = await open_chat(customer)
        await agent.expect("chat.assigned")
        yield agent, customer, chat


def edge_of(role: Role) -> JsonEdge:
    """The server's one /ws connection of a peer with `role` (an in-process server's)."""
    (edge,) = [
        each for each in gc.get_objects() if type(each) is JsonEdge and each._peer.role is role
    ]
    return edge
