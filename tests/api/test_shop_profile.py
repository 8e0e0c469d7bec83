"""Customer tokens vouched for by the shop's profile endpoint (SWITCHBOARD_CUSTOMER_PROFILE_URL),
against a real HTTP shop on a loopback port: accepted, refused, shop down, slow shop, errors, and
the brief cache, over REST, the /ws handshake and a Socket.IO CONNECT.

The shop stub is a threading HTTP server; a slow answer waits on an event the test sets at the
end (bounded), never on time passing."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected

from api import Settings
from api._shop_profile import CustomerCheckUnavailable, ShopCustomer, ShopProfiles
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import connect

TIMEOUT = 0.5  # SWITCHBOARD_CUSTOMER_PROFILE_TIMEOUT_SECONDS in these tests
SLACK_SECONDS = 5.0  # scheduling on a busy machine, beyond the timeout
RELEASE_SECONDS = 30.0  # the longest a held answer is held, should the test fail first

# The shop's customers: token -> the profile it answers.
CUSTOMERS = {
    "tok-dana": {"_id": "64b7f0c2a1b2c3d4e5f60718", "username": "Dana Shopper"},
    "tok-eli": {"_id": "64b7f0c2a1b2c3d4e5f60719", "name": "Eli", "username": "eli99"},
}
# Tokens the shop answers otherwise: token -> HTTP status.
ANSWERS = {"tok-expired": 401, "tok-banned": 403, "tok-broken": 500, "tok-gone": 404}


@dataclass
class Shop:
    url: str
    calls: Counter[str] = field(default_factory=Counter)  # by the token the header carried
    headers: list[str] = field(default_factory=list)  # every `accesstoken` header received
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def shop_stub() -> Iterator[Shop]:
    shop = Shop(url="")

    class Profile(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            header = self.headers.get("accesstoken", "")
            shop.headers.append(header)
            token = header.removeprefix("accesstoken_")
            shop.calls[token] += 1
            if token == "tok-slow":
                shop.release.wait(RELEASE_SECONDS)
            if self.path != "/api/profile" or token not in (*CUSTOMERS, "tok-slow"):
                self._answer(ANSWERS.get(token, 401), {"message": "Invalid token"})
                return
            user = CUSTOMERS.get(token, {"_id": "64b7f0c2a1b2c3d4e5f6071a"})
            self._answer(200, {"message": "done", "user": user})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Profile)
    server.daemon_threads = True
    shop.url = f"http://127.0.0.1:{server.server_address[1]}/api/profile"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield shop
    finally:
        shop.release.set()
        server.shutdown()
        server.server_close()
        thread.join(RELEASE_SECONDS)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: the shop is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/profile"


def profile_settings(tmp_path: Path, url: str, **more: Any) -> Settings:
    return make_settings(
        tmp_path, customer_profile_url=url, customer_profile_timeout_seconds=TIMEOUT, **more
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_chat(live: Live, token: str) -> httpx.Response:
    return await live.http.post("/chats/customer", json={}, headers=bearer(token))


async def ws_status(live: Live, token: str) -> int:
    """The /ws handshake's answer: 101 when accepted, else the refusal's status."""
    try:
        async with connect(live, token) as client:
            await client.ping()
    except ConnectionRejected as refused:
        return refused.status_code
    return 101


async def socketio_connect(live: Live, token: str) -> str:
    """A polling session's CONNECT with the token: the server's answer packet."""
    params = {"EIO": "4", "transport": "polling"}
    opened = await live.http.get("/socket.io/", params=params)
    sid = json.loads(opened.text[1:])["sid"]
    params["sid"] = sid
    posted = await live.http.post(
        "/socket.io/", params=params, content="40" + json.dumps({"token": token})
    )
    assert posted.text == "ok"
    with trio.fail_after(10):
        polled = await live.http.get("/socket.io/", params=params)
    return polled.text.split("\x1e")[0]


async def test_the_shop_vouches_for_its_customers_and_answers_are_kept(tmp_path: Path) -> None:
    with shop_stub() as shop:
        settings = profile_settings(tmp_path, shop.url, customer_profile_cache_seconds=60)
        async with running_server(settings) as live:
            opened = await open_chat(live, "tok-dana")
            assert opened.status_code == 201, opened.text
            # The shop's id names the customer, and its `username` is their name.
            dana = await live.services.store.get_customer_by_external_id(
                CUSTOMERS["tok-dana"]["_id"]
            )
            assert dana is not None
            assert opened.json()["customer"] in (dana.id, dana.external_id)
            assert dana.name == "Dana Shopper"
            assert opened.json()["title"] == "Chat with Dana Shopper"
            assert shop.headers == ["accesstoken_tok-dana"]
            # Asked again over REST, /ws and Socket.IO: the shop was asked once.
            assert (await open_chat(live, "tok-dana")).status_code == 200
            assert await ws_status(live, "tok-dana") == 101
            assert (await socketio_connect(live, "tok-dana")).startswith("40{")
            assert shop.calls["tok-dana"] == 1
            # `name` before `username`.
            eli = await open_chat(live, "tok-eli")
            assert eli.json()["title"] == "Chat with Eli"

            for token in ("tok-expired", "tok-banned", "tok-unknown"):
                refused = await open_chat(live, token)
                assert refused.status_code == 401, refused.text
                assert refused.json()["error"]["code"] == "unauthorized"
                assert "sign in to the shop again" in refused.json()["error"]["message"]
                assert await ws_status(live, token) == 401
                assert (await socketio_connect(live, token)).startswith("44")
                assert shop.calls[token] == 1  # the refusal was kept too

            # A token no header can carry is refused without asking the shop.
            assert (await socketio_connect(live, "tok dana\n")).startswith("44")
            assert "tok dana\n" not in shop.calls

            # Signing out revokes the token here, whatever the shop would say.
            signed_out = await live.http.post("/auth/logout", headers=bearer("tok-eli"))
            assert signed_out.status_code in (200, 204), signed_out.text
            assert (await open_chat(live, "tok-eli")).status_code == 401


async def test_a_shop_that_cannot_answer_is_503_never_401(tmp_path: Path) -> None:
    with shop_stub() as shop:
        settings = profile_settings(tmp_path, shop.url)
        async with running_server(settings) as live:
            for token in ("tok-broken", "tok-gone", "tok-slow"):
                started = trio.current_time()
                answer = await open_chat(live, token)
                took = trio.current_time() - started
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "customer_check_unavailable"
                assert answer.headers["Retry-After"] == "5"
                assert took < TIMEOUT + SLACK_SECONDS
                assert await ws_status(live, token) == 503
                packet = await socketio_connect(live, token)
                assert packet.startswith("44")
                assert json.loads(packet[2:])["data"] == {"code": "customer_check_unavailable"}
            # Nothing unanswered is kept: each try asked the shop again.
            assert shop.calls["tok-broken"] == 3
            assert shop.calls["tok-slow"] == 3

    async with running_server(profile_settings(tmp_path, closed_port_url())) as live:
        answer = await open_chat(live, "tok-dana")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "customer_check_unavailable"
        assert await ws_status(live, "tok-dana") == 503
        # Staff sign in and connect as ever: only customer tokens go to the shop.
        assert await ws_status(live, await live.login("ann@switchboard.example")) == 101


# --- the checker alone (a mock transport: unit tests) ---------------------------------------------


async def test_checks_of_one_token_at_once_ask_the_shop_once_and_answers_expire() -> None:
    release, calls, now = trio.Event(), Counter[str](), [0.0]

    async def shop(request: httpx.Request) -> httpx.Response:
        token = request.headers["accesstoken"].removeprefix("accesstoken_")
        calls[token] += 1
        await release.wait()
        if token == "tok-broken":
            return httpx.Response(500)
        return httpx.Response(200, json={"user": CUSTOMERS[token]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(shop)) as client:
        profiles = ShopProfiles(
            "http://shop.test/api/profile",
            client,
            timeout_seconds=RELEASE_SECONDS,
            cache_seconds=30,
            clock=lambda: now[0],
        )
        answers: dict[str, list[object]] = {"tok-dana": [], "tok-broken": []}

        async def check(token: str) -> None:
            try:
                answers[token].append(await profiles.customer(token))
            except CustomerCheckUnavailable as unavailable:
                answers[token].append(type(unavailable))

        async with trio.open_nursery() as nursery:
            for token in answers:
                for _ in range(10):
                    nursery.start_soon(check, token)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        dana = ShopCustomer(CUSTOMERS["tok-dana"]["_id"], "Dana Shopper")
        assert answers == {"tok-dana": [dana] * 10, "tok-broken": [CustomerCheckUnavailable] * 10}
        assert calls == {"tok-dana": 1, "tok-broken": 1}
        # An answer is kept for its time, a failure not at all.
        assert await profiles.customer("tok-dana") == dana
        with pytest.raises(CustomerCheckUnavailable):
            await profiles.customer("tok-broken")
        assert calls == {"tok-dana": 1, "tok-broken": 2}
        now[0] += 30
        assert await profiles.customer("tok-dana") == dana
        assert calls["tok-dana"] == 2
