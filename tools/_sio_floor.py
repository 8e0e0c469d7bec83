"""The transport floor of `python -m tools.bench_socketio`: hypercorn serving the least of
Engine.IO v4 / Socket.IO v5 that the stock socket.io-client needs over its websocket transport,
and no application at all.

A raw ASGI app (no Quart), served by hypercorn's trio worker exactly as `api.serve` serves the
real app (`api.serve_asgi`: the same hypercorn adjustments, frame cap and keep-alive pings, no
access log, start-up frozen out of the collector's sight).
Per message it moves the frames the real server moves, 1 in and 3 out, and does nothing else:

- a websocket to `/socket.io/?EIO=4&transport=websocket&role=agent|customer&n=<index>` (the
  client's `query` option) gets the Engine.IO open packet; `40` (with or without auth) gets
  `40{"sid":..}`; `2` gets `3`; anything else is ignored;
- `42<ack>["sendMessage",{"chatId":..,"message":..}]` from customer n makes one payload,
  `{"message":{"content":..,"senderRole":"customer","chatId":..}}`, queued as `messageReceived`
  in the outbox of agent n % agents (a bounded channel with its own writer task, like the real
  server's outbox), then written back to the customer by its reader task as the ack
  (`43<ack>[payload]`) and `messageDelivered`.

The payload has only the fields the client reads: the real server's message also carries its
ids, seq, status and time, so its frames are somewhat longer. The agent's frame is queued
before the customer's ack is written, so a customer holding its ack knows the agent's frame is
in that agent's outbox. The server also pings every pingInterval, as the real one does: the
client closes a socket that has not been pinged within pingInterval + pingTimeout, which a long
floor phase would outlast.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs

import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    Scope,
    WebsocketScope,
)

from api import Settings, serve_asgi

READY = "floor server ready "
PING_INTERVAL_MS = 25_000
PING_TIMEOUT_MS = 20_000
# The real server's outbox, in frames (api.Settings.ws_outbox_frames).
OUTBOX_FRAMES: int = Settings.model_fields["ws_outbox_frames"].default
# An EVENT with an optional ack id, in the default namespace.
EVENT = re.compile(r"42(\d*)(\[.*)", re.DOTALL)

Say = Callable[[str], Awaitable[None]]


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _sid() -> str:
    return secrets.token_urlsafe(15)


def open_packet() -> str:
    """The Engine.IO open packet: a websocket from the start, so no upgrades."""
    return "0" + _compact(
        {
            "sid": _sid(),
            "upgrades": [],
            "pingInterval": PING_INTERVAL_MS,
            "pingTimeout": PING_TIMEOUT_MS,
            "maxPayload": 1_000_000,
        }
    )


def payload(chat_id: object, message: object) -> str:
    """What the floor sends for a customer's message: the ack's argument and both events'."""
    return _compact({"message": {"content": message, "senderRole": "customer", "chatId": chat_id}})


class FloorApp:
    """The ASGI app: customer n's messages go to agent n % `agents`."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self._outboxes: dict[int, trio.MemorySendChannel[str]] = {}

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _websocket(
        self, scope: WebsocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        query = parse_qs(scope["query_string"].decode("latin-1"))
        first = {name: values[0] for name, values in query.items()}
        role, n = first.get("role"), first.get("n", "")
        if (await receive())["type"] != "websocket.connect":
            return
        if (
            scope["path"] != "/socket.io/"
            or first.get("EIO") != "4"
            or first.get("transport") != "websocket"
            or role not in ("agent", "customer")
            or not n.isdecimal()
        ):
            await send({"type": "websocket.close", "code": 1008, "reason": None})  # a 403
            return
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})

        async def say(text: str) -> None:
            await send({"type": "websocket.send", "bytes": None, "text": text})

        await say(open_packet())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_heartbeat, say)
            if role == "agent":
                outbox, outgoing = trio.open_memory_channel[str](OUTBOX_FRAMES)
                self._outboxes[int(n)] = outbox
                nursery.start_soon(_write, outgoing, say)
                try:
                    await self._read(receive, say, None)
                finally:
                    if self._outboxes.get(int(n)) is outbox:
                        del self._outboxes[int(n)]
                    outbox.close()
            else:
                await self._read(receive, say, int(n) % self.agents)
            nursery.cancel_scope.cancel()

    async def _read(self, receive: ASGIReceiveCallable, say: Say, agent: int | None) -> None:
        """Answer the socket's packets until it disconnects; `agent` is a customer's agent."""
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event["type"] != "websocket.receive" or event["text"] is None:
                continue
            text = event["text"]
            if text.startswith("42"):
                if agent is not None:
                    await self._relay(text, say, agent)
            elif text == "2":
                await say("3")
            elif text == "40" or text.startswith("40{"):
                await say("40" + _compact({"sid": _sid()}))

    async def _relay(self, text: str, say: Say, agent: int) -> None:
        found = EVENT.fullmatch(text)
        if found is None:
            return
        ack, arguments = found.groups()
        try:
            decoded = json.loads(arguments)
        except ValueError:
            return
        match decoded:
            case ["sendMessage", {"chatId": chat_id, "message": message}, *_]:
                sent = payload(chat_id, message)
            case _:
                return
        outbox = self._outboxes.get(agent)
        if outbox is not None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # agent gone
                await outbox.send(f'42["messageReceived",{sent}]')
        if ack:
            await say(f"43{ack}[{sent}]")
        await say(f'42["messageDelivered",{sent}]')


async def _write(outgoing: trio.MemoryReceiveChannel[str], say: Say) -> None:
    with outgoing:
        async for text in outgoing:
            await say(text)


async def _heartbeat(say: Say) -> None:
    while True:
        await trio.sleep(PING_INTERVAL_MS / 1000)
        await say("2")


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve(
    agents: int, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the floor on a free port of 127.0.0.1 as `api.serve` serves the real app; reports
    the bound URLs once listening."""
    await serve_asgi(FloorApp(agents), Settings(host="127.0.0.1", port=0), task_status=task_status)


async def serve_floor(folder: Path, agents: int) -> None:
    """The benchmark's floor subprocess: serve, then write the URL and pid to a file and print
    its path after `READY` (as the real bench server does)."""
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, agents))
        described = trio.Path(folder / "floor.json")
        await described.write_text(json.dumps({"url": binds[0], "pid": os.getpid()}))
        print(f"{READY}{described}", flush=True)
