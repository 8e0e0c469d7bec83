"""The /socket.io/ endpoint: Engine.IO v4 and Socket.IO v5 on Quart-Trio, so the original
backend's front ends (the stock `socket.io-client`) connect unchanged, beside /ws.

One routing core, two edges: the events map onto the same connection core as /ws
(api/_ws_core.py: roles, rate limit, every domain call bounded) and the same `Session`s in the
domain's presence registry. What differs is only the framing and the rooms.

Transports. `GET /socket.io/?EIO=4&transport=polling` opens a session (the Engine.IO handshake);
`GET ...&sid=S` long-polls what is buffered for it, `POST ...&sid=S` hands it packets. A websocket
to `...&transport=websocket&sid=S` upgrades S (2probe/3probe, then 5); a websocket without a sid
is a fresh session. The protocol rules (codecs, the polling/upgrade state machine, heartbeats)
are plain code in api/_engineio.py; the tasks and sockets around them are the modules below.

Here are the two entry points (polling and websocket) and their refusals before a session
exists: an origin the settings do not allow, a query of another Engine.IO version or transport,
an unknown sid, a full server. Behind them: api/_sio_hub.py (the live sessions by sid, bounded),
api/_sio_session.py (one session's tasks and transports) and api/_sio_namespace.py (the default
namespace: the original's events mapped onto the core, and the domain's events rendered).
"""

from __future__ import annotations

import logging
import math
from enum import IntEnum

from quart import Blueprint, Response, current_app, request, websocket
from quart_schema import hide
from werkzeug.datastructures import MultiDict

from api import _engineio as eio
from api._client import current_client
from api._connection_caps import connection_caps
from api._cors import origin_allowed
from api._engineio import (
    ProtocolError,
    Transport,
)
from api._errors import error_response
from api._quart_websocket import accepted_frames, current_websocket
from api._services import services
from api._sio_hub import Crowded, Hub, TooManyPending
from api._sio_session import SocketIOLimits
from api._stopping import stopping

log = logging.getLogger("api.socketio")

socketio = Blueprint("socketio", __name__)

PATH = "/socket.io/"
HUB_KEY = "switchboard.socketio"


class EngineIoCode(IntEnum):
    """Engine.IO's own error codes, given in `details` beside ours."""

    TRANSPORT_UNKNOWN = 0
    SESSION_UNKNOWN = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5


# --- the routes ----------------------------------------------------------------------------------


# Its CORS headers and preflights are the app's (api/_cors.py), as for every HTTP answer.
@socketio.route(PATH, methods=["GET", "POST"], provide_automatic_options=False)
@hide  # a transport with its own handshake, not a REST operation: out of /openapi.json, as /ws
async def polling() -> Response:
    found = services()
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, found.settings.allowed_origins):
        return _refuse(
            403, "origin_not_allowed", f"origin {origin!r} may not connect", EngineIoCode.FORBIDDEN
        )
    refused = _check_query(request.args, Transport.POLLING)
    if refused is not None:
        return refused
    sid = request.args.get("sid")
    the_hub = hub()
    if sid is None:
        if request.method != "GET":
            return _refuse(
                400,
                "bad_handshake",
                "a session starts with a GET without sid",
                EngineIoCode.BAD_HANDSHAKE_METHOD,
            )
        try:
            session = await the_hub.open(
                found, Transport.POLLING, request.headers.get("Authorization"), current_client()
            )
        except Crowded:
            return _crowded()
        except TooManyPending:
            return _too_many_pending(the_hub.limits)
        handshake = session.engine.config.handshake(session.sid, [Transport.WEBSOCKET.value])
        return _text(eio.encode_payload([handshake]))
    known = the_hub.get(sid)
    if known is None:
        return _unknown_session(sid)
    try:
        if request.method == "GET":
            return _text(await known.poll())
        await known.post(await request.get_data(cache=False, as_text=False, parse_form_data=False))
    except ProtocolError as error:
        return _refuse(400, "bad_request", str(error), EngineIoCode.BAD_REQUEST)
    return _text("ok")


@socketio.websocket(PATH)
async def websocket_transport() -> Response | None:
    found = services()
    origin = websocket.headers.get("Origin")
    if not origin_allowed(origin, found.settings.allowed_origins):
        return _refuse(
            403, "origin_not_allowed", f"origin {origin!r} may not connect", EngineIoCode.FORBIDDEN
        )
    refused = _check_query(websocket.args, Transport.WEBSOCKET)
    if refused is not None:
        return refused
    sid = websocket.args.get("sid")
    if sid is None:
        the_hub = hub()
        try:
            session = await the_hub.open(
                found,
                Transport.WEBSOCKET,
                websocket.headers.get("Authorization"),
                current_client(),
            )
        except Crowded:
            return _crowded()
        except TooManyPending:
            return _too_many_pending(the_hub.limits)
        await websocket.accept()
        await session.serve_websocket(accepted_frames(current_websocket()))
        return None
    upgrading = hub().get(sid)
    if upgrading is None:
        return _unknown_session(sid)
    try:
        upgrading.engine.start_upgrade()
    except ProtocolError as error:
        return _refuse(400, "bad_request", str(error), EngineIoCode.BAD_REQUEST)
    direct = current_websocket()
    await upgrading.upgrade(accepted_frames(direct), direct.accept)
    return None


def hub() -> Hub:
    """The app's Socket.IO sessions (one registry per app, made on first use)."""
    found: Hub | None = current_app.extensions.get(HUB_KEY)
    if found is None:
        found = current_app.extensions[HUB_KEY] = Hub(services(), connection_caps(), stopping())
    return found


def _check_query(args: MultiDict[str, str], transport: Transport) -> Response | None:
    if args.get("EIO") != "4":
        return _refuse(
            400,
            "unsupported_protocol_version",
            f"this server speaks Engine.IO 4 (socket.io-client 3 and 4); EIO={args.get('EIO')!r}",
            EngineIoCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    if args.get("transport") != transport.value:
        return _refuse(
            400,
            "transport_unknown",
            f"transport {args.get('transport')!r} here; use {transport.value}",
            EngineIoCode.TRANSPORT_UNKNOWN,
        )
    return None


def _refuse(status: int, code: str, message: str, engine_io_code: EngineIoCode) -> Response:
    return error_response(status, code, message, {"engineIoCode": int(engine_io_code)})


def _unknown_session(sid: str) -> Response:
    return _refuse(
        400,
        "session_unknown",
        f"no session {sid[:40]!r}: it closed or never existed; reconnect",
        EngineIoCode.SESSION_UNKNOWN,
    )


def _crowded() -> Response:
    return error_response(503, "unavailable", "too many Socket.IO sessions; retry shortly")


def _too_many_pending(limits: SocketIOLimits) -> Response:
    response = error_response(
        429,
        "too_many_pending_sessions",
        f"this address has {limits.pending_per_address} Socket.IO sessions that have not sent "
        "their CONNECT; connect them (CONNECT with a token) or let them close",
    )
    response.headers["Retry-After"] = str(math.ceil(limits.connect_seconds))
    return response


def _text(body: str) -> Response:
    return Response(body, 200, content_type="text/plain; charset=UTF-8")
