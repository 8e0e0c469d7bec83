"""Structured logs: the lines an operator gets from a real server (HTTP requests, websocket and
Socket.IO connects and closes with their codes, routing decisions, limits), and what never
appears in them: a password, a token, a message's words."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from api import DEMO_PASSWORD
from telemetry import event, redact_url
from tests.conftest import Live, make_settings, running_server
from tests.e2e.wsclient import connect, open_chat, ready_agent, say
from tests.ops.conftest import Logs
from tests.sio.test_protocol import Polling

ANN = "ann@switchboard.example"
NEW_PASSWORD = "correct-horse-battery-staple-17"
WRONG_PASSWORD = "tr0ub4dor-and-3-more-words"
WORDS = (
    "my card number is 4417 1234 9988 0000",
    "please read it back to me slowly",
    "the parcel has a green ribbon",
    "socket io says the gate code is 7731",
)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJlLW9mLW5vYm9keQ"


async def _bearer(live: Live, email: str, password: str = DEMO_PASSWORD) -> str:
    return await live.login(email, password)


async def test_a_day_at_the_desk_logs_what_happened_and_no_secret(
    tmp_path: Path, json_logs: Logs
) -> None:
    tokens: list[str] = []
    async with running_server(make_settings(tmp_path)) as live:
        http = live.http
        registered = await http.post(
            "/auth/register",
            json={
                "name": "Nia New",
                "email": "nia@shop.example",
                "password": NEW_PASSWORD,
                "confirmedPassword": NEW_PASSWORD,
            },
        )
        assert registered.status_code == 201, registered.text
        tokens.append(registered.json()["token"])
        tokens.append(await live.login("nia@shop.example", NEW_PASSWORD))
        refused = await http.post(
            "/auth/login", json={"email": "nia@shop.example", "password": WRONG_PASSWORD}
        )
        assert refused.status_code == 401
        # A careless client: a token in the query string, and a forged one in the header.
        ann_token = await _bearer(live, ANN)
        tokens.append(ann_token)
        assert (await http.get(f"/chats/agent?token={ann_token}")).status_code == 401
        assert (
            await http.get("/chats/agent", headers={"Authorization": f"Bearer {JWT}"})
        ).status_code == 401

        customer_token = await live.customer_token("shop-customer-1")
        other_customer = await live.customer_token("shop-customer-2")
        tokens += [customer_token, other_customer]
        async with connect(live, ann_token) as agent:
            await ready_agent(live, agent)
            async with connect(live, None, subprotocols=["bearer", customer_token]) as customer:
                chat = await open_chat(customer, "Where is my parcel?")
                await agent.expect("chat.assigned")
                await say(customer, chat["id"], "c1", WORDS[0])
                await agent.expect("message", chatId=chat["id"])
                await say(agent, chat["id"], "a1", WORDS[1])
                sent = await http.post(
                    "/messages/customer/send",
                    headers={"Authorization": f"Bearer {customer_token}"},
                    json={"chatId": chat["id"], "content": WORDS[2], "clientMsgId": "c2"},
                )
                assert sent.status_code == 201, sent.text
                # A Socket.IO customer of the same shop, over raw long-polling.
                opened = await http.post(
                    "/chats/customer",
                    headers={"Authorization": f"Bearer {other_customer}"},
                    json={},
                )
                session, _ = await Polling.open(live)
                await session.connect(other_customer)
                body = {"chatId": opened.json()["id"], "content": WORDS[3]}
                await session.post("421" + json.dumps(["sendMessage", body]))
                await session.until_prefix("431")
                await session.post("41")
            await agent.ping()
        await json_logs.wait_for("socketio.close")  # the session ends in its own task

    text = json_logs.text
    for secret in (NEW_PASSWORD, WRONG_PASSWORD, DEMO_PASSWORD, JWT, *tokens, *WORDS):
        assert secret not in text, f"{secret!r} is in the logs"
    for word in ("4417", "ribbon", "7731"):
        # As a word of its own: record ids are hex, and one may hold "7731" by chance.
        assert not re.search(rf"(?<![0-9a-z]){word}(?![0-9a-z])", text), f"{word!r} is logged"

    requests = json_logs.events("http.request")
    assert {"method": "POST", "route": "/auth/login", "status": 401} in [
        {key: r[key] for key in ("method", "route", "status")} for r in requests
    ]
    signed_in = [r for r in requests if r["route"] == "/chats/agent"]
    assert all(r["principal"] is None and r["status"] == 401 for r in signed_in)
    assert all(r["client"] == "127.0.0.1" and r["ms"] >= 0 for r in requests)
    sent_by_rest = json_logs.events("http.request", route="/messages/customer/send")
    assert sent_by_rest[0]["principal"] is not None

    connects = json_logs.events("ws.connect")
    assert sorted(r["role"] for r in connects) == ["agent", "customer"]
    closes = json_logs.events("ws.close")
    assert sorted(r["role"] for r in closes) == ["agent", "customer"]
    assert all(r["code"] == 1000 and r["reason"] == "closed by the client" for r in closes)
    assert all(r["seconds"] > 0 for r in closes)
    assert json_logs.events("socketio.connect", role="customer", transport="polling")
    assert json_logs.events("socketio.close", role="customer", code="client")
    assigned = json_logs.events("chat.assigned", chat=chat["id"], category="new")
    assert assigned
    assert assigned[0]["reason"].startswith("least loaded")


async def test_a_close_is_logged_with_its_code_and_reason(tmp_path: Path, json_logs: Logs) -> None:
    settings = make_settings(tmp_path, ws_max_frame_bytes=1024)
    async with running_server(settings) as live, connect(live, await _bearer(live, ANN)) as agent:
        await agent.send_raw("x" * 2000)
        assert (await agent.closed()).code == 1009
        (closed,) = await json_logs.wait_for("ws.close")
        assert closed["code"] == 1009  # hypercorn's cut, which the app only hears of
        assert closed["reason"].startswith("closed by the HTTP server")
        (too_big,) = json_logs.events("limit", limit="frame_size")
        assert too_big["principal"] == closed["principal"]
        # Over the limit in bytes but not in characters: the app's own cut, with its reason.
        async with connect(live, await _bearer(live, ANN)) as again:
            await again.send_raw("é" * 600)
            assert (await again.closed()).code == 1009
            await json_logs.wait_for("ws.close", reason="frames are limited to 1024 bytes")


def test_text_lines_are_one_per_record_with_fields_and_no_secrets(text_logs: Logs) -> None:
    log = logging.getLogger("api.test")
    event(log, "http.request", method="GET", route="/chats", status=200, ms=1.25, principal=None)
    event(log, "login", password="hunter2", token="abc", note=f"header Bearer {JWT} sent")
    event(log, "server.started", store="mongodb://switchboard:hunter3@db.example.net/switchboard")
    log.warning("plain message with %s inside", JWT)
    try:
        raise ValueError(f"a failure quoting {JWT}")
    except ValueError:
        log.exception("it failed")
    lines = text_logs.text.splitlines()
    assert lines[0].endswith(
        "INFO  api.test http.request method=GET route=/chats status=200 ms=1.25 principal=-"
    )
    assert lines[1].endswith(
        'login password=[redacted] token=[redacted] note="header [redacted] sent"'
    )
    assert lines[2].endswith(
        "server.started store=mongodb://switchboard:[redacted]@db.example.net/switchboard"
    )
    assert lines[3].endswith("WARNING api.test plain message with [redacted] inside")
    assert "hunter3" not in text_logs.text
    assert "hunter2" not in text_logs.text
    assert JWT not in text_logs.text
    assert "ValueError: a failure quoting [redacted]" in text_logs.text


def test_a_url_is_named_without_its_password_or_options() -> None:
    """What the store and the bus say their server is, in messages and logs."""
    assert redact_url("mongodb://switchboard:s3cret@db.example.net:27017/switchboard?tls=true") == (
        "mongodb://switchboard@db.example.net:27017/switchboard"
    )
    assert (
        redact_url("rediss://:s3cret@bus.example.net:6380/0") == "rediss://bus.example.net:6380/0"
    )
    assert redact_url("mongodb://a:b@one,two/db?authMechanismProperties=AWS_SESSION_TOKEN:x") == (
        "mongodb://a@one,two/db"
    )
    assert redact_url("sqlite:///var/lib/switchboard.db") == "sqlite:///var/lib/switchboard.db"


def test_json_lines_parse_and_keep_types(json_logs: Logs) -> None:
    log = logging.getLogger("actors.test")
    event(log, "chat.assigned", level=logging.WARNING, chat="c1", ready=True, count=3, content="hi")
    log.info("plain %d", 7)
    first, second = json_logs.records()
    assert first["level"] == "warning"
    assert first["logger"] == "actors.test"
    assert (first["event"], first["chat"], first["ready"], first["count"]) == (
        "chat.assigned",
        "c1",
        True,
        3,
    )
    assert first["content"] == "[redacted]"
    assert first["time"].endswith("Z")
    assert second["message"] == "plain 7"
    assert "event" not in second


def test_the_level_setting_silences_our_detail_and_libraries_stay_at_warning() -> None:
    from telemetry import configure_logging

    handler = configure_logging("warning", "text")
    try:
        assert not logging.getLogger("api.http").isEnabledFor(logging.INFO)
        assert logging.getLogger("store").isEnabledFor(logging.WARNING)
    finally:
        logging.getLogger().removeHandler(handler)
    handler = configure_logging("debug", "text")
    try:
        assert logging.getLogger("actors.routing").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("trio-websocket").isEnabledFor(logging.INFO)
    finally:
        logging.getLogger().removeHandler(handler)


async def test_a_limit_hit_is_a_warning_line_and_a_count(live: Live, json_logs: Logs) -> None:
    too_big = {"email": "x@shop.example", "password": "p" * 70_000}
    assert (await live.http.post("/auth/login", json=too_big)).status_code == 413
    (hit,) = json_logs.events("limit", limit="body_size")
    assert hit["level"] == "warning"
    assert hit["max_bytes"] == 65536
    assert "p" * 100 not in json_logs.text
    metrics = (await live.http.get("/metrics")).text
    assert 'switchboard_limit_events_total{limit="body_size"}' in metrics


async def test_behind_a_trusted_proxy_every_line_names_the_forwarded_client(
    tmp_path: Path, json_logs: Logs
) -> None:
    """The request log, /ws and Socket.IO connect lines name the client the trusted proxy
    (here 127.0.0.1, the tests' own address) forwards for, and nobody else's header counts."""
    settings = make_settings(tmp_path, trusted_proxies=["127.0.0.1"])
    async with running_server(settings) as live:
        forwarded = {"X-Forwarded-For": "203.0.113.5, 198.51.100.7"}
        assert (await live.http.get("/dev/test", headers=forwarded)).status_code == 200
        token = await _bearer(live, ANN)
        header = [(b"X-Forwarded-For", b"198.51.100.8")]
        async with connect(live, token, headers=header) as agent:
            await agent.ping()
        customer = await live.customer_token("shop-customer-1")
        session, _ = await Polling.open(live, **{"X-Forwarded-For": "198.51.100.9"})
        await session.connect(customer)
        await session.post("41")
        await json_logs.wait_for("socketio.close")
    (request,) = json_logs.events("http.request", route="/dev/test")
    assert request["client"] == "198.51.100.7"
    (opened,) = json_logs.events("ws.connect")
    assert opened["client"] == "198.51.100.8"
    (sio,) = json_logs.events("socketio.connect")
    assert sio["client"] == "198.51.100.9"
