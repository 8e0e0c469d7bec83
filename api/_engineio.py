"""Engine.IO v4 and Socket.IO v5 as plain code: the packet codecs and one session's state machine.

Nothing here does I/O or imports trio. The Socket.IO edge (api/_sio_session.py) owns the sockets
and the tasks; it hands this module what it read and writes what this module buffered, and injects
the clock and a `wake` callable (called whenever something became ready to write), in the style
of hypercorn's ws_stream.py. So the protocol, the polling/upgrade state machine and the
ping/timeout rules are unit-tested without a socket (tests/api/test_engineio.py).

Engine.IO (https://socket.io/docs/v4/engine-io-protocol/): a packet is a type digit and data;
over websocket one packet per frame (binary data as a binary frame), over HTTP long-polling
several packets per body joined by the record separator \\x1e, binary data as `b<base64>`.
Socket.IO (https://socket.io/docs/v4/socket-io-protocol/) rides in Engine.IO messages:
`<type>[<namespace>,][<ack id>][<JSON>]`. Binary attachments (types 5 and 6) are refused:
every event of this server is JSON.

Over 500 lines: the two protocols' codecs and one session's state machine belong together (the
machine buffers what the codecs encode), and as plain code they are tested without a socket.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeAlias, assert_never

from api._json_depth import nested_deeper_than

SEPARATOR = "\x1e"
DEFAULT_NAMESPACE = "/"
# An ack id is a JavaScript number the client counts up from 0; more digits is garbage.
MAX_ACK_ID_DIGITS = 15
# No event of ours nests deeper; beyond it, the parser's recursion is a risk (see _json_depth).
MAX_PAYLOAD_DEPTH = 32
PROBE = "probe"


class ProtocolError(Exception):
    """What the peer sent breaks the protocol; the message says how (safe to show to it)."""


class TransportMismatch(ProtocolError):
    """A request of a transport the session is not on (a poll after the upgrade)."""


# --- Engine.IO packets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenPacket:
    """The handshake, server to client: JSON with the sid, upgrades and timing."""

    data: str


@dataclass(frozen=True, slots=True)
class ClosePacket:
    pass


@dataclass(frozen=True, slots=True)
class PingPacket:
    data: str = ""


@dataclass(frozen=True, slots=True)
class PongPacket:
    data: str = ""


@dataclass(frozen=True, slots=True)
class MessagePacket:
    data: str | bytes


@dataclass(frozen=True, slots=True)
class UpgradePacket:
    pass


@dataclass(frozen=True, slots=True)
class NoopPacket:
    pass


Packet: TypeAlias = (
    OpenPacket | ClosePacket | PingPacket | PongPacket | MessagePacket | UpgradePacket | NoopPacket
)

_TEXT_TYPES: dict[str, Callable[[str], Packet]] = {
    "0": OpenPacket,
    "1": lambda _: ClosePacket(),
    "2": PingPacket,
    "3": PongPacket,
    "4": MessagePacket,
    "5": lambda _: UpgradePacket(),
    "6": lambda _: NoopPacket(),
}


def encode_packet(packet: Packet) -> str | bytes:
    """One websocket frame: binary data goes as a binary frame, everything else as text."""
    match packet:
        case MessagePacket(bytes() as data):
            return data
        case _:
            return _encode_text(packet)


def encode_payload(packets: Iterable[Packet]) -> str:
    """One polling response body: text packets joined by \\x1e, binary ones as `b<base64>`."""
    return SEPARATOR.join(
        "b" + base64.b64encode(packet.data).decode("ascii")
        if isinstance(packet, MessagePacket) and isinstance(packet.data, bytes)
        else _encode_text(packet)
        for packet in packets
    )


def _encode_text(packet: Packet) -> str:
    match packet:
        case OpenPacket(data):
            return "0" + data
        case ClosePacket():
            return "1"
        case PingPacket(data):
            return "2" + data
        case PongPacket(data):
            return "3" + data
        case MessagePacket(data):
            assert isinstance(data, str), "binary data is framed by the caller"
            return "4" + data
        case UpgradePacket():
            return "5"
        case NoopPacket():
            return "6"
        case _ as unreachable:
            assert_never(unreachable)


def decode_packet(frame: str | bytes) -> Packet:
    """One websocket frame from a client."""
    if isinstance(frame, bytes):
        return MessagePacket(frame)
    return _decode_text(frame)


def decode_payload(body: str, *, max_packets: int) -> list[Packet]:
    """One polling request body from a client."""
    records = body.split(SEPARATOR)
    if len(records) > max_packets:
        raise ProtocolError(f"at most {max_packets} packets per request, got {len(records)}")
    packets: list[Packet] = []
    for record in records:
        if record.startswith("b"):
            try:
                packets.append(MessagePacket(base64.b64decode(record[1:], validate=True)))
            except binascii.Error as error:
                raise ProtocolError("a binary packet (b...) is not valid base64") from error
        else:
            packets.append(_decode_text(record))
    return packets


def _decode_text(text: str) -> Packet:
    if not text:
        raise ProtocolError("empty Engine.IO packet")
    make = _TEXT_TYPES.get(text[0])
    if make is None:
        raise ProtocolError(f"unknown Engine.IO packet type {text[0]!r}; expected 0-6")
    packet = make(text[1:])
    if isinstance(packet, OpenPacket):
        raise ProtocolError("clients do not send open (0) packets")
    return packet


# --- Socket.IO packets ---------------------------------------------------------------------------


class SioType(Enum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(frozen=True, slots=True)
class RawJson:
    """JSON text already encoded (a pydantic model's dump), spliced into a packet as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class ConnectPacket:
    """Client to server: `data` is the `auth` object. Server to client: `{"sid": ...}`."""

    namespace: str = DEFAULT_NAMESPACE
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DisconnectPacket:
    namespace: str = DEFAULT_NAMESPACE


@dataclass(frozen=True, slots=True)
class EventPacket:
    name: str
    args: tuple[Any, ...] = ()
    ack_id: int | None = None
    namespace: str = DEFAULT_NAMESPACE


@dataclass(frozen=True, slots=True)
class AckPacket:
    ack_id: int
    args: tuple[Any, ...] = ()
    namespace: str = DEFAULT_NAMESPACE


@dataclass(frozen=True, slots=True)
class ConnectErrorPacket:
    message: str
    namespace: str = DEFAULT_NAMESPACE
    # The client's `err.data` (socket.io-client): here `{"code": ...}` where a client may act on it.
    data: dict[str, Any] | None = None


SioPacket: TypeAlias = (
    ConnectPacket | DisconnectPacket | EventPacket | AckPacket | ConnectErrorPacket
)
# What a client may send.
ClientPacket: TypeAlias = ConnectPacket | DisconnectPacket | EventPacket | AckPacket


def encode_sio(packet: SioPacket) -> str:
    match packet:
        case ConnectPacket(namespace, data):
            return "0" + _nsp(namespace) + (_json(data) if data is not None else "")
        case DisconnectPacket(namespace):
            return "1" + _nsp(namespace)
        case EventPacket(name, args, ack_id, namespace):
            return "2" + _nsp(namespace) + _ack_id(ack_id) + _json_array((name, *args))
        case AckPacket(ack_id, args, namespace):
            return "3" + _nsp(namespace) + _ack_id(ack_id) + _json_array(args)
        case ConnectErrorPacket(message, namespace, data):
            body: dict[str, Any] = {"message": message}
            if data is not None:
                body["data"] = data
            return "4" + _nsp(namespace) + _json(body)
        case _ as unreachable:
            assert_never(unreachable)


def _nsp(namespace: str) -> str:
    return "" if namespace == DEFAULT_NAMESPACE else namespace + ","


def _ack_id(ack_id: int | None) -> str:
    return "" if ack_id is None else str(ack_id)


def _json(value: Any) -> str:
    if isinstance(value, RawJson):
        return value.text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_array(values: Iterable[Any]) -> str:
    return "[" + ",".join(_json(value) for value in values) + "]"


def decode_sio(text: str) -> ClientPacket:
    """One Socket.IO packet from a client, checked as far as the protocol goes."""
    if not text or text[0] not in _DIGITS:
        raise ProtocolError("a Socket.IO packet starts with its type digit (0-6)")
    try:
        kind = SioType(int(text[0]))
    except ValueError as error:
        raise ProtocolError(f"unknown Socket.IO packet type {text[0]}; expected 0-6") from error
    match kind:
        case SioType.CONNECT:
            namespace, _, payload = _parts(text)
            if payload is not None and not isinstance(payload, dict):
                raise ProtocolError("the CONNECT payload (auth) must be a JSON object")
            return ConnectPacket(namespace, payload)
        case SioType.DISCONNECT:
            namespace, _, _ = _parts(text)
            return DisconnectPacket(namespace)
        case SioType.EVENT:
            namespace, ack_id, payload = _parts(text)
            if not isinstance(payload, list) or not payload or not isinstance(payload[0], str):
                raise ProtocolError('an EVENT payload is a JSON array ["name", ...args]')
            return EventPacket(payload[0], tuple(payload[1:]), ack_id, namespace)
        case SioType.ACK:
            namespace, ack_id, payload = _parts(text)
            if ack_id is None or not isinstance(payload, list):
                raise ProtocolError("an ACK has an ack id and a JSON array of arguments")
            return AckPacket(ack_id, tuple(payload), namespace)
        case SioType.CONNECT_ERROR:
            raise ProtocolError("clients do not send CONNECT_ERROR (4) packets")
        case SioType.BINARY_EVENT | SioType.BINARY_ACK:
            raise ProtocolError("binary attachments are not supported; send JSON arguments")
        case _ as unreachable:
            assert_never(unreachable)


_DIGITS = frozenset("0123456789")


def _parts(text: str) -> tuple[str, int | None, Any]:
    """After the type digit: the namespace, the ack id and the JSON payload, each optional."""
    at = 1
    namespace = DEFAULT_NAMESPACE
    if text.startswith("/", at):
        end = text.find(",", at)
        namespace, at = (text[at:], len(text)) if end < 0 else (text[at:end], end + 1)
    digits = at
    while digits < len(text) and text[digits] in _DIGITS:
        digits += 1
    if digits - at > MAX_ACK_ID_DIGITS:
        raise ProtocolError(f"an ack id has at most {MAX_ACK_ID_DIGITS} digits")
    ack_id = int(text[at:digits]) if digits > at else None
    payload = _parse_json(text[digits:]) if digits < len(text) else None
    return namespace, ack_id, payload


def _parse_json(text: str) -> Any:
    if nested_deeper_than(text, MAX_PAYLOAD_DEPTH):
        raise ProtocolError(f"a Socket.IO payload nests at most {MAX_PAYLOAD_DEPTH} levels deep")
    try:
        return json.loads(text)
    except ValueError as error:
        raise ProtocolError("the Socket.IO payload is not valid JSON") from error


# --- one Engine.IO session -----------------------------------------------------------------------


class Transport(StrEnum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class _Upgrade(Enum):
    NONE = "none"
    PROBING = "probing"  # a websocket with this sid is open; waiting for its 2probe
    PROBED = "probed"  # answered 3probe; polls get noop until the client sends 5 on the socket


@dataclass(frozen=True, slots=True)
class EngineConfig:
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    # The largest request body / frame a client may send; the client batches up to it.
    max_payload: int = 64 * 1024
    max_packets_per_request: int = 256
    # Buffered for a client that has not polled (or read) yet, in characters; past it the edge
    # stops adding and the client is treated as a slow reader.
    max_buffered: int = 256 * 1024

    def handshake(self, sid: str, upgrades: list[str]) -> OpenPacket:
        return OpenPacket(
            json.dumps(
                {
                    "sid": sid,
                    "upgrades": upgrades,
                    "pingInterval": round(self.ping_interval * 1000),
                    "pingTimeout": round(self.ping_timeout * 1000),
                    "maxPayload": self.max_payload,
                },
                separators=(",", ":"),
            )
        )


Written = Callable[[], None]


class EngineSession:
    """One Engine.IO session: its transport, outgoing buffer, upgrade and heartbeat.

    The edge calls `receive` with each packet a client sent (on the current transport) and
    `probe` with each packet of an upgrading websocket; it writes what `take` returns when
    `ready()` says so (a pending poll, or the websocket writer), and calls `tick` at
    `deadline()`. `wake` is called whenever `ready()` or `deadline()` may have changed.
    """

    def __init__(
        self,
        sid: str,
        transport: Transport,
        config: EngineConfig,
        *,
        clock: Callable[[], float],
        wake: Callable[[], None],
    ) -> None:
        self.sid = sid
        self.transport = transport
        self.config = config
        self._clock = clock
        self._wake = wake
        self._buffer: deque[tuple[Packet, Written | None]] = deque()
        self._buffered = 0
        self._upgrade = _Upgrade.NONE
        self._polling = False
        self._posting = False
        # Heartbeat (Engine.IO v4: the server pings, the client answers within pingTimeout).
        self._ping_at = clock() + config.ping_interval
        self._pong_by: float | None = None
        self.closed: str | None = None  # why, once closed

    # --- what goes out -------------------------------------------------------------------------

    def send(self, packet: Packet, written: Written | None = None) -> None:
        """Buffer a packet; `written` runs once the edge has written it to the client."""
        if self.closed is not None:
            return
        self._buffer.append((packet, written))
        self._buffered += _size(packet)
        self._wake()

    @property
    def has_room(self) -> bool:
        return self._buffered < self.config.max_buffered

    @property
    def buffered(self) -> int:
        """The characters buffered (at most about `config.max_buffered`)."""
        return self._buffered

    @property
    def drained(self) -> bool:
        return not self._buffer

    def ready(self) -> bool:
        """Whether the current transport has something to write now."""
        if self.closed is not None or self._buffer:
            return True
        return self._polling and self._upgrade is _Upgrade.PROBED

    def take(self) -> tuple[list[Packet], list[Written]]:
        """Everything buffered, and what to call once it is written. While an upgrade is being
        probed an empty poll gets a noop, which lets the client finish its poll and switch."""
        packets = [packet for packet, _ in self._buffer]
        written = [done for _, done in self._buffer if done is not None]
        if packets:
            self._buffer.clear()
            self._buffered = 0
            self._wake()  # room again for whoever waits to buffer more
        elif self._upgrade is _Upgrade.PROBED and self.closed is None:
            packets.append(NoopPacket())
        return packets, written

    # --- polling -------------------------------------------------------------------------------

    def start_poll(self) -> None:
        # A closed session still hands out its last packets (why it closed).
        self._require_polling("GET", closed_ok=bool(self._buffer))
        if self._polling:
            raise ProtocolError("overlapping polls: wait for the previous GET to answer")
        self._polling = True

    def finish_poll(self) -> tuple[list[Packet], list[Written]]:
        """End the pending poll: what its response carries."""
        self._polling = False
        return self.take()

    def cancel_poll(self) -> None:
        """The poll's request went away unanswered: what is buffered waits for the next."""
        self._polling = False

    def start_post(self) -> None:
        self._require_polling("POST")
        if self._posting:
            raise ProtocolError("overlapping POSTs: wait for the previous POST to answer")
        self._posting = True

    def finish_post(self) -> None:
        self._posting = False

    def _require_polling(self, method: str, *, closed_ok: bool = False) -> None:
        if self.closed is not None and not closed_ok:
            raise ProtocolError("the session is closed")
        if self.transport is not Transport.POLLING:
            raise TransportMismatch(f"a {method} on a session upgraded to websocket")

    # --- what comes in -------------------------------------------------------------------------

    def receive(self, packet: Packet) -> str | bytes | None:
        """A packet from the client on the current transport: the message data to dispatch,
        if it carried one."""
        match packet:
            case MessagePacket(data):
                return data
            case PongPacket():
                self._pong_by = None
                self._ping_at = self._clock() + self.config.ping_interval
                self._wake()
            case PingPacket():
                # v4 clients never ping (the server does); answering would let a client that
                # does not read grow its buffer past the bound.
                raise ProtocolError("Engine.IO 4 clients answer pings; they do not send them")
            case ClosePacket():
                self.close("the client closed the session", tell_client=False)
            case NoopPacket():
                pass
            case UpgradePacket():
                raise ProtocolError("upgrade (5) is sent on the new websocket, after 2probe")
            case OpenPacket():
                raise ProtocolError("clients do not send open (0) packets")
            case _ as unreachable:
                assert_never(unreachable)
        return None

    # --- the upgrade from polling to websocket -------------------------------------------------

    def start_upgrade(self) -> None:
        """A websocket with this sid was opened (it must probe, then upgrade)."""
        self._require_polling("websocket upgrade")
        if self._upgrade is not _Upgrade.NONE:
            raise ProtocolError("an upgrade of this session is already in progress")
        self._upgrade = _Upgrade.PROBING

    def probe(self, packet: Packet) -> Packet | None:
        """A packet on the upgrading websocket: the reply to write on that socket, if any.
        Raises ProtocolError (the edge then drops the socket and stays on polling)."""
        match self._upgrade, packet:
            case _Upgrade.PROBING, PingPacket(PROBE):
                self._upgrade = _Upgrade.PROBED
                self._wake()  # a pending poll answers noop, so the client can pause polling
                return PongPacket(PROBE)
            case _Upgrade.PROBED, UpgradePacket():
                self._upgrade = _Upgrade.NONE
                self.transport = Transport.WEBSOCKET
                self._wake()  # what was buffered goes out on the websocket now
                return None
            case _:
                kind = type(packet).__name__.removesuffix("Packet").lower()
                raise ProtocolError(f"unexpected {kind} while upgrading; send 2probe, then 5")

    def abandon_upgrade(self) -> None:
        """The upgrading websocket went away before 5; the session stays on polling."""
        if self.transport is Transport.POLLING:
            self._upgrade = _Upgrade.NONE

    # --- heartbeat and close -------------------------------------------------------------------

    def deadline(self) -> float:
        """When `tick` must run next."""
        return self._ping_at if self._pong_by is None else self._pong_by

    def tick(self) -> None:
        if self.closed is not None:
            return
        now = self._clock()
        if self._pong_by is not None:
            if now >= self._pong_by:
                self.close("ping timeout: no pong within pingTimeout")
        elif now >= self._ping_at:
            self._pong_by = now + self.config.ping_timeout
            self.send(PingPacket())

    def close(self, reason: str, *, tell_client: bool = True) -> None:
        """Close once; a close packet follows what is buffered unless the client closed."""
        if self.closed is not None:
            return
        if tell_client:
            self.send(ClosePacket())
        self.closed = reason
        self._wake()


def _size(packet: Packet) -> int:
    match packet:
        case MessagePacket(data) | OpenPacket(data) | PingPacket(data) | PongPacket(data):
            return len(data) + 1
        case ClosePacket() | UpgradePacket() | NoopPacket():
            return 1
        case _ as unreachable:
            assert_never(unreachable)
