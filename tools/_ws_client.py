"""Opening Switchboard's /ws as a client, for the tools and the tests: the bearer header, the frame
clients send most, the library's bounds on the handshakes, and the reconnect loop, written once.

`stay_connected` is the one reconnect loop: dial (with at most so many handshakes at once, if
asked), serve the connection, count failures in a row, pause by the client's backoff, give up
past its bound. What a session does on a fresh connection (resume each chat from the last seq it
holds, resend what was not acknowledged under the same clientMsgId) and what it records are the
client's: the chaos harness's (tools/chaos/_peers.py) records what each client showed, to check
it against the store after kills; loadsim's (tools/_sim_participant.py) records latencies in its
ledger. The tests' client (tests/e2e/wsclient.py) and the benchmarks only dial through here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from trio_websocket import HandshakeError, WebSocketConnection, open_websocket_url
from wsproto.utilities import LocalProtocolError

# trio-websocket's own default: the largest frame a client takes.
MAX_MESSAGE_BYTES = 1024 * 1024


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    """The handshake header that signs a connection in."""
    return [(b"Authorization", f"Bearer {token}".encode())]


def message_send(chat_id: str, client_msg_id: str, content: str) -> dict[str, Any]:
    """The `message.send` frame."""
    return {
        "type": "message.send",
        "chatId": chat_id,
        "clientMsgId": client_msg_id,
        "content": content,
    }


def dial(
    url: str,
    token: str | None,
    *,
    message_queue_size: int,
    connect_seconds: float,
    disconnect_seconds: float,
    max_message_size: int = MAX_MESSAGE_BYTES,
    headers: Sequence[tuple[bytes, bytes]] = (),
    subprotocols: list[str] | None = None,
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """A connection to `url` signed in with `token` (none: anonymous), open for the block; the
    opening and closing handshakes bounded by the library."""
    signed = bearer(token) if token is not None else []
    return open_websocket_url(
        url,
        extra_headers=[*signed, *headers],
        subprotocols=subprotocols,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        connect_timeout=connect_seconds,
        disconnect_timeout=disconnect_seconds,
    )


class Attempt(enum.Enum):
    """What one attempt means for the count of failures in a row."""

    LASTED = enum.auto()  # the count starts again
    FAILED = enum.auto()  # one more
    NEITHER = enum.auto()  # unchanged
    STOP = enum.auto()  # nothing to reconnect with: give up now


@dataclass(frozen=True, slots=True)
class Redial:
    """How a reconnecting client dials, and how many failures in a row it takes."""

    message_queue_size: int
    connect_seconds: float
    disconnect_seconds: float
    attempts: int
    handshakes: trio.CapacityLimiter | None = None
    """Handshakes at once, if bounded (a burst of them overflows the listen backlog)."""


class Reconnecting(Protocol):
    """What `stay_connected` asks of a client: where to dial, what a session does, what it
    records, how long to pause."""

    @property
    def token(self) -> str: ...

    @property
    def stopping(self) -> bool: ...

    def url(self) -> str:
        """Where the next attempt dials."""
        ...

    async def session(self, ws: WebSocketConnection) -> Attempt:
        """Serve one connection until it ends."""
        ...

    def refused(self, error: HandshakeError | OSError) -> None:
        """No connection: the handshake failed or nobody answered."""
        ...

    def crossed(self, error: LocalProtocolError) -> Attempt:
        """trio-websocket answered a ping that crossed our close and failed on it."""
        ...

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt."""
        ...

    def give_up(self) -> None:
        """Past the bound of failures in a row, or told to stop."""
        ...


async def stay_connected(client: Reconnecting, redial: Redial) -> None:
    """Dial, serve, pause and dial again until the client is stopping or gives up."""
    failures = 0
    while not client.stopping:
        try:
            outcome = await _attempt(client, redial)
        except (HandshakeError, OSError) as error:
            client.refused(error)
            outcome = Attempt.FAILED
        except LocalProtocolError as error:
            outcome = client.crossed(error)
        if client.stopping:
            return
        match outcome:
            case Attempt.LASTED:
                failures = 0
            case Attempt.FAILED:
                failures += 1
            case Attempt.NEITHER:
                pass
            case Attempt.STOP:
                client.give_up()
                return
        if failures > redial.attempts:
            client.give_up()
            return
        await trio.sleep(client.backoff(failures))


async def _attempt(client: Reconnecting, redial: Redial) -> Attempt:
    limiter = redial.handshakes
    if limiter is not None:
        await limiter.acquire()
    holding = limiter is not None
    try:
        async with dial(
            client.url(),
            client.token,
            message_queue_size=redial.message_queue_size,
            connect_seconds=redial.connect_seconds,
            disconnect_seconds=redial.disconnect_seconds,
        ) as ws:
            if limiter is not None:
                limiter.release()
                holding = False
            return await client.session(ws)
    finally:
        if holding:
            assert limiter is not None
            limiter.release()
