"""The websocket's limits and bad input, end to end: refusals before accept, oversized frames,
garbage, floods, slow readers, strangers to a chat, pings, and 4401 on expiry and sign-out.

Rules: a real Hypercorn on 127.0.0.1 and real clients (trio-websocket; raw wsproto where the
client library hides what is checked); every wait is bounded and waits for a frame, a close or a
handshake answer, never for time to pass; every refusal is checked for changing nothing.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, RejectConnection, Request

from api._auth import LEEWAY_SECONDS
from api._deadlines import deadlines
from api._ws import JsonEdge
from tests.conftest import TEST_CUSTOMER_SECRET, Live, make_settings, running_server
from tests.e2e.wsclient import WAIT_SECONDS, connect, open_chat, ready_agent, say, ws_url

ANN = "ann@switchboard.example"
BOB = "bob@switchboard.example"
USER = "uma@switchboard.example"


async def rejected(live: Live, **how: Any) -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as refused:
        async with connect(live, **how):
            pass
    return refused.value


def error_body(refusal: ConnectionRejected) -> dict[str, Any]:
    assert refusal.body is not None
    body: dict[str, Any] = json.loads(refusal.body)
    assert set(body["error"]) == {"code", "message", "details"}
    return body


# --- before accept -------------------------------------------------------------------------------


async def test_refused_before_accept_without_a_good_token(live: Live) -> None:
    missing = await rejected(live, token=None)
    assert missing.status_code == 401
    assert "bearer" in error_body(missing)["error"]["message"]
    for bad in ("not.a.jwt", "x" * 5000):
        refusal = await rejected(live, token=bad)
        assert refusal.status_code == 401
        assert error_body(refusal)["error"]["code"] == "unauthorized"
    wrong_scheme = await rejected(live, token=None, headers=[(b"Authorization", b"Basic abc")])
    assert wrong_scheme.status_code == 401
    only_bearer = await rejected(live, token=None, subprotocols=["bearer"])
    assert only_bearer.status_code == 401


async def test_refused_before_accept_for_a_plain_user(live: Live) -> None:
    refusal = await rejected(live, token=await live.login(USER))
    assert refusal.status_code == 403
    assert error_body(refusal)["error"]["code"] == "forbidden"


async def test_foreign_origin_refused_listed_origin_accepted(tmp_path: Path) -> None:
    shop = "https://shop.example"
    async with running_server(make_settings(tmp_path, allowed_origins=[shop])) as live:
        token = await live.customer_token("shop-customer-1")
        foreign = await rejected(live, token=token, headers=[(b"Origin", b"https://evil.example")])
        assert foreign.status_code == 403
        assert error_body(foreign)["error"]["code"] == "origin_not_allowed"
        async with connect(live, token, headers=[(b"Origin", shop.encode())]) as client:
            await client.ping()


async def test_browser_form_token_in_subprotocol_is_echoed_as_bearer(live: Live) -> None:
    token = await live.customer_token("shop-customer-1")
    async with connect(live, None, subprotocols=["bearer", token]) as client:
        assert client.conn.subprotocol == "bearer"
        await client.ping()


# --- frames --------------------------------------------------------------------------------------


async def test_frames_over_the_size_limit_close_with_1009(live: Live) -> None:
    token = await live.customer_token("shop-customer-1")
    limit = live.services.settings.ws_max_frame_bytes
    async with connect(live, token) as client:
        await client.send_raw(json.dumps({"type": "ping", "pad": "x" * limit}))
        assert (await client.closed()).code == 1009
    # Under the limit in characters, over it in bytes: still too big.
    async with connect(live, token) as client:
        await client.send_raw("€" * (limit // 3 + 1))
        assert (await client.closed()).code == 1009


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_frame", None),
        ('{"chatId": "c"}', "invalid_frame", None),
        ('{"type": "launch.rockets"}', "unknown_type", "launch.rockets"),
        ('{"type": 7}', "unknown_type", None),
        ('{"type": "typing", "chatId": "c", "on": "maybe"}', "invalid_frame", "typing"),
        ('{"type": "read", "chatId": "c", "seq": -1}', "invalid_frame", "read"),
        ('{"type": "resume", "chatId": "", "afterSeq": 0}', "invalid_frame", "resume"),
        (
            '{"type": "message.send", "chatId": "c", "clientMsgId": "m1", "content": 5}',
            "invalid_frame",
            "m1",
        ),
        ('{"type": "message.send", "chatId": "c", "clientMsgId": "m2"}', "invalid_frame", "m2"),
        ('{"type": "ping", "extra": 1}', "invalid_frame", "ping"),
        (b"\x00\x01binary", "invalid_frame", None),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    live: Live, frame: str | bytes, code: str, ref: str | None
) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.send_raw(frame)
        error = await client.expect("error")
        assert (error["code"], error["ref"]) == (code, ref)
        assert error["message"]
        await client.ping()
    assert await live.services.store.count_chats() == 0


async def test_a_client_msg_id_outside_printable_ascii_gets_an_error_and_stores_nothing(
    live: Live,
) -> None:
    """REST's rule (a key that fits an Idempotency-Key header): the same key serves a message
    on either path, so a /ws frame with a space, a control or a non-ASCII character is refused."""
    async with (
        connect(live, await live.login(ANN)) as ann,
        connect(live, await live.customer_token("shop-customer-1")) as customer,
    ):
        await ready_agent(live, ann)
        chat_id = (await open_chat(customer))["id"]
        for bad in ("two words", "tab\there", "bell\x07", "caf\u00e9", "nul\x00"):
            refused = await customer.request(
                {"type": "message.send", "chatId": chat_id, "clientMsgId": bad, "content": "hi"},
                "error",
            )
            assert (refused["code"], refused["ref"]) == ("invalid_frame", bad)
            assert "clientMsgId" in refused["message"]
        acked = await say(customer, chat_id, "c-1", "the first message stored")
        assert acked["seq"] == 1
        await ann.expect("message", chatId=chat_id)
        await ann.ping()
    stored = await live.services.store.list_messages(chat_id, after_seq=0, limit=10)
    assert [(m.seq, m.client_msg_id) for m in stored] == [(1, "c-1")]
    assert [frame["seq"] for frame in ann.of_type("message")] == [1]


async def test_frames_a_role_may_not_send_get_forbidden(live: Live) -> None:
    async with (
        connect(live, await live.customer_token("shop-customer-1")) as customer,
        connect(live, await live.login(ANN)) as agent,
    ):
        refused = await customer.request({"type": "status.set", "status": "available"}, "error")
        assert (refused["code"], refused["ref"]) == ("forbidden", "status.set")
        refused = await agent.request({"type": "chat.open"}, "error")
        assert (refused["code"], refused["ref"]) == ("forbidden", "chat.open")
    assert await live.services.store.count_chats() == 0


async def test_a_flood_gets_an_error_then_close_1008(tmp_path: Path) -> None:
    async with (
        running_server(
            make_settings(tmp_path, ws_max_frames_per_second=5, ws_frame_burst=5)
        ) as live,
        connect(live, await live.customer_token("shop-customer-1")) as client,
    ):
        for _ in range(10):
            try:
                await client.send({"type": "ping"})
            except ConnectionClosed:
                break  # the close may come before the last of the burst is sent
        error = await client.expect("error")
        assert error["code"] == "rate_limited"
        assert (await client.closed()).code == 1008
        assert len(client.of_type("pong")) == 5


async def test_a_slow_reader_is_closed_with_1013_without_slowing_the_others(
    tmp_path: Path,
) -> None:
    async with running_server(make_settings(tmp_path, ws_outbox_frames=8)) as live:
        ann_token = await live.login(ANN)
        async with (
            connect(live, ann_token) as agent,
            connect(live, ann_token) as other_tab,
            # Its library stops reading the socket once one message waits: a slow reader.
            connect(live, await live.customer_token("shop-customer-1"), message_queue_size=1)
            as slow,
        ):  # fmt: skip
            await ready_agent(live, agent)
            chat = await open_chat(slow)
            customer_id = chat["customer"]
            sent = 0
            # Large messages fill the socket buffers, then the slow reader's outbox.
            while live.services.system.connections(customer_id):
                sent += 1
                assert sent <= 500, "the slow reader was never cut off"
                await say(agent, chat["id"], f"a{sent}", "x" * 15_000)
            # Cut off while everyone else was served at once: each message was acknowledged
            # and every one reached the agent's other tab, in order.
            await other_tab.expect("message", seq=sent)
            seqs = [frame["seq"] for frame in other_tab.of_type("message")]
            assert seqs == list(range(1, sent + 1))
            closed = await slow.closed()
            assert closed.code == 1013
            assert len(slow.of_type("message")) < sent


async def test_strangers_to_a_chat_are_refused_and_nothing_is_stored(live: Live) -> None:
    async with (
        connect(live, await live.login(ANN)) as ann,
        connect(live, await live.login(BOB)) as bob,
        connect(live, await live.customer_token("shop-customer-1")) as owner,
        connect(live, await live.customer_token("shop-customer-2")) as stranger,
    ):
        await ready_agent(live, ann)
        chat = await open_chat(owner)
        chat_id = chat["id"]
        for intruder in (bob, stranger):
            refused = await intruder.request(
                {"type": "message.send", "chatId": chat_id, "clientMsgId": "m", "content": "hi"},
                "error",
            )
            assert (refused["code"], refused["ref"]) == ("chat_not_found", "m")
            for frame in (
                {"type": "typing", "chatId": chat_id, "on": True},
                {"type": "read", "chatId": chat_id, "seq": 1},
            ):
                refused = await intruder.request(frame, "error")
                assert (refused["code"], refused["ref"]) == ("chat_not_found", frame["type"])
            resumed = await intruder.request(
                {"type": "resume", "chatId": chat_id, "afterSeq": 0}, "resumed"
            )
            assert (resumed["recovered"], resumed["reason"]) == (False, "chat_not_found")
        unknown = await stranger.request(
            {"type": "message.send", "chatId": "0" * 24, "clientMsgId": "u", "content": "hi"},
            "error",
        )
        assert unknown["code"] == "chat_not_found"
        await ann.ping()
        await owner.ping()
        assert await live.services.store.list_messages(chat_id, after_seq=0, limit=10) == []
        assert not ann.of_type("typing")
        assert not owner.of_type("message")


async def test_the_server_pings(tmp_path: Path) -> None:
    async with running_server(make_settings(tmp_path, ws_ping_interval_seconds=0.05)) as live:
        token = await live.customer_token("shop-customer-1")
        url = urlsplit(ws_url(live))
        assert url.hostname is not None
        assert url.port is not None
        client = WSConnection(ConnectionType.CLIENT)
        pings = 0
        with trio.fail_after(WAIT_SECONDS):
            stream = await trio.open_tcp_stream(url.hostname, url.port)
            async with stream:
                request = Request(
                    host=url.netloc,
                    target="/ws",
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                )
                await stream.send_all(client.send(request))
                while pings < 3:
                    client.receive_data(await stream.receive_some())
                    for event in client.events():
                        assert not isinstance(event, RejectConnection)
                        if isinstance(event, Ping):
                            pings += 1
                            await stream.send_all(client.send(event.response()))
                        else:
                            assert isinstance(event, AcceptConnection)
        assert pings == 3


# --- 4401 ----------------------------------------------------------------------------------------


async def test_a_socket_closes_with_4401_when_its_token_expires(live: Live) -> None:
    now = int(time.time())
    # Authentication allows LEEWAY_SECONDS of clock skew past exp; so does the socket.
    token = jwt.encode(
        {"sub": "shop-customer-1", "iat": now - 60, "exp": now - LEEWAY_SECONDS + 2},
        TEST_CUSTOMER_SECRET,
        algorithm="HS256",
    )
    async with connect(live, token) as client:
        await client.ping()
        closed = await client.closed()
        assert (closed.code, closed.reason) == (4401, "token expired; sign in again")


def _on_the_clock(edge: JsonEdge) -> bool:
    """Whether the shared deadlines clock still holds the edge's token expiry."""
    return any(getattr(entry[2], "__self__", None) is edge for entry in deadlines()._heap)


