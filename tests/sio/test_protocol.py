"""The /socket.io/ endpoint spoken to by hand (httpx, trio-websocket) against a live server:
handshake, errors, malformed packets, heartbeats, slow pollers, CORS. No Node.js needed.

Waits are bounded (`trio.fail_after`) and wait for an answer of the server, never for time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from store import Priority
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import connect as ws_connect
from tests.e2e.wsclient import ready_agent, say

WAIT_SECONDS = 10.0
PATH = "/socket.io/"


class Polling:
    """One Engine.IO session over raw HTTP long-polling."""

    def __init__(self, http: httpx.AsyncClient, sid: str, headers: dict[str, str]) -> None:
        self.http = http
        self.sid = sid
        self.headers = headers

    @classmethod
    async def open(cls, live: Live, **headers: str) -> tuple[Polling, dict[str, Any]]:
        response = await live.http.get(
            PATH, params={"EIO": "4", "transport": "polling"}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/plain; charset=UTF-8"
        assert response.text[0] == "0"
        handshake: dict[str, Any] = json.loads(response.text[1:])
        return cls(live.http, handshake["sid"], headers), handshake

    def _params(self) -> dict[str, str]:
        return {"EIO": "4", "transport": "polling", "sid": self.sid}

    async def get(self) -> list[str]:
        with trio.fail_after(WAIT_SECONDS):
            # A long poll: bounded here, not by httpx's shorter default.
            response = await self.http.get(
                PATH, params=self._params(), headers=self.headers, timeout=None
            )
        assert response.status_code == 200, response.text
        return response.text.split("\x1e")

    async def post(self, *packets: str) -> httpx.Response:
        with trio.fail_after(WAIT_SECONDS):
            return await self.http.post(
                PATH, params=self._params(), content="\x1e".join(packets), headers=self.headers
            )

    async def until(self, packet: str) -> list[str]:
        """Poll until `packet` comes; everything received on the way, in order."""
        seen: list[str] = []
        with trio.fail_after(WAIT_SECONDS):
            while packet not in seen:
                seen += await self.get()
        return seen

    async def connect(self, token: str) -> str:
        """Socket.IO CONNECT with `auth.token`; the socket's sid."""
        assert (await self.post(json.dumps({"token": token}).join(["40", ""]))).text == "ok"
        answer = next(p for p in await self.until_prefix("40") if p.startswith("40"))
        sid: str = json.loads(answer[2:])["sid"]
        return sid

    async def until_prefix(self, prefix: str) -> list[str]:
        seen: list[str] = []
        with trio.fail_after(WAIT_SECONDS):
            while not any(p.startswith(prefix) for p in seen):
                seen += await self.get()
        return seen


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Live]:
    """A server with small outboxes and buffers, and one allowed origin."""
    settings = make_settings(
        tmp_path,
        ws_outbox_frames=4,
        ws_max_frame_bytes=1024,
        allowed_origins=["https://shop.example"],
    )
    async with running_server(settings) as live:
        yield live


def engine_io_code(response: httpx.Response) -> int:
    code: int = response.json()["error"]["details"]["engineIoCode"]
    return code


async def test_handshake_connect_and_an_acked_event_over_raw_polling(live: Live) -> None:
    session, handshake = await Polling.open(live)
    assert handshake == {
        "sid": session.sid,
        "upgrades": ["websocket"],
        "pingInterval": 20000,
        "pingTimeout": 20000,
        "maxPayload": 65536,
    }
    token = await live.customer_token("shop-customer-1")
    me = (await live.services.tokens.authenticate(token)).user.id
    socket_sid = await session.connect(token)
    assert socket_sid
    assert socket_sid != session.sid
    await session.post('427["joinNotification"]', '428["joinNotification",{"userId":"x"}]')
    answers = await session.until_prefix("438")
    assert f'437[{{"room":"{me}"}}]' in answers
    refused = json.loads(next(p for p in answers if p.startswith("438"))[3:])
    assert refused[0]["error"]["code"] == "forbidden"
    await session.post('40/admin,{"token":"t"}')  # only the default namespace exists
    assert '44/admin,{"message":"Invalid namespace"}' in await session.until_prefix("44")


@pytest.mark.parametrize(
    ("method", "params", "status", "code", "engine_io"),
    [
        ("GET", {"EIO": "3", "transport": "polling"}, 400, "unsupported_protocol_version", 5),
        ("GET", {"transport": "polling"}, 400, "unsupported_protocol_version", 5),
        ("GET", {"EIO": "4", "transport": "flashsocket"}, 400, "transport_unknown", 0),
        ("GET", {"EIO": "4", "transport": "polling", "sid": "nope"}, 400, "session_unknown", 1),
        ("POST", {"EIO": "4", "transport": "polling", "sid": "nope"}, 400, "session_unknown", 1),
        ("POST", {"EIO": "4", "transport": "polling"}, 400, "bad_handshake", 2),
    ],
)
async def test_bad_requests_get_the_common_error_shape_with_the_engine_io_code(
    live: Live, method: str, params: dict[str, str], status: int, code: str, engine_io: int
) -> None:
    response = await live.http.request(method, PATH, params=params, content="40")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert engine_io_code(response) == engine_io


