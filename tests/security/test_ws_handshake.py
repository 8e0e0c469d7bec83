"""The websocket before authentication: frames sent ahead of (or instead of) a handshake, and
garbage or broken handshakes, over raw TCP to a live server.

Nothing a client sends before its handshake is accepted is ever read as a frame: a frame behind
a refused handshake creates nothing, and the client gets an HTTP refusal or a closed connection,
never a socket. And no such client takes the server down for everyone else: after each case a
proper client still connects and is answered. (The oversize-frame, flood, foreign-Origin and
slow-reader cases are in tests/e2e/test_ws_limits.py; bad tokens in test_token_corpus.py.)
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
from prometheus_client import REGISTRY
from wsproto.frame_protocol import FrameProtocol

from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import WAIT_SECONDS, connect

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
OPEN_CHAT = json.dumps({"type": "chat.open", "title": "sneaked in"})


def masked_frame(text: str) -> bytes:
    """A client's text frame, masked as RFC 6455 requires."""
    return bytes(FrameProtocol(client=True, extensions=[]).send_data(text, fin=True))


def upgrade(*headers: bytes, version: bytes = b"13", key: bytes | None = KEY) -> bytes:
    lines = [
        b"GET /ws HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Version: " + version,
        *([b"Sec-WebSocket-Key: " + key] if key is not None else []),
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def bearer(token: str) -> bytes:
    return b"Authorization: Bearer " + token.encode()


async def exchange(live: Live, data: bytes, *, then_eof: bool = False) -> bytes:
    """Send `data` on a fresh connection (then end the sending side, if asked); the server's
    answer: its head and body, or all it said until it closed."""
    url = urlsplit(live.url)
    assert url.hostname is not None
    assert url.port is not None
    received = b""
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    async with stream:
        try:
            await stream.send_all(data)
            if then_eof:
                await stream.send_eof()
        except trio.BrokenResourceError:
            # The server may refuse and close before reading all of it (100 kB of headers):
            # its reset then ends our sending; what it answered, if anything, is still read.
            pass
        with trio.fail_after(WAIT_SECONDS):
            try:
                while not _complete(received) and (chunk := await stream.receive_some()):
                    received += chunk
            except trio.BrokenResourceError:  # reset after the answer
                pass
    return received


def _complete(answer: bytes) -> bool:
    """A whole HTTP answer: a switch of protocols, or a head and as much body as it declares."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    if head.startswith(b"HTTP/1.1 101 "):
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(answer: bytes) -> int | None:
    """The HTTP status the server answered with, None if it said nothing."""
    if not answer:
        return None
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split(b" ", 2)[1])


async def still_serving(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-2")) as client:
        await client.ping()


@pytest.mark.parametrize("credentials", ["none", "bad", "plain user"])
async def test_frames_behind_a_refused_handshake_are_never_read(
    live: Live, credentials: str
) -> None:
    headers = {
        "none": [],
        "bad": [bearer("not.a.token")],
        "plain user": [bearer(await live.login("uma@switchboard.example"))],
    }[credentials]
    # Behind the upgrade request, before any answer: what a client must not do (RFC 6455 4.1).
    # Several times: the refusal races hypercorn's own 400 for data before the handshake ends.
    for _ in range(10):
        answer = await exchange(live, upgrade(*headers) + masked_frame(OPEN_CHAT))
        assert status_of(answer) in (None, 400, 401, 403), answer[:200]
        assert b" 101 " not in answer
    assert await live.services.store.count_chats() == 0
    await still_serving(live)


async def test_frames_behind_an_accepted_handshake_are_read_once_it_is_accepted(
    live: Live,
) -> None:
    """The control: the same bytes with a good token may get a socket (or a 400 when the frame
    arrives before the app accepted), and never crash anything."""
    token = await live.customer_token("shop-customer-1")
    answer = await exchange(live, upgrade(bearer(token)) + masked_frame(OPEN_CHAT))
    assert status_of(answer) in (101, 400), answer[:200]
    await still_serving(live)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(masked_frame(OPEN_CHAT), id="a frame with no handshake"),
        pytest.param(b"\x00\xff" * 64, id="binary garbage"),
        pytest.param(b"GET /ws\r\n\r\n", id="HTTP/0.9 request line"),
        pytest.param(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpg", id="cut off mid-header"),
        pytest.param(b"GET /ws HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", id="malformed header"),
        pytest.param(upgrade(b"X-Big: " + b"a" * 100_000), id="100 kB of headers"),
        pytest.param(b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nhiya", id="POST"),
    ],
)
async def test_garbage_instead_of_a_handshake_gets_no_socket(live: Live, data: bytes) -> None:
    answer = await exchange(live, data, then_eof=True)
    assert b" 101 " not in answer
    assert status_of(answer) in (None, 400, 401, 404, 405, 413, 431), answer[:200]
    assert await live.services.store.count_chats() == 0
    await still_serving(live)


@pytest.mark.parametrize(
    ("version", "key"),
    [(b"99", KEY), (b"13", None)],
    ids=["unknown version", "no key"],
)
async def test_broken_handshakes_with_a_good_token_get_no_socket(
    live: Live, version: bytes, key: bytes | None
) -> None:
    token = await live.customer_token("shop-customer-1")
    answer = await exchange(live, upgrade(bearer(token), version=version, key=key))
    assert b" 101 " not in answer
    assert status_of(answer) in (400, 426), answer[:200]
    await still_serving(live)


async def test_a_plain_request_to_the_socket_path_is_refused(live: Live) -> None:
    token = await live.customer_token("shop-customer-1")
    response = await live.http.get("/ws", headers={"Authorization": f"Bearer {token}"})
    assert 400 <= response.status_code < 500, response.text
    await still_serving(live)


async def test_compression_is_declined_so_a_compressed_frame_cannot_inflate(live: Live) -> None:
    """permessage-deflate is never agreed: a frame marked compressed (RSV1) is a protocol error
    that ends the connection (with a 1002 close when it gets to say so), so a few kB cannot make
    the server inflate megabytes."""
    token = await live.customer_token("shop-customer-1")
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    url = urlsplit(live.url)
    assert url.hostname is not None
    assert url.port is not None
    bomb = zlib.compressobj(wbits=-15)
    deflated = bomb.compress(b"0" * 8_000_000) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(deflated) < 16_000
    frame = bytearray(masked_frame("x" * len(deflated)))
    frame[0] |= 0x40  # RSV1: "this message is compressed"
    frame = frame[: len(frame) - len(deflated)] + bytes(
        byte ^ frame[len(frame) - len(deflated) - 4 + i % 4] for i, byte in enumerate(deflated)
    )
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    async with stream:
        await stream.send_all(upgrade(bearer(token), offer))
        received = b""
        with trio.fail_after(WAIT_SECONDS):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some()
            head, _, rest = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            assert b"sec-websocket-extensions" not in head.lower()
            await stream.send_all(bytes(frame))
            try:
                while chunk := await stream.receive_some():
                    rest += chunk
            except trio.BrokenResourceError:  # reset instead of a close frame: ended all the same
                pass
    if b"\x88" in rest:  # the server said goodbye before hanging up: as a protocol error
        close = rest[rest.index(b"\x88") :]
        assert int.from_bytes(close[2:4], "big") == 1002, close
    await still_serving(live)


async def test_a_frame_answered_400_leaves_no_connection_behind(tmp_path: Path) -> None:
    """A frame right behind the upgrade request is answered 400 before the app accepts: the
    app, already started, must end with it. It once accepted into the closed stream and served
    it until the server stopped and past it: the connection was never logged closed, and held
    the customer's connection slot and presence all along."""
    before = open_connections()
    async with running_server(make_settings(tmp_path)) as live:
        token = await live.customer_token("shop-customer-1")
        for _ in range(3):
            answer = await exchange(live, upgrade(bearer(token)) + masked_frame(OPEN_CHAT))
            assert status_of(answer) == 400, answer[:200]
        await still_serving(live)
    # The server has stopped and every task of it has ended: what it opened, it closed.
    assert open_connections() == before


def open_connections() -> dict[tuple[str, str], float]:
    return {
        (sample.labels["edge"], sample.labels["role"]): sample.value
        for family in REGISTRY.collect()
        if family.name == "switchboard_connections"
        for sample in family.samples
        if sample.value
    }
