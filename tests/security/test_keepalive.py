"""Kept-alive connections after an answer given before the body was read (413 for a declared
length, 401 from the guard, 404): the next request is always answered. A raw keep-alive client
does 50 such pairs, reusing the connection unless the answer said `Connection: close`."""

from __future__ import annotations

import trio

from tests.conftest import Live

PAIRS = 50
WAIT_SECONDS = 10.0
BODY = b'{"chatId":"000000000000000000000000","content":"hello"}'


def _post(path: str, declared: int, sent: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    return head.encode() + sent


# Each answered before the body is read; the last two with the body still on its way.
EARLY = [
    ("413", _post("/auth/login", 100_000, b'{"email":')),
    ("401", _post("/messages/customer/send", len(BODY), BODY)),
    ("404", _post("/no/such/path", len(BODY), BODY)),
    ("401", _post("/messages/customer/send", 5_000, BODY)),
    ("404", _post("/no/such/path", 5_000, BODY)),
]
HEALTH = b"GET /dev/test HTTP/1.1\r\nHost: test\r\n\r\n"


class Answer:
    def __init__(self, status: str, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class KeepAliveClient:
    """HTTP/1.1 over one TCP connection at a time, as a careful client does it."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stream: trio.SocketStream | None = None
        self._buffer = b""
        self.connections = 0

    async def ask(self, request: bytes) -> Answer | None:
        """The answer, or None when the connection ended (or stayed silent) without one."""
        with trio.move_on_after(WAIT_SECONDS):
            return await self._ask(request)
        await self._gone()
        return None

    async def _ask(self, request: bytes) -> Answer | None:
        if self._stream is None:
            self._stream = await trio.open_tcp_stream("127.0.0.1", self._port)
            self._buffer = b""
            self.connections += 1
        try:
            await self._stream.send_all(request)
        except trio.BrokenResourceError:
            await self._gone()
            return None
        while b"\r\n\r\n" not in self._buffer:
            if not await self._read():
                await self._gone()
                return None
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            if not await self._read():
                await self._gone()
                return None
        self._buffer = self._buffer[length:]
        answer = Answer(lines[0].split(" ")[1], headers)
        if answer.closes:
            await self._gone()
        return answer

    async def _read(self) -> bool:
        assert self._stream is not None
        try:
            chunk = await self._stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self._buffer += chunk
        return bool(chunk)

    async def _gone(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
        self._stream = None

    async def aclose(self) -> None:
        await self._gone()


async def test_the_request_after_an_early_answer_is_always_answered(live: Live) -> None:
    client = KeepAliveClient(int(live.url.rsplit(":", 1)[1]))
    statuses = []
    with trio.fail_after(WAIT_SECONDS * 6):
        for pair in range(PAIRS):
            expected, early = EARLY[pair % len(EARLY)]
            first = await client.ask(early)
            assert first is not None, f"pair {pair}: no answer to the early request"
            assert first.status == expected
            second = await client.ask(HEALTH)
            assert second is not None, f"pair {pair}: the request after {expected} got no answer"
            statuses.append(second.status)
    await client.aclose()
    assert statuses == ["200"] * PAIRS
    # Answers whose body was all there kept their connection: fewer connections than pairs.
    assert client.connections < PAIRS
