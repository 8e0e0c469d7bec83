"""A log line and the HTTP metrics for every request: method, route template, status,
duration, principal and client address (behind a trusted proxy, the client it forwards for).

The route is the matched rule's template (`/chats/agent/show/{chat_id}`), never the path: ids
would make every line and metric series unique, and nothing after the `?` is ever logged (a
query string is where careless clients put tokens). A websocket handshake refused before it
was accepted is logged the same way; an accepted one is logged by its edge (connect, close).
"""

from __future__ import annotations

import re
import time
from functools import cache

from quart import Quart, Response, g, request, websocket
from quart.typing import ResponseTypes

from api._client import current_client
from telemetry import http_request

_PARAMETER = re.compile(r"<(?:[^<>:]*:)?([^<>]+)>")


@cache
def template(rule: str) -> str:
    """`/chats/<id:chat_id>` as `/chats/{chat_id}`."""
    return _PARAMETER.sub(r"{\1}", rule)


def _principal() -> str | None:
    principal = g.get("principal")
    return None if principal is None else str(principal.user.id)


def install_request_log(app: Quart) -> None:
    @app.before_request
    async def _started() -> None:
        g.started = time.perf_counter()

    @app.after_request
    async def _answered(response: Response) -> Response:
        rule = request.url_rule
        http_request(
            request.method,
            None if rule is None else template(rule.rule),
            response.status_code,
            time.perf_counter() - g.get("started", time.perf_counter()),
            principal=_principal(),
            client=current_client(),
        )
        return response

    @app.before_websocket
    async def _handshake() -> None:
        g.started = time.perf_counter()

    @app.after_websocket
    async def _refused(response: ResponseTypes | None) -> ResponseTypes | None:
        if isinstance(response, Response):
            rule = websocket.url_rule
            http_request(
                "GET",
                None if rule is None else template(rule.rule),
                response.status_code,
                time.perf_counter() - g.get("started", time.perf_counter()),
                principal=None,
                client=current_client(),
            )
        return response
