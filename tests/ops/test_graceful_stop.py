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


async def read_answer(stream: trio.SocketStream, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One answer's status line (its head and body read to the end), and what came after it."""
    got = buffered
    while b"\r\n\r\n" not in got:
        got += await stream.receive_some()
    head, _, rest = got.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,  # an interim answer (100 Continue)
    )
    while len(rest) < length:
        rest += await stream.receive_some()
    return head.split(b"\r\n", 1)[0], rest[length:]


async def closed_by_server(stream: trio.SocketStream) -> bool:
    with trio.move_on_after(WAIT_SECONDS):
        while await stream.receive_some():
            pass
        return True
    return False


async def test_sigterm_finishes_a_request_in_flight_and_closes_idle_connections(
    tmp_path: Path,
) -> None:
    """A request under way when SIGTERM comes is answered, then its connection closed; a
    kept-alive connection waiting for its next request is closed at once; new connections are
    refused meanwhile; the process exits long before the stop timeout."""
    stop_timeout = 60.0
    body = json.dumps({"email": "nobody@example.com", "password": "not-the-password"}).encode()
    results: dict[str, object] = {}
    async with server_process(tmp_path, stop_timeout_seconds=str(stop_timeout)) as server:
        idle = await trio.open_tcp_stream(server.host, server.port)
        await idle.send_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        results["idle answered"], _ = await read_answer(idle)
        in_flight = await trio.open_tcp_stream(server.host, server.port)
        await in_flight.send_all(
            b"POST /auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        # The server has the request (it asks for the body): it is under way.
        results["continue"], early = await read_answer(in_flight)
        server.process.send_signal(signal.SIGTERM)
        signalled = trio.current_time()
        results["idle closed"] = await closed_by_server(idle)
        try:
            await trio.open_tcp_stream(server.host, server.port)
            results["new connection"] = "accepted"
        except OSError:
            results["new connection"] = "refused"
        await in_flight.send_all(body)
        results["in flight answered"], after = await read_answer(in_flight, early)
        results["in flight closed"] = not after and await closed_by_server(in_flight)
        with trio.fail_after(stop_timeout):
            results["exit"] = await server.process.wait()
        took = trio.current_time() - signalled
        print(f"SIGTERM to exit with a request in flight and an idle connection: {took:.2f}s")
    assert results == {
        "idle answered": b"HTTP/1.1 200 ",
        "continue": b"HTTP/1.1 100 ",
        "idle closed": True,
        "new connection": "refused",
        "in flight answered": b"HTTP/1.1 401 ",
        "in flight closed": True,
        "exit": 0,
    }
    assert took < stop_timeout / 2, f"{took:.1f}s: the stop waited for its timeout"
