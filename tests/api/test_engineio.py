"""Engine.IO v4 / Socket.IO v5 codecs and one session's state machine, without sockets: packets
in, packets out, a clock the test moves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api._engineio import (
    AckPacket,
    ClosePacket,
    ConnectErrorPacket,
    ConnectPacket,
    DisconnectPacket,
    EngineConfig,
    EngineSession,
    EventPacket,
    MessagePacket,
    NoopPacket,
    OpenPacket,
    Packet,
    PingPacket,
    PongPacket,
    ProtocolError,
    RawJson,
    Transport,
    UpgradePacket,
    decode_packet,
    decode_payload,
    decode_sio,
    encode_packet,
    encode_payload,
    encode_sio,
)

# --- Engine.IO codec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "frame"),
    [
        (OpenPacket('{"sid":"s"}'), '0{"sid":"s"}'),
        (ClosePacket(), "1"),
        (PingPacket(), "2"),
        (PingPacket("probe"), "2probe"),
        (PongPacket("probe"), "3probe"),
        (MessagePacket("hello"), "4hello"),
        (UpgradePacket(), "5"),
        (NoopPacket(), "6"),
        (MessagePacket(b"\x01\x02"), b"\x01\x02"),
    ],
)
def test_websocket_frames(packet: Packet, frame: str | bytes) -> None:
    assert encode_packet(packet) == frame
    if not isinstance(packet, OpenPacket):
        assert decode_packet(frame) == packet


def test_polling_payload_joins_packets_with_the_record_separator_and_base64s_binary() -> None:
    packets: list[Packet] = [
        MessagePacket("a"),
        MessagePacket(b"\x01\x02"),
        PingPacket(),
        MessagePacket("é"),
    ]
    body = encode_payload(packets)
    assert body == "4a\x1ebAQI=\x1e2\x1e4é"
    assert decode_payload(body.replace("\x1e2\x1e", "\x1e3\x1e"), max_packets=10) == [
        MessagePacket("a"),
        MessagePacket(b"\x01\x02"),
        PongPacket(),
        MessagePacket("é"),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "empty Engine.IO packet"),
        ("4a\x1e", "empty Engine.IO packet"),
        ("9", "unknown Engine.IO packet type '9'"),
        ("x4", "unknown Engine.IO packet type 'x'"),
        ('0{"sid":"s"}', "clients do not send open"),
        ("b!!not-base64", "not valid base64"),
        ("\x1e".join(["3"] * 5), "at most 4 packets per request, got 5"),
    ],
)
def test_malformed_polling_bodies_are_refused_with_the_reason(body: str, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode_payload(body, max_packets=4)


# --- Socket.IO codec -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "text"),
    [
        (ConnectPacket(data={"sid": "abc"}), '0{"sid":"abc"}'),
        (ConnectPacket("/admin", {"sid": "abc"}), '0/admin,{"sid":"abc"}'),
        (DisconnectPacket(), "1"),
        (DisconnectPacket("/admin"), "1/admin,"),
        (EventPacket("hello", (1, "two", {"x": None})), '2["hello",1,"two",{"x":null}]'),
        (EventPacket("hello", (), ack_id=12, namespace="/admin"), '2/admin,12["hello"]'),
        (AckPacket(3, ({"ok": True},)), '33[{"ok":true}]'),
        (ConnectErrorPacket("not authorized"), '4{"message":"not authorized"}'),
        (EventPacket("say", ("héllo ✓",)), '2["say","héllo ✓"]'),
        (EventPacket("m", (RawJson('{"already":"json"}'),)), '2["m",{"already":"json"}]'),
    ],
)
def test_socketio_encoding(packet: Any, text: str) -> None:
    assert encode_sio(packet) == text


@pytest.mark.parametrize(
    ("text", "packet"),
    [
        ("0", ConnectPacket()),
        ('0{"token":"t"}', ConnectPacket(data={"token": "t"})),
        ('0/admin,{"token":"t"}', ConnectPacket("/admin", {"token": "t"})),
        ("0/admin,", ConnectPacket("/admin")),
        ("1", DisconnectPacket()),
        ('2["joinChat",{"chatId":"c"}]', EventPacket("joinChat", ({"chatId": "c"},))),
        ('27["sendMessage"]', EventPacket("sendMessage", ack_id=7)),
        ('2/admin,13["a",[1]]', EventPacket("a", ([1],), ack_id=13, namespace="/admin")),
        ("31[]", AckPacket(1)),
        ('31["x",2]', AckPacket(1, ("x", 2))),
    ],
)
def test_socketio_decoding(text: str, packet: Any) -> None:
    assert decode_sio(text) == packet


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "starts with its type digit"),
        ("x", "starts with its type digit"),
        ("٣", "starts with its type digit"),  # a digit to str.isdigit, not to the protocol
        ("9", "unknown Socket.IO packet type 9"),
        ("2", "an EVENT payload is a JSON array"),
        ("2{}", "an EVENT payload is a JSON array"),
        ("2[]", "an EVENT payload is a JSON array"),
        ("2[1]", "an EVENT payload is a JSON array"),
        ('2["unterminated"', "not valid JSON"),
        ("0[1]", "CONNECT payload"),
        ('3["no ack id"]', "an ACK has an ack id"),
        ("31{}", "an ACK has an ack id"),
        ('4{"message":"x"}', "clients do not send CONNECT_ERROR"),
        ('51-["up",{"_placeholder":true,"num":0}]', "binary attachments are not supported"),
        ('61-[{"_placeholder":true,"num":0}]', "binary attachments are not supported"),
        ("2" + "1" * 16 + '["a"]', "at most 15 digits"),
        ("2" + "[" * 100_000, "nests at most 32 levels deep"),
        ("2" + "[" * 33 + "]" * 33, "nests at most 32 levels deep"),
    ],
)
def test_malformed_socketio_packets_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode_sio(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    name=st.text(min_size=1, max_size=10),
    args=st.lists(json_values, max_size=3),
    ack_id=st.none() | st.integers(0, 10**15 - 1),
    namespace=st.sampled_from(["/", "/admin", "/a-b"]),
)
def test_events_survive_a_round_trip(
    name: str, args: list[Any], ack_id: int | None, namespace: str
) -> None:
    event = EventPacket(name, tuple(args), ack_id, namespace)
    assert decode_sio(encode_sio(event)) == event


# --- one session -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


CONFIG = EngineConfig(ping_interval=25.0, ping_timeout=20.0, max_buffered=100)


def session(transport: Transport = Transport.POLLING) -> tuple[EngineSession, Clock, Wakes]:
    clock, wakes = Clock(), Wakes()
    return EngineSession("sid", transport, CONFIG, clock=clock, wake=wakes), clock, wakes


def test_the_handshake_states_the_timing_in_milliseconds() -> None:
    opened = CONFIG.handshake("abc", ["websocket"])
    assert json.loads(opened.data) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 65536,
    }


def test_a_poll_gets_what_was_buffered_and_the_writes_are_reported() -> None:
    engine, _, wakes = session()
    written: list[str] = []
    engine.start_poll()
    assert not engine.ready()
    engine.send(MessagePacket("a"), lambda: written.append("a"))
    engine.send(MessagePacket("b"))
    assert engine.ready()
    assert wakes.count == 2
    packets, done = engine.finish_poll()
    assert packets == [MessagePacket("a"), MessagePacket("b")]
    assert written == []  # the edge calls them once the response is written
    for callback in done:
        callback()
    assert written == ["a"]
    assert engine.drained


def test_a_poll_that_goes_away_leaves_the_packets_for_the_next() -> None:
    engine, _, _ = session()
    engine.start_poll()
    engine.send(MessagePacket("kept"))
    engine.cancel_poll()
    engine.start_poll()
    assert engine.finish_poll()[0] == [MessagePacket("kept")]


def test_overlapping_polls_and_posts_break_the_protocol() -> None:
    engine, _, _ = session()
    engine.start_poll()
    with pytest.raises(ProtocolError, match="overlapping polls"):
        engine.start_poll()
    engine.start_post()
    with pytest.raises(ProtocolError, match="overlapping POSTs"):
        engine.start_post()
    engine.finish_post()
    engine.start_post()


def test_the_buffer_has_room_until_its_bound_and_again_once_taken() -> None:
    engine, _, wakes = session()
    engine.send(MessagePacket("x" * 60))
    assert engine.has_room
    engine.send(MessagePacket("y" * 60))
    assert not engine.has_room
    before = wakes.count
    engine.take()
    assert engine.has_room
    assert wakes.count == before + 1  # whoever waits for room hears of it


def test_the_server_pings_and_closes_a_client_that_stops_answering() -> None:
    engine, clock, _ = session()
    assert engine.deadline() == 25.0
    clock.now = 24.9
    engine.tick()
    assert engine.drained
    clock.now = 25.0
    engine.tick()
    assert engine.take()[0] == [PingPacket()]
    assert engine.deadline() == 45.0
    clock.now = 30.0
    assert engine.receive(PongPacket()) is None
    assert engine.deadline() == 55.0
    clock.now = 55.0
    engine.tick()
    assert engine.take()[0] == [PingPacket()]
    clock.now = 74.9
    engine.tick()
    assert engine.closed is None
    clock.now = 75.0
    engine.tick()
    assert engine.closed == "ping timeout: no pong within pingTimeout"
    assert engine.take()[0] == [ClosePacket()]


def test_messages_are_handed_over_and_a_client_close_is_not_answered() -> None:
    engine, _, _ = session()
    assert engine.receive(MessagePacket('40{"token":"t"}')) == '40{"token":"t"}'
    assert engine.receive(MessagePacket(b"\x00")) == b"\x00"
    assert engine.receive(NoopPacket()) is None
    engine.receive(ClosePacket())
    assert engine.closed == "the client closed the session"
    assert engine.drained
    engine.send(MessagePacket("too late"))
    assert engine.drained


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (PingPacket(), "clients answer pings"),
        (UpgradePacket(), "upgrade \\(5\\) is sent on the new websocket"),
        (OpenPacket("{}"), "clients do not send open"),
    ],
)
def test_packets_a_client_may_not_send_on_its_transport(packet: Packet, problem: str) -> None:
    engine, _, _ = session()
    with pytest.raises(ProtocolError, match=problem):
        engine.receive(packet)


def test_a_server_close_follows_what_is_buffered_once() -> None:
    engine, _, wakes = session()
    engine.send(MessagePacket("last words"))
    engine.close("shutting down")
    engine.close("again")
    assert engine.closed == "shutting down"
    assert engine.ready()
    assert engine.take()[0] == [MessagePacket("last words"), ClosePacket()]
    assert wakes.count >= 2
    with pytest.raises(ProtocolError, match="closed"):
        engine.start_poll()


def test_the_upgrade_probes_then_moves_the_buffer_to_the_websocket() -> None:
    engine, _, _ = session()
    engine.start_poll()
    engine.start_upgrade()
    assert not engine.ready()  # probing: the poll waits as usual
    assert engine.probe(PingPacket("probe")) == PongPacket("probe")
    assert engine.ready()  # probed: the pending poll answers at once ...
    assert engine.finish_poll()[0] == [NoopPacket()]  # ... with a noop, so the client can pause
    engine.send(MessagePacket("for the websocket"))
    assert engine.probe(UpgradePacket()) is None
    assert engine.transport is Transport.WEBSOCKET
    assert engine.take()[0] == [MessagePacket("for the websocket")]
    with pytest.raises(ProtocolError, match="upgraded to websocket"):
        engine.start_poll()
    with pytest.raises(ProtocolError, match="upgraded to websocket"):
        engine.start_post()


def test_a_broken_probe_leaves_the_session_on_polling() -> None:
    engine, _, _ = session()
    engine.start_upgrade()
    with pytest.raises(ProtocolError, match="already in progress"):
        engine.start_upgrade()
    with pytest.raises(ProtocolError, match="unexpected upgrade while upgrading"):
        engine.probe(UpgradePacket())  # 5 before 2probe
    engine.abandon_upgrade()
    assert engine.transport is Transport.POLLING
    engine.start_upgrade()  # another attempt is allowed
    assert engine.probe(PingPacket("probe")) == PongPacket("probe")
    with pytest.raises(ProtocolError, match="unexpected message while upgrading"):
        engine.probe(MessagePacket("data before 5"))
    engine.abandon_upgrade()
    engine.start_poll()
    engine.send(MessagePacket("still polling"))
    assert engine.finish_poll()[0] == [MessagePacket("still polling")]


def test_a_websocket_session_cannot_be_upgraded() -> None:
    engine, _, _ = session(Transport.WEBSOCKET)
    with pytest.raises(ProtocolError, match="upgraded to websocket"):
        engine.start_upgrade()