async def test_the_expiry_clock_closes_the_expired_socket_and_leaves_the_live_one(
    live: Live,
) -> None:
    now = int(time.time())
    expiring_token = jwt.encode(
        {"sub": "shop-customer-1", "iat": now - 60, "exp": now - LEEWAY_SECONDS + 2},
        TEST_CUSTOMER_SECRET,
        algorithm="HS256",
    )
    async with (
        connect(live, expiring_token) as expiring,
        connect(live, await live.customer_token("shop-customer-2")) as staying,
    ):
        await expiring.ping()
        await staying.ping()
        edges = [each for each in gc.get_objects() if type(each) is JsonEdge]
        assert len(edges) == 2
        assert all(_on_the_clock(edge) for edge in edges)
        closed = await expiring.closed()
        assert (closed.code, closed.reason) == (4401, "token expired; sign in again")
        await staying.ping()
        await trio.testing.wait_all_tasks_blocked()
        (ended,) = [edge for edge in edges if edge.closing is not None]
        (live_edge,) = [edge for edge in edges if edge.closing is None]
        assert not _on_the_clock(ended)
        assert _on_the_clock(live_edge)


async def test_a_socket_that_goes_away_is_forgotten_by_the_expiry_clock(live: Live) -> None:
    async with connect(live, await live.customer_token("shop-customer-1")) as client:
        await client.ping()
        (edge,) = [each for each in gc.get_objects() if type(each) is JsonEdge]
        assert _on_the_clock(edge)
    # The client closed; the connection's end has run once every task is waiting again.
    await trio.testing.wait_all_tasks_blocked()
    assert not _on_the_clock(edge)
    assert live.services.system.connections(edge.session.user_id) == 0


