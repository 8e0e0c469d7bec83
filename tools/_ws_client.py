"""Opening Switchboard's /ws as a client, for the tools and the tests: the bearer header, the frame
clients send most, and the library's bounds on the handshakes, written once.

The two reconnecting clients stay two because they answer different questions: the chaos
harness's (tools/chaos/_peers.py) records what each client showed, to check it against the store
after kills; loadsim's (tools/_sim_participant.py) sends on a Poisson schedule and records
latencies in its ledger. Both, the tests' client (tests/e2e/wsclient.py) and the benchmarks dial
through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from trio_websocket import WebSocketConnection, open_websocket_url

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
