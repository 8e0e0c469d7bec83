"""Engine.IO sessions without a Socket.IO CONNECT: one client address cannot hold the session
slots, and a session that does not connect is dropped.

Client addresses are real: the clients bind to other loopback addresses (127.0.0.2, ...) and
talk to the server on 127.0.0.1. Waits are for the server's answers, bounded.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import h11
import httpx
import trio

from tests.conftest import Live, make_settings, running_server

PATH = "/socket.io/"
HANDSHAKE = {"EIO": "4", "transport": "polling"}
WAIT_SECONDS = 10.0


@asynccontextmanager
async def client_at(live: Live, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=live.url, transport=transport) as client:
        yield client


async def handshake(http: httpx.AsyncClient) -> httpx.Response:
    with trio.fail_after(WAIT_SECONDS):
        return await http.get(PATH, params=HANDSHAKE)


async def poll(http: httpx.AsyncClient, sid: str) -> list[str]:
    with trio.fail_after(WAIT_SECONDS):
        response = await http.get(PATH, params={**HANDSHAKE, "sid": sid}, timeout=None)
    assert response.status_code == 200, response.text
    return response.text.split("\x1e")


class Attacker:
    """Polling handshakes one after another on one kept-alive HTTP/1.1 connection from
    `address`, spoken with h11 directly. The server runs in the test's thread: through httpx
    (its connection pool above all) the attacker cost about as much CPU per handshake as the
    server's answer, and 10,000 handshakes took twice as long."""

    def __init__(self, live: Live, address: str) -> None:
        self._address = address
        host, port = live.url.split("://", 1)[1].rsplit(":", 1)
        self._host, self._port = host, int(port)
        self._request = h11.Request(
            method="GET", target=f"{PATH}?EIO=4&transport=polling", headers=[("Host", host)]
        )
        self._stream: trio.SocketStream | None = None
        self._http = h11.Connection(h11.CLIENT)

    async def handshake(self) -> tuple[int, str | None, bytes]:
        """The answer's status, Retry-After and body."""
        with trio.fail_after(WAIT_SECONDS):
            if self._stream is None or self._http.our_state is h11.MUST_CLOSE:
                await self.aclose()
                self._stream = await trio.open_tcp_stream(
                    self._host, self._port, local_address=self._address
                )
                self._http = h11.Connection(h11.CLIENT)
            request = self._http.send(self._request)
            self._http.send(h11.EndOfMessage())  # a GET has no body: nothing more to write
            assert request is not None
            await self._stream.send_all(request)
            status, retry_after, body = 0, None, bytearray()
            while not isinstance(event := self._http.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    self._http.receive_data(await self._stream.receive_some())
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    retry_after = dict(event.headers).get(b"retry-after", b"").decode() or None
                elif isinstance(event, h11.Data):
                    body += event.data
                else:
                    raise AssertionError(f"the server ended the answer with {event!r}")
        if self._http.our_state is h11.DONE and self._http.their_state is h11.DONE:
            self._http.start_next_cycle()
        return status, retry_after, bytes(body)

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None


async def connects_at_once(live: Live, http: httpx.AsyncClient, customer: str) -> float:
    """Handshake and an authenticated CONNECT; how long it took."""
    started = trio.current_time()
    opened = await handshake(http)
    assert opened.status_code == 200, opened.text
    sid = json.loads(opened.text[1:])["sid"]
    token = await live.customer_token(customer)
    with trio.fail_after(WAIT_SECONDS):
        posted = await http.post(
            PATH, params={**HANDSHAKE, "sid": sid}, content="40" + json.dumps({"token": token})
        )
    assert posted.text == "ok"
    packets = await poll(http, sid)
    assert packets[0].startswith("40{"), packets  # connected: {"sid": ...}
    return trio.current_time() - started


async def test_one_address_cannot_hold_the_sessions(tmp_path: Path) -> None:
    # Deadlines far longer than the attack (on a loaded machine 2,000 handshakes through httpx
    # took 86 s), so every refusal is the per-address cap's: neither the CONNECT deadline nor
    # the heartbeat (a polling session not polled for the ping interval plus timeout) frees a
    # slot meanwhile.
    deadline = 3600
    settings = make_settings(
        tmp_path,
        socketio_connect_seconds=deadline,
        ws_ping_interval_seconds=deadline,
        ws_ping_timeout_seconds=deadline,
    )
    attempts, workers = 10_000, 20
    async with running_server(settings) as live, client_at(live, "127.0.0.3") as customer:
        answers: Counter[int] = Counter()
        retry_after: set[str | None] = set()
        halfway = trio.Event()
        waits: list[float] = []

        async def hammer() -> None:
            attacker = Attacker(live, "127.0.0.2")
            try:
                for _ in range(attempts // workers):
                    status, retry, body = await attacker.handshake()
                    answers[status] += 1
                    if status == 429:
                        assert json.loads(body)["error"]["code"] == "too_many_pending_sessions"
                        retry_after.add(retry)
                    if answers.total() >= attempts // 2:
                        halfway.set()
            finally:
                await attacker.aclose()

        async def meanwhile() -> None:
            await halfway.wait()
            waits.append(await connects_at_once(live, customer, "shop-customer-1"))

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(hammer)
            nursery.start_soon(meanwhile)
        took = trio.current_time() - started
        print(
            f"{attempts} handshakes from one address in {took:.1f}s: {dict(answers)}; "
            f"another address connected in {waits[0] * 1000:.0f} ms"
        )
        assert answers == {200: 20, 429: attempts - 20}
        assert retry_after == {str(deadline)}
        # After the attack too, with the attacker's 20 sessions still waiting.
        await connects_at_once(live, customer, "shop-customer-2")


async def test_a_session_without_a_connect_is_dropped(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, socketio_connect_seconds=0.5, socketio_pending_per_address=2)
    async with running_server(settings) as live, client_at(live, "127.0.0.4") as idle:
        sids = []
        for _ in range(2):
            opened = await handshake(idle)
            assert opened.status_code == 200
            sids.append(json.loads(opened.text[1:])["sid"])
        assert (await handshake(idle)).status_code == 429
        for sid in sids:
            seen: list[str] = []
            while "1" not in seen:  # the close packet, once the deadline passed
                seen += await poll(idle, sid)
        with trio.fail_after(WAIT_SECONDS):
            while (opened := await handshake(idle)).status_code == 429:  # noqa: ASYNC110
                await trio.sleep(0.05)  # the closing sessions hand out their last packets
        assert opened.status_code == 200