async def test_a_malformed_packet_closes_only_its_session(live: Live) -> None:
    broken, _ = await Polling.open(live)
    healthy, _ = await Polling.open(live)
    await broken.connect(await live.customer_token("shop-customer-1"))
    await healthy.connect(await live.customer_token("shop-customer-2"))

    assert (await broken.post('42["joinChat",{"chatId":')).text == "ok"
    assert await broken.until("1") == [
        '42["error",{"message":"malformed packet: the Socket.IO payload is not valid JSON",'
        '"code":"invalid_packet"}]',
        "41",  # DISCONNECT: the client does not reconnect by itself
        "1",
    ]
    assert (await broken.post('42["joinNotification"]')).status_code == 400

    # Engine.IO garbage: refused at once, the session closed.
    garbage, _ = await Polling.open(live)
    response = await garbage.post("9nonsense")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "unknown Engine.IO packet type '9'; expected 0-6"
    assert (await garbage.post("40")).status_code == 400

    await healthy.post('421["joinNotification"]')
    assert any(p.startswith("431[") for p in await healthy.until_prefix("431"))
    assert (await Polling.open(live))[1]["sid"]


async def test_overlapping_polls_close_the_session(live: Live) -> None:
    session, _ = await Polling.open(live)
    first: list[str] = []

    async def poll_first(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        first.extend(await session.get())

    async with trio.open_nursery() as nursery:
        await nursery.start(poll_first)
        # The server answers the second poll only once the first is waiting (or closed).
        with trio.fail_after(WAIT_SECONDS):
            while (
                second := await live.http.get(PATH, params=session._params())
            ).status_code == 200:
                first.extend(second.text.split("\x1e"))
        assert second.status_code == 400
        assert "overlapping polls" in second.json()["error"]["message"]
    assert first[-1] == "1"


async def test_the_server_pings_and_closes_a_session_that_stops_answering(
    tmp_path: Path,
) -> None:
    quickly = make_settings(tmp_path, ws_ping_interval_seconds=0.2, ws_ping_timeout_seconds=0.2)
    async with running_server(quickly) as quick:
        session, handshake = await Polling.open(quick)
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == (200, 200)
        assert await session.until("2") == ["2"]
        assert (await session.post("3")).text == "ok"  # pong: alive
        assert await session.until("2") == ["2"]
        assert await session.until("1") == ["1"]  # no pong this time: closed


async def test_a_slow_poller_is_closed_and_its_peer_is_not_slowed(small: Live) -> None:
    customer_token = await small.customer_token("shop-customer-1")
    customer_id = (await small.services.tokens.authenticate(customer_token)).user.id
    poller, _ = await Polling.open(small)
    await poller.connect(customer_token)
    async with ws_connect(small, await small.login("ann@switchboard.example")) as agent:
        await ready_agent(small, agent)
        opened = await small.services.system.open_chat(
            customer_id, title="Slow", description="", priority=Priority.MEDIUM
        )
        chat_id = opened.chat.id
        await poller.post(f'421["joinChat",{{"chatId":"{chat_id}"}}]')
        await poller.until_prefix("431")
        # The poller stops polling; the agent goes on writing, every message acked at once.
        for n in range(1, 21):
            assert (await say(agent, chat_id, f"a{n}", "x" * 800))["seq"] == n
        await agent.ping()
    tail = await poller.until("1")
    assert tail[-2:] == [
        '42["error",{"message":"too slow reading events; reconnect and resume",'
        '"code":"slow_reader"}]',
        "1",  # no DISCONNECT: the client may reconnect at once
    ]
    received = [p for p in tail if p.startswith('42["messageReceived"')]
    assert 0 < len(received) < 20


async def test_polling_answers_only_allowed_origins_and_preflights(small: Live) -> None:
    allowed = {"Origin": "https://shop.example"}
    session, _ = await Polling.open(small, **allowed)
    answer = await small.http.post(PATH, params=session._params(), content="40", headers=allowed)
    assert answer.headers["access-control-allow-origin"] == "https://shop.example"
    assert answer.headers["access-control-allow-credentials"] == "true"
    preflight = await small.http.options(PATH, headers=allowed)
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]

    evil = {"Origin": "https://evil.example"}
    refused = await small.http.get(PATH, params={"EIO": "4", "transport": "polling"}, headers=evil)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert (await small.http.options(PATH, headers=evil)).status_code == 403
    url = small.url.replace("http://", "ws://") + PATH + "?EIO=4&transport=websocket"
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, extra_headers=[(b"Origin", b"https://evil.example")]):
            pass
    assert rejected.value.status_code == 403


