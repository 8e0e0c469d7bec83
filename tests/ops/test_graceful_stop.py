"""SIGTERM stops a real `switchboard serve` gracefully: it stops accepting, answers what is in
flight, closes every websocket with 1001 (a Socket.IO session with its close packet) and exits.

Results are recorded inside the client blocks and checked after them (an exception inside nested
trio-websocket blocks can be lost on the way out).
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.server_process import START_SECONDS, server_process

WAIT_SECONDS = 10.0
POLLING = {"EIO": "4", "transport": "polling"}


@dataclass
class Seen:
    pong: str = ""
    open: str = ""
    connect: str = ""
    poll: tuple[int, list[str]] = (0, [])
    sio: list[str] = field(default_factory=list)
    ws: tuple[int, str | None] = (0, None)
    exit: int | None = None
    said: str = ""
    refused: bool = False


async def test_sigterm_closes_every_websocket_with_going_away_and_exits(tmp_path: Path) -> None:
    seen = Seen()
    async with server_process(tmp_path) as server:
        base = server.url.replace("http://", "ws://", 1)
        bearer = [(b"Authorization", f"Bearer {server.customer_token('leaving-1')}".encode())]
        sio_token = server.customer_token("leaving-2")
        async with httpx.AsyncClient(base_url=server.url) as http, trio.open_nursery() as nursery:
            opened = await http.get("/socket.io/", params=POLLING)
            sid = json.loads(opened.text[1:])["sid"]

            async def long_poll() -> None:
                with trio.fail_after(WAIT_SECONDS):
                    answer = await http.get(
                        "/socket.io/", params={**POLLING, "sid": sid}, timeout=None
                    )
                seen.poll = (answer.status_code, answer.text.split("\x1e"))

            nursery.start_soon(long_poll)
            async with open_websocket_url(base + "/ws", extra_headers=bearer) as plain:
                await plain.send_message(json.dumps({"type": "ping"}))
                seen.pong = json.loads(await plain.get_message())["type"]
                async with open_websocket_url(
                    base + "/socket.io/?EIO=4&transport=websocket"
                ) as sio:
                    seen.open = str(await sio.get_message())[0]
                    await sio.send_message("40" + json.dumps({"token": sio_token}))
                    seen.connect = str(await sio.get_message())[:3]
                    server.process.send_signal(signal.SIGTERM)
                    signalled = trio.current_time()
                    with trio.fail_after(WAIT_SECONDS):
                        try:
                            while True:
                                seen.sio.append(str(await sio.get_message()))
                        except ConnectionClosed:
                            pass
                with trio.fail_after(WAIT_SECONDS):
                    try:
                        await plain.get_message()
                    except ConnectionClosed as closed:
                        if closed.reason is not None:
                            seen.ws = (closed.reason.code, closed.reason.reason)
        with trio.fail_after(START_SECONDS):
            seen.exit = await server.process.wait()
        print(f"SIGTERM to exit: {trio.current_time() - signalled:.2f}s")
        seen.said = server.output.decode()
        # Stopped accepting.
        try:
            async with httpx.AsyncClient(base_url=server.url) as late:
                await late.get("/healthz")
        except httpx.ConnectError:
            seen.refused = True
    assert seen.pong == "pong"
    assert (seen.open, seen.connect) == ("0", "40{")
    assert seen.ws == (1001, "the server is stopping; reconnect shortly")
    assert seen.sio[-1] == "1", seen.sio  # Engine.IO close
    assert any("server_stopping" in packet for packet in seen.sio), seen.sio
    assert "41" not in seen.sio  # no DISCONNECT: the client reconnects by itself
    status, polled = seen.poll
    assert status == 200
    assert polled[-1] == "1", polled
    assert seen.exit == 0, seen.said
    assert "stopped." in seen.said
    assert seen.refused
