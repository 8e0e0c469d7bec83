"""No client can hold a connection (and its file handle) after the server is done with it.

A real `switchboard serve` subprocess, whose open file handles are counted in /proc/<pid>/fd;
raw websocket clients that flood until the server closes them, or provoke another close the
server starts (a frame over the size limit, a sign-out), then vanish with a reset or in
silence; a normal client is served throughout. Waits are for a condition, bounded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.security.rawws import RawWebsocket, open_raw
from tests.server_process import ServerProcess, server_process

CLOSE_TIMEOUT = 2.0
FLOODERS = 200
# A flood of 100 frames overflows the default bucket (40, then 20 a second) only if the server
# reads them within 3 s: with 200 flooders on a loaded machine it may not, and a /ws flooder
# waiting for its close then waits in vain. Refilled this slowly, 100 frames always overflow.
FRAMES_PER_SECOND, FRAME_BURST = 0.1, 40
# Scheduling slack on a busy machine, beyond the close timeout.
SLACK_SECONDS = 3.0


async def served_throughout(
    server: ServerProcess,
    done: trio.Event,
    answered: list[float],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A normal client on one kept-alive connection, asking again and again until `done`:
    each answer within a bound. Started once answered."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        while not done.is_set():
            with trio.fail_after(5):
                started = trio.current_time()
                response = await http.get("/healthz")
            assert response.status_code == 200
            answered.append(trio.current_time() - started)
            if len(answered) == 1:
                task_status.started()
            await trio.sleep(0.05)


async def flood_ws(server: ServerProcess, n: int, vanish: str) -> RawWebsocket:
    token = server.customer_token(f"flooder-{n}")
    client = await open_raw(
        server.host, server.port, "/ws", [(b"Authorization", f"Bearer {token}".encode())]
    )
    await client.send_text(*[json.dumps({"type": "ping"})] * 100)
    return await vanishing(client, vanish)


async def flood_socketio(server: ServerProcess, n: int, vanish: str) -> RawWebsocket:
    client = await open_raw(server.host, server.port, "/socket.io/?EIO=4&transport=websocket")
    await client.send_text(*['42["x"]'] * 200)
    return await vanishing(client, vanish)


async def vanishing(client: RawWebsocket, how: str, code: int | None = None) -> RawWebsocket:
    """The peer goes away as `how` says; after the server's close frame (`code`, when given)
    for the "-after-close" ways."""
    if how.endswith("-after-close"):
        closed = await client.until_close()  # the server has started its close
        assert code is None or closed.code == code, closed
    if how.startswith("reset"):
        await client.reset()
    # "silent", "silent-after-close": reads nothing more, answers nothing (no close frame, no
    # FIN), keeps the connection open
    return client


async def test_flooders_that_vanish_leave_no_open_file_behind(tmp_path: Path) -> None:
    # Every flooder comes from 127.0.0.1: the Socket.IO ones must not meet the cap of sessions
    # waiting for a CONNECT per address (tests/security/test_session_exhaustion.py).
    async with server_process(
        tmp_path,
        ws_close_timeout_seconds=str(CLOSE_TIMEOUT),
        socketio_pending_per_address=str(FLOODERS),
        ws_max_frames_per_second=str(FRAMES_PER_SECOND),
        ws_frame_burst=str(FRAME_BURST),
    ) as server:
        done, answered = trio.Event(), list[float]()
        silent: list[RawWebsocket] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(served_throughout, server, done, answered)
            baseline = server.open_files()  # the normal client's connection included
            async with trio.open_nursery() as flood:
                rng = random.Random(14)

                async def one(n: int) -> None:
                    opener = flood_ws if n % 2 else flood_socketio
                    how = rng.choice(["reset-after-close", "reset", "silent"])
                    client = await opener(server, n, how)
                    if how == "silent":
                        silent.append(client)

                for n in range(FLOODERS):
                    flood.start_soon(one, n)
            assert silent, "some flooders stay silent"
            peak = server.open_files()
            took = await server.files_back_to(baseline, CLOSE_TIMEOUT + SLACK_SECONDS)
            done.set()
        print(
            f"{FLOODERS} flooders ({len(silent)} silent): open files {baseline} -> {peak} -> "
            f"back in "
            f"{took:.2f}s; normal client: {len(answered)} answers, slowest {max(answered):.2f}s"
        )
        assert answered
        for client in silent:
            await client.stream.aclose()


async def test_peers_that_answer_no_ping_are_cut_and_live_ones_kept(tmp_path: Path) -> None:
    """A peer that reads nothing and answers nothing (as one that vanished without a FIN) is
    cut after the ping timeout; a client that answers pings stays."""
    interval, timeout = 0.5, 1.0
    async with server_process(
        tmp_path, ws_ping_interval_seconds=str(interval), ws_ping_timeout_seconds=str(timeout)
    ) as server:
        token = server.customer_token("steady")
        async with open_websocket_url(
            server.url.replace("http", "ws", 1) + "/ws",
            extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
        ) as steady:
            await steady.send_message(json.dumps({"type": "ping"}))
            assert json.loads(await steady.get_message())["type"] == "pong"
            baseline = server.open_files()
            mute = [
                await open_raw(
                    server.host,
                    server.port,
                    "/ws",
                    [(b"Authorization", f"Bearer {server.customer_token(f'mute-{n}')}".encode())],
                )
                for n in range(20)
            ]
            assert server.open_files() >= baseline + len(mute)
            took = await server.files_back_to(baseline, interval + timeout + SLACK_SECONDS)
            print(f"{len(mute)} mute peers cut {took:.2f}s after they were all open")
            # Several ping rounds later, the client that answers them is still served.
            await steady.send_message(json.dumps({"type": "ping"}))
            assert json.loads(await steady.get_message())["type"] == "pong"
        for client in mute:
            await client.stream.aclose()


# --- other closes the server starts ---------------------------------------------------------------

FRAME_LIMIT = 1024  # the smallest SWITCHBOARD_WS_MAX_FRAME_BYTES allowed
PEERS = 20
VANISH = ["silent", "silent-after-close", "reset-after-close", "reset"]


async def ws_peer(server: ServerProcess, name: str) -> tuple[RawWebsocket, str]:
    token = server.customer_token(name)
    client = await open_raw(
        server.host, server.port, "/ws", [(b"Authorization", f"Bearer {token}".encode())]
    )
    return client, token


async def frame_over_the_limit(
    server: ServerProcess, http: httpx.AsyncClient, n: int
) -> RawWebsocket:
    """hypercorn's 1009: more characters than the limit."""
    client, _ = await ws_peer(server, f"too-big-{n}")
    await client.send_text(json.dumps({"type": "ping", "pad": "x" * FRAME_LIMIT}))
    return client


