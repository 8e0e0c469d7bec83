"""Browser origins: one list (`SWITCHBOARD_ALLOWED_ORIGINS`) for REST, /socket.io/ and /ws.

REST and Socket.IO's polling answer an allowed origin with CORS headers, as the original backend's
`cors({origin: [...], credentials: true})` did: the origin echoed, credentials allowed, and
`X-Next-Cursor` (the next page of a list) readable by the page. A preflight (`OPTIONS` with an
`Origin`) from an allowed origin gets 204 with the methods and headers the front ends send; from
another origin, 403 with the common error body naming the setting, so whoever reads the browser's
network tab knows what to change. Other requests from an origin not listed are answered without
CORS headers (the browser then keeps the answer from the page); requests without `Origin` are not
from a browser, which CORS does not concern. The websockets check the same list before accepting.
"""

from __future__ import annotations

from quart import Quart, Response, request

from api._errors import error_response
from api._services import services

ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
# What the front ends send (and Socket.IO's polling, and an Idempotency-Key for message sends).
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, Accept, X-Requested-With"
EXPOSED_HEADERS = "X-Next-Cursor"
MAX_AGE_SECONDS = 600


def origin_allowed(origin: str | None, allowed: list[str], host: str | None = None) -> bool:
    """Browsers always send Origin on a websocket and on a cross-origin request; a client without
    one is not a browser, and cannot be a victim of cross-site requests or websocket hijacking.
    With `host` (the Host asked for), a page of this server itself (the console) is allowed."""
    if origin is None:
        return True
    if host is not None and _same_origin(origin, host):
        return True
    return origin.rstrip("/").lower() in {entry.rstrip("/").lower() for entry in allowed}


def _same_origin(origin: str, host: str) -> bool:
    scheme, _, rest = origin.lower().partition("://")
    return scheme in ("http", "https") and rest.rstrip("/") == host.lower()


def cors_headers(origin: str | None, allowed: list[str]) -> dict[str, str]:
    """The headers that let a page from `origin` read an answer: none for other origins."""
    if origin is None or not origin_allowed(origin, allowed):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
    }


def _preflight(origin: str) -> Response:
    allowed = services().settings.allowed_origins
    if not origin_allowed(origin, allowed):
        response = error_response(
            403,
            "origin_not_allowed",
            f"origin {origin!r} is not in SWITCHBOARD_ALLOWED_ORIGINS; add it there to let its "
            "pages call this server",
        )
    else:
        response = Response("", 204)
        response.headers.update(
            {
                **cors_headers(origin, allowed),
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            }
        )
    response.vary.update(
        ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")
    )
    return response


def install_cors(app: Quart) -> None:
    @app.before_request
    async def _answer_preflight() -> Response | None:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin is not None:
            return _preflight(origin)
        return None

    @app.after_request
    async def _add_cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if request.method != "OPTIONS" or origin is None:
            response.headers.update(cors_headers(origin, services().settings.allowed_origins))
            response.vary.add("Origin")
        return response