async def test_signing_out_closes_the_sockets_of_that_token_only(live: Live) -> None:
    first, second = await live.login(ANN), await live.login(ANN)
    customer_token = await live.customer_token("shop-customer-1")
    async with (
        connect(live, first) as signed_out,
        connect(live, second) as still_in,
        connect(live, customer_token) as customer,
    ):
        await signed_out.ping()
        response = await live.http.post(
            "/auth/logout", headers={"Authorization": f"Bearer {first}"}
        )
        assert response.status_code == 200
        assert (await signed_out.closed()).code == 4401
        await still_in.ping()
        # A shop token without a jti: its sockets are found by the token itself.
        response = await live.http.post(
            "/auth/logout", headers={"Authorization": f"Bearer {customer_token}"}
        )
        assert response.status_code == 200
        assert (await customer.closed()).code == 4401
        await still_in.ping()
    refusal = await rejected(live, token=first)
    assert refusal.status_code == 401


async def test_demoted_or_deleted_users_sockets_close_with_4401(live: Live) -> None:
    token = await live.login(ANN)
    async with connect(live, token) as tab1, connect(live, token) as tab2:
        await tab1.ping()
        await tab2.ping()
        user = await live.services.store.get_user_by_email(ANN)
        assert user is not None
        assert live.services.system.sign_out(user.id, "demoted by an admin") == 2
        for tab in (tab1, tab2):
            closed = await tab.closed()
            assert (closed.code, closed.reason) == (4401, "demoted by an admin")
        assert live.services.system.connections(user.id) == 0