async def frame_over_the_limit_in_bytes(
    server: ServerProcess, http: httpx.AsyncClient, n: int
) -> RawWebsocket:
    """The app's own 1009: under the limit in characters, over it in bytes."""
    client, _ = await ws_peer(server, f"too-many-bytes-{n}")
    await client.send_text("é" * (FRAME_LIMIT // 2 + 1))
    return client


async def socketio_frame_over_the_limit(
    server: ServerProcess, http: httpx.AsyncClient, n: int
) -> RawWebsocket:
    """hypercorn's 1009 on a Socket.IO websocket, before any CONNECT."""
    client = await open_raw(server.host, server.port, "/socket.io/?EIO=4&transport=websocket")
    await client.send_text("4" + "x" * FRAME_LIMIT)
    return client


async def signed_out(server: ServerProcess, http: httpx.AsyncClient, n: int) -> RawWebsocket:
    """4401: the token the websocket was opened with is signed out."""
    client, token = await ws_peer(server, f"signed-out-{n}")
    with trio.fail_after(10):
        response = await http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return client


Provoke = Callable[[ServerProcess, httpx.AsyncClient, int], Awaitable[RawWebsocket]]


@pytest.mark.parametrize(
    ("provoke", "code"),
    [
        (frame_over_the_limit, 1009),
        (frame_over_the_limit_in_bytes, 1009),
        (socketio_frame_over_the_limit, 1009),
        (signed_out, 4401),
    ],
    ids=["1009-ws", "1009-ws-bytes", "1009-socketio", "4401-signed-out"],
)
async def test_peers_that_vanish_after_a_close_they_provoked_leave_no_open_file(
    tmp_path: Path, provoke: Provoke, code: int
) -> None:
    """Each close the server starts completes or is cut after the close timeout, whoever asked
    for it: a peer that made the server close (and read the close frame, or not) then goes
    silent or resets holds no file handle past the close timeout."""
    async with (
        server_process(
            tmp_path,
            ws_close_timeout_seconds=str(CLOSE_TIMEOUT),
            ws_max_frame_bytes=str(FRAME_LIMIT),
            socketio_pending_per_address=str(PEERS),
            # The client's kept-alive connection stays: its close would hide a peer's file.
            http_keep_alive_seconds="600",
        ) as server,
        # One connection for every sign-out: no kept-alive connection of its own to wait for.
        httpx.AsyncClient(base_url=server.url, limits=httpx.Limits(max_connections=1)) as http,
    ):
        assert (await http.get("/healthz")).status_code == 200
        baseline = server.open_files()  # this client's kept-alive connection included
        silent: list[RawWebsocket] = []
        async with trio.open_nursery() as nursery:

            async def one(n: int) -> None:
                how = VANISH[n % len(VANISH)]
                client = await vanishing(await provoke(server, http, n), how, code)
                if how.startswith("silent"):
                    silent.append(client)

            for n in range(PEERS):
                nursery.start_soon(one, n)
        peak = server.open_files()
        took = await server.files_back_to(baseline, CLOSE_TIMEOUT + SLACK_SECONDS)
        print(
            f"{PEERS} peers closed with {code} ({len(silent)} silent): open files {baseline} -> "
            f"{peak} -> back in {took:.2f}s"
        )
        assert (await http.get("/healthz")).status_code == 200
        for client in silent:
            await client.stream.aclose()
