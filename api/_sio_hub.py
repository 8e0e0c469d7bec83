"""The Socket.IO sessions of one app: every live session by sid, bounded in number, and how
many of each client address still wait for their CONNECT (so nobody without a token holds the
session slots)."""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial

import trio
from quart import current_app

from api._connection_caps import ConnectionCaps
from api._engineio import (
    EngineConfig,
    Transport,
)
from api._services import Services
from api._sio_session import SioSession, SocketIOLimits
from api._stopping import Stopping
from telemetry import limit_hit

log = logging.getLogger("api.socketio")


class Crowded(Exception):
    """No room for another session."""


class TooManyPending(Exception):
    """The client's address has as many sessions waiting for their CONNECT as it may."""


class Hub:
    """Every live session by sid, bounded in number."""

    def __init__(
        self,
        found: Services,
        caps: ConnectionCaps,
        going_away: Stopping,
        limits: SocketIOLimits | None = None,
    ) -> None:
        settings = found.settings
        self._caps = caps
        self._going_away = going_away
        self.limits = limits or SocketIOLimits(
            connect_seconds=settings.socketio_connect_seconds,
            pending_per_address=settings.socketio_pending_per_address,
        )
        max_payload = min(settings.max_body_bytes, settings.ws_max_frame_bytes)
        # The same heartbeat as /ws (Engine.IO's own defaults are 25 s and 20 s).
        self.config = EngineConfig(
            ping_interval=settings.ws_ping_interval_seconds,
            ping_timeout=settings.ws_ping_timeout_seconds,
            max_payload=max_payload,
            max_buffered=4 * max_payload,
        )
        self._sessions: dict[str, SioSession] = {}
        # Sessions without a CONNECT yet, by client address.
        self._pending: Counter[str] = Counter()

    def get(self, sid: str) -> SioSession | None:
        return self._sessions.get(sid)

    async def open(
        self,
        found: Services,
        transport: Transport,
        authorization: str | None,
        address: str,
    ) -> SioSession:
        """A new session, running in the app's nursery until it closes."""
        if len(self._sessions) >= self.limits.max_sessions:
            limit_hit("socketio_sessions", sessions=len(self._sessions))
            raise Crowded
        if self._pending[address] >= self.limits.pending_per_address:
            limit_hit("socketio_pending", client=address)
            raise TooManyPending
        self._pending[address] += 1
        session = SioSession(
            found,
            self.limits,
            self.config,
            transport,
            authorization,
            client=address,
            settle=partial(self._settle, address),
            caps=self._caps,
            going_away=self._going_away,
        )
        self._sessions[session.sid] = session
        nursery: trio.Nursery = current_app.nursery  # type: ignore[attr-defined]
        await nursery.start(self._run, session)
        return session

    async def _run(
        self, session: SioSession, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await session.run(task_status=task_status)
        except Exception:
            # A bug in one session ends that session, never the app's nursery (the server).
            log.exception("socket.io session %s crashed", session.sid)
        finally:
            del self._sessions[session.sid]

    def _settle(self, address: str) -> None:
        """A session of `address` connected or closed: one fewer waiting for its CONNECT."""
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]
