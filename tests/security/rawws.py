"""A websocket client on a raw TCP stream (wsproto), for what client libraries hide: flooding
without reading, vanishing with a reset or in silence, and the frames a server sends last."""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

WAIT_SECONDS = 10.0


@dataclass
class RawWebsocket:
    stream: trio.SocketStream
    ws: WSConnection
    events: list[Event] = field(default_factory=list)

    async def send_text(self, *frames: str) -> None:
        """All the frames in one write, without reading anything."""
        await self.stream.send_all(b"".join(self.ws.send(TextMessage(data=f)) for f in frames))

    async def next_event(self) -> Event:
        with trio.fail_after(WAIT_SECONDS):
            while not self.events:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("the server closed the TCP connection")
                self.ws.receive_data(data)
                self.events.extend(self.ws.events())
        return self.events.pop(0)

    async def until_close(self) -> CloseConnection:
        """Read (answering pings) until the server's close frame. A ping read in the same
        chunk as the close is not answered: the connection is closing, wsproto sends no pong."""
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                return event
            if isinstance(event, Ping) and self.ws.state is ConnectionState.OPEN:
                await self.stream.send_all(self.ws.send(event.response()))

    async def reset(self) -> None:
        """Vanish with a TCP reset (SO_LINGER 0), whatever is unread."""
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


async def open_raw(
    host: str, port: int, target: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> RawWebsocket:
    """A websocket past its handshake (the handshake must be accepted)."""
    stream = await trio.open_tcp_stream(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(
        ws.send(Request(host=f"{host}:{port}", target=target, extra_headers=list(headers)))
    )
    client = RawWebsocket(stream, ws)
    with trio.fail_after(WAIT_SECONDS):
        while True:
            event = await client.next_event()
            if isinstance(event, AcceptConnection):
                return client
            assert not isinstance(event, RejectConnection), event
