"""A client's frames read without wsproto (api/_client_frames) make exactly the events wsproto
makes of the same bytes, in the same order, however the bytes are split into reads: RFC 6455's
edge cases (fragmentation, control frames between fragments, each length form at its limits,
lengths in a longer form than needed, unmasked frames, reserved bits, bad UTF-8, close codes)."""

from __future__ import annotations

import struct

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Event, TextMessage

from api._client_frames import plain_messages, received_events

MASK = bytes((0x37, 0xFA, 0x21, 0x3D))


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    form: int | None = None,
) -> bytes:
    """A frame as a client sends it; `form` forces the length's form (125: one byte, 126: two,
    127: eight) whatever the size."""
    size = len(payload)
    if form is None:
        form = 125 if size <= 125 else 126 if size < 1 << 16 else 127
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    masked = 0x80 if mask is not None else 0
    if form == 125:
        head += bytes((masked | size,))
    elif form == 126:
        head += bytes((masked | 126,)) + struct.pack("!H", size)
    else:
        head += bytes((masked | 127,)) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return head + mask + body


def text(value: str, **how: object) -> bytes:
    return frame(0x1, value.encode(), **how)  # type: ignore[arg-type]


def close(code: int | None, reason: bytes = b"") -> bytes:
    return frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


STREAMS: dict[str, bytes] = {
    "one text": text('{"type":"ping"}'),
    "empty text": text(""),
    "empty binary": frame(0x2, b""),
    "binary": frame(0x2, bytes(range(256)) * 3),
    "three texts": text("a") + text("é" * 40) + text("日本語"),
    "125 bytes": text("x" * 125),
    "126 bytes": text("x" * 126),
    "65,535 bytes": text("y" * 65_535),
    "65,536 bytes": frame(0x2, b"z" * 65_536),
    "126 form for 125 bytes": text("x" * 125, form=126),
    "126 form for 5 bytes": text("hello", form=126),
    "127 form for 65,535 bytes": text("x" * 65_535, form=127),
    "127 form for 126 bytes": text("x" * 126, form=127),
    "64-bit length with its top bit": text("x", form=127)[:2]
    + struct.pack("!Q", 1 << 63 | 1)
    + MASK
    + b"x",
    "unmasked text": text("plain", mask=None),
    "unmasked after a masked one": text("ok") + text("plain", mask=None),
    "reserved bit 1": text("x", rsv=4),
    "reserved bit 3": text("x") + text("x", rsv=1),
    "unknown opcode": frame(0x3, b"x"),
    "invalid UTF-8": text("ok") + frame(0x1, b"\xff\xfe"),
    "UTF-8 cut between fragments": frame(0x1, "é".encode()[:1], fin=False)
    + frame(0x0, "é".encode()[1:]),
    "fragmented text": frame(0x1, b"hel", fin=False) + frame(0x0, b"lo"),
    "fragmented then whole": frame(0x1, b"a", fin=False)
    + frame(0x0, b"b", fin=False)
    + frame(0x0, b"c")
    + text("d"),
    "ping between fragments": frame(0x1, b"a", fin=False) + frame(0x9, b"hi") + frame(0x0, b"b"),
    "text between fragments": frame(0x1, b"a", fin=False) + text("b"),
    "continuation first": frame(0x0, b"a"),
    "ping and pong": text("a") + frame(0x9, b"p") + frame(0xA, b"q") + text("b"),
    "fragmented ping": frame(0x9, b"p", fin=False),
    "ping of 126 bytes": frame(0x9, b"p" * 126),
    "close 1000 with a reason": text("a") + close(1000, b"bye"),
    "close with no code": close(None),
    "close with one byte": frame(0x8, b"\x03"),
    "close 1005 (local only)": close(1005),
    "close 999": close(999),
    "close 1004 (reserved)": close(1004),
    "close 4401": close(4401, b"token"),
    "close with bad UTF-8": close(1000, b"\xff"),
    "text after close": close(1000) + text("late"),
}


def wsproto_events(chunks: list[bytes]) -> list[Event]:
    connection = Connection(ConnectionType.SERVER)
    events: list[Event] = []
    for chunk in chunks:
        if connection.state.name == "CLOSED":
            break
        connection.receive_data(chunk)
        events.extend(connection.events())
    return events


def our_events(chunks: list[bytes]) -> list[Event]:
    connection = Connection(ConnectionType.SERVER)
    events: list[Event] = []
    for chunk in chunks:
        if connection.state.name == "CLOSED":
            break
        events.extend(received_events(connection, chunk))
    return events


def splits(data: bytes) -> list[list[bytes]]:
    """The whole stream in one read, in reads of one byte, and in two reads at every point
    (every 997th for long streams)."""
    step = 1 if len(data) < 600 else 997
    ways = [[data], [data[i : i + 1] for i in range(len(data))] if len(data) < 600 else []]
    ways += [[data[:at], data[at:]] for at in range(1, len(data), step)]
    return [way for way in ways if way]


@pytest.mark.parametrize("name", STREAMS)
def test_the_events_are_wsprotos_however_the_bytes_are_read(name: str) -> None:
    data = STREAMS[name]
    for chunks in splits(data):
        assert our_events(chunks) == wsproto_events(chunks), (name, [len(c) for c in chunks])


def test_whole_plain_frames_are_read_without_wsproto() -> None:
    data = text("a") + frame(0x2, b"\x00\x01") + text("é" * 100) + text("x" * 70_000)
    events, used = plain_messages(data)
    assert used == len(data)
    assert events == [
        TextMessage(data="a"),
        BytesMessage(data=b"\x00\x01"),
        TextMessage(data="é" * 100),
        TextMessage(data="x" * 70_000),
    ]


STOPS = {
    "unmasked": (text("ok"), text("plain", mask=None)),
    "reserved bit": (text("x"), text("x", rsv=1)),
    "invalid UTF-8": (text("ok"), frame(0x1, b"\xff\xfe")),
    "ping": (text("a"), frame(0x9, b"p") + text("b")),
    "close": (text("a"), close(1000, b"bye")),
    "fragment": (text("a") + text("b"), frame(0x1, b"c", fin=False) + frame(0x0, b"d")),
    "126 form for 125 bytes": (text("a"), text("x" * 125, form=126)),
    "127 form for 126 bytes": (text("a"), text("x" * 126, form=127)),
    "incomplete": (text("a"), text("hello")[:-1]),
}


@pytest.mark.parametrize("name", STOPS)
def test_reading_stops_at_the_first_frame_left_to_wsproto(name: str) -> None:
    read, left = STOPS[name]
    events, used = plain_messages(read + left)
    assert used == len(read)
    assert len(events) == len(wsproto_events([read]))


def test_nothing_is_read_while_wsproto_holds_part_of_a_frame() -> None:
    connection = Connection(ConnectionType.SERVER)
    whole = text("hello")
    assert list(received_events(connection, whole[:4])) == []
    # The rest of that frame and a whole one: wsproto must read both, from its buffer on.
    assert list(received_events(connection, whole[4:] + text("next"))) == [
        TextMessage(data="hello"),
        TextMessage(data="next"),
    ]
