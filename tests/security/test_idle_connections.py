"""No HTTP client can hold a connection the server is done with: an answer that ends its
connection (`Connection: close`, HTTP/1.0, an early answer with its body still coming) closes
it at once, and a connection with no request under way is closed after
SWITCHBOARD_HTTP_KEEP_ALIVE_SECONDS, whether it was silent from the start or kept alive after
an answer.

A real `switchboard serve` subprocess, whose open file handles are counted in /proc/<pid>/fd;
raw TCP clients that never close their side. Waits are for a condition, bounded.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.server_process import ServerProcess, server_process

HOLDERS = 100
# Scheduling slack on a busy machine.
SLACK_SECONDS = 5.0
WAIT_SECONDS = 10.0

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
ENDING = {
    "Connection: close": b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    "HTTP/1.0": b"GET /healthz HTTP/1.0\r\n\r\n",
    # Answered 401 before the body is read; the body never comes.
    "early answer": (
        b"POST /messages/customer/send HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
    ),
}


async def held(server: ServerProcess, request: bytes | None) -> trio.SocketStream:
    """A connection that sends `request` (or nothing) and never closes its side."""
    stream = await trio.open_tcp_stream(server.host, server.port)
    if request is not None:
        await stream.send_all(request)
    return stream


async def read_until_closed(stream: trio.SocketStream, within: float) -> tuple[bytes, bool]:
    """What the server sent, and whether it closed the connection within the bound."""
    got = b""
    with trio.move_on_after(within):
        while chunk := await stream.receive_some():
            got += chunk
        return got, True
    return got, False


async def test_an_answer_that_ends_its_connection_closes_it(tmp_path: Path) -> None:
    # The idle timer is far away: only the answer can be what closes these.
    async with server_process(tmp_path, http_keep_alive_seconds="600") as server:
        baseline = server.open_files()
        seen: dict[str, list[tuple[bytes, bool]]] = {name: [] for name in ENDING}
        async with trio.open_nursery() as nursery:

            async def one(name: str) -> None:
                stream = await held(server, ENDING[name])
                seen[name].append(await read_until_closed(stream, WAIT_SECONDS))
                await stream.aclose()

            for name in ENDING:
                for _ in range(HOLDERS // len(ENDING)):
                    nursery.start_soon(one, name)
        took = await server.files_back_to(baseline, SLACK_SECONDS)
    for name, answers in seen.items():
        statuses = {got.split(b"\r\n", 1)[0] for got, _ in answers}
        expected = b"HTTP/1.1 401 " if name == "early answer" else b"HTTP/1.1 200 "
        assert statuses == {expected}, (name, statuses)
        assert all(closed for _, closed in answers), f"{name}: the connection was left open"
    print(
        f"{HOLDERS} connections ended by their answer: open files back to {baseline} in {took:.2f}s"
    )


async def test_connections_with_no_request_under_way_are_closed(tmp_path: Path) -> None:
    keep_alive = 1.0
    async with server_process(tmp_path, http_keep_alive_seconds=str(keep_alive)) as server:
        baseline = server.open_files()
        seen: list[tuple[str, bytes, bool]] = []
        opened, peak = 0, 0
        async with trio.open_nursery() as nursery:

            async def one(n: int) -> None:
                nonlocal opened, peak
                kind = "kept alive" if n % 2 else "silent"
                stream = await held(server, HEALTH if kind == "kept alive" else None)
                opened += 1
                if opened == HOLDERS:
                    peak = server.open_files()
                got, closed = await read_until_closed(stream, keep_alive + WAIT_SECONDS)
                seen.append((kind, got.split(b"\r\n", 1)[0], closed))
                await stream.aclose()

            for n in range(HOLDERS):
                nursery.start_soon(one, n)
        took = await server.files_back_to(baseline, SLACK_SECONDS)
    assert sorted({(kind, status) for kind, status, _ in seen}) == [
        ("kept alive", b"HTTP/1.1 200 "),
        ("silent", b""),
    ]
    left_open = [kind for kind, _, closed in seen if not closed]
    assert not left_open, f"{len(left_open)} left open: {set(left_open)}"
    print(
        f"{HOLDERS} idle connections (half kept alive after an answer): open files {baseline} "
        f"-> {peak} -> back in {took:.2f}s"
    )
