"""A client's websocket frames read without wsproto where that is plain, for every frame read.

wsproto parses each frame in about sixty Python calls (a generator, a buffer it copies into and
commits, a header object, a masker, an incremental UTF-8 decoder, a frame object, an event). Most
of what a client sends is simpler: whole, unfragmented, masked text or binary frames, each arriving
complete in one read. `received_events` reads those itself, in a few calls each, and hands the
rest of the read to wsproto from the first frame it does not read (RFC 6455 5.2):

- any frame not final (fragmentation), with a reserved bit set, or of another opcode than text (1)
  or binary (2): control frames (ping, pong, close) and continuations stay wsproto's;
- an unmasked frame (a client must mask: wsproto closes with 1002);
- a length in a longer form than needed (126 for at most 125 bytes, 127 for at most 65,535), or
  a 64-bit length with its top bit set (wsproto closes with 1002);
- text that is not valid UTF-8 (wsproto closes with 1007);
- a frame not complete in what was read (wsproto keeps the part and waits for the rest).

It reads only at a frame boundary of a connection wsproto has no state for: open, nothing kept
in its buffer or its event queue, no fragmented message under way, and no extension (the server
declines permessage-deflate). So what wsproto is handed always starts at a frame boundary, and
the events are exactly the ones wsproto would have made, in the same order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, Event, TextMessage

_FIN = 0x80
_TEXT = 0x81  # final text frame, no reserved bit
_BINARY = 0x82  # final binary frame, no reserved bit
_MASKED = 0x80


def plain_messages(data: bytes) -> tuple[list[Event], int]:
    """The whole, final, masked text and binary frames at the start of `data`, as wsproto's
    events, and how many bytes of `data` they took; stops at the first frame that is anything
    else (see the module's doc)."""
    events: list[Event] = []
    at, end = 0, len(data)
    while end - at >= 6:  # the shortest masked frame: two header bytes and the mask
        first, second = data[at], data[at + 1]
        if (first != _TEXT and first != _BINARY) or not second & _MASKED:
            break
        size = second & 0x7F
        start = at + 2
        if size == 126:
            size = int.from_bytes(data[start : start + 2], "big")
            start += 2
            if size < 126:
                break
        elif size == 127:
            size = int.from_bytes(data[start : start + 8], "big")
            start += 8
            if size < 1 << 16 or size >> 63:
                break
        payload_at = start + 4
        stop = payload_at + size
        if stop > end:
            break  # incomplete (a short length field is also caught here)
        payload = _unmask(data[start:payload_at], data[payload_at:stop])
        if first == _TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                break
            events.append(TextMessage(data=text, frame_finished=True, message_finished=True))
        else:
            events.append(BytesMessage(data=payload, frame_finished=True, message_finished=True))
        at = stop
    return events, at


def _unmask(mask: bytes, payload: bytes) -> bytes:
    """`payload` XORed with the 4-byte `mask` repeated (RFC 6455 5.3), as one big integer."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def _at_frame_boundary(connection: Connection) -> bool:
    """wsproto keeps nothing of an earlier read for `connection`: the next byte starts a frame."""
    proto = connection._proto
    decoder = proto._frame_decoder
    return (
        connection.state is ConnectionState.OPEN
        and not connection._events
        and not proto.extensions
        and decoder.header is None
        and not decoder.buffer.buffer
        and proto._message_decoder.opcode is None
    )


def received_events(connection: Connection, data: bytes) -> Iterable[Event]:
    """What `connection.receive_data(data)` then `connection.events()` yield, the plain frames
    at the start of `data` read without wsproto. wsproto is handed the rest at once, as before;
    it parses it as the events are iterated, as before."""
    events: list[Event] = []
    if _at_frame_boundary(connection):
        events, used = plain_messages(data)
        if used == len(data):
            return events
        data = data[used:]
    connection.receive_data(data)
    return itertools.chain(events, connection.events()) if events else connection.events()