async def test_a_broken_upgrade_leaves_the_session_polling(live: Live) -> None:
    session, _ = await Polling.open(live)
    base = live.url.replace("http://", "ws://") + PATH + "?EIO=4&transport=websocket"
    with pytest.raises(ConnectionRejected) as unknown:
        async with open_websocket_url(base + "&sid=nope"):
            pass
    assert unknown.value.status_code == 400
    with trio.fail_after(WAIT_SECONDS):
        async with open_websocket_url(base + f"&sid={session.sid}") as upgrade:
            await upgrade.send_message("5")  # upgrade before the probe: refused, socket closed
            with pytest.raises(ConnectionClosed) as closed:
                await upgrade.get_message()
            reason = closed.value.reason
            assert reason is not None
            assert reason.code == 1000
    await session.connect(await live.customer_token("shop-customer-1"))


async def test_a_websocket_session_answers_events_and_closes_on_a_malformed_frame(
    live: Live,
) -> None:
    url = live.url.replace("http://", "ws://") + PATH + "?EIO=4&transport=websocket"
    token = await live.customer_token("shop-customer-1")
    with trio.fail_after(WAIT_SECONDS):
        async with open_websocket_url(url) as ws:
            opened = await ws.get_message()
            assert isinstance(opened, str)
            assert json.loads(opened[1:])["upgrades"] == []
            await ws.send_message("40" + json.dumps({"token": token}))
            assert str(await ws.get_message()).startswith('40{"sid":')
            await ws.send_message(b"\x00\x01")  # binary: this server speaks JSON only
            assert await ws.get_message() == (
                '42["error",{"message":"malformed packet: binary messages are not supported; '
                'send JSON","code":"invalid_packet"}]'
            )
            assert await ws.get_message() == "41"
            assert await ws.get_message() == "1"
            with pytest.raises(ConnectionClosed):
                await ws.get_message()


async def test_an_empty_binary_frame_is_malformed_not_a_crash(live: Live) -> None:
    url = live.url.replace("http://", "ws://") + PATH + "?EIO=4&transport=websocket"
    token = await live.customer_token("shop-customer-1")
    with trio.fail_after(WAIT_SECONDS):
        async with open_websocket_url(url) as ws:
            await ws.get_message()
            await ws.send_message("40" + json.dumps({"token": token}))
            assert str(await ws.get_message()).startswith('40{"sid":')
            await ws.send_message(b"")
            assert '"code":"invalid_packet"' in str(await ws.get_message())
            assert await ws.get_message() == "41"
        response = await live.http.get("/dev/test")
        assert response.status_code == 200


async def test_the_upgrade_by_hand_and_a_stray_poll_after_it(live: Live) -> None:
    session, _ = await Polling.open(live)
    token = await live.customer_token("shop-customer-1")
    await session.connect(token)
    url = (
        live.url.replace("http://", "ws://")
        + PATH
        + f"?EIO=4&transport=websocket&sid={session.sid}"
    )
    with trio.fail_after(WAIT_SECONDS):
        async with open_websocket_url(url) as ws:
            await ws.send_message("2probe")
            assert await ws.get_message() == "3probe"
            assert await session.get() == ["6"]  # the poll answers noop: the client may switch
            await ws.send_message("5")
            await ws.send_message('421["joinNotification"]')
            assert str(await ws.get_message()).startswith('431[{"room":')
            stray = await live.http.get(PATH, params=session._params())
            assert stray.status_code == 400
            assert "upgraded to websocket" in stray.json()["error"]["message"]
            await ws.send_message('422["joinNotification"]')  # the session lives on
            assert str(await ws.get_message()).startswith('432[{"room":')


async def test_a_bug_handling_a_websocket_packet_ends_only_its_session(
    live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A packet the websocket's reader handles itself fails as one the dispatcher handles: the
    session ends with its crash logged, and the server carries on."""

    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("api._sio_namespace.ChatSocket.on_event", broken)
    url = live.url.replace("http://", "ws://") + PATH + "?EIO=4&transport=websocket"
    token = await live.customer_token("shop-customer-1")
    with trio.fail_after(WAIT_SECONDS):
        async with open_websocket_url(url) as ws:
            await ws.get_message()
            await ws.send_message("40" + json.dumps({"token": token}))
            assert str(await ws.get_message()).startswith('40{"sid":')
            await ws.send_message('42["joinNotification",{}]')
            with pytest.raises(ConnectionClosed):
                await read_until_closed(ws)
    assert "crashed" in caplog.text
    assert (await live.http.get("/dev/test")).status_code == 200


async def read_until_closed(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()
