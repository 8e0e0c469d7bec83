"""A request answered before its body was read closes its connection, and says so.

An app may answer before reading the body (a 401 from the guard, a 404, a 413 from the declared
length). The rest of the body may still be on its way, and hypercorn, unable to start the next
request on that connection, closed it without a word: a client that had already sent its next
request on the kept-alive connection got no answer at all. Such an answer waits a moment for
the body (Quart reads it alongside the handler; most often it came with the headers): read to
its end, the connection stays open. Otherwise the answer carries `Connection: close`, which
tells the client to open a new connection for what comes next (RFC 9112, 9.6).
"""

from __future__ import annotations

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

# How long an early answer waits for the rest of a body already on its way.
BODY_WAIT_SECONDS = 0.05


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and value != b"0"):
            return True
    return False


class CloseAfterEarlyAnswer:
    """ASGI middleware: `Connection: close` on an HTTP answer that starts before the request's
    body has been received to its end."""

    def __init__(self, app: ASGIFramework) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or not _declares_body(list(scope["headers"])):
            await self._app(scope, receive, send)
            return
        body_read = trio.Event()

        async def receiving() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read.set()
            return message

        async def sending(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not body_read.is_set():
                with trio.move_on_after(BODY_WAIT_SECONDS):
                    await body_read.wait()
            if message["type"] == "http.response.start" and not body_read.is_set():
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self._app(scope, receiving, sending)
