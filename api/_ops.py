"""For the operator: `/healthz` (the process answers), `/readyz` (it can do its work) and
`/metrics` (Prometheus), kept out of /openapi.json: they are not part of the chat API.

`/readyz` runs two checks, each cheap enough to poll every second: the store answers a
primary-key read within `READY_SECONDS`, and the assignment actor is running (not stopped, not
between a crash and its restart) with its last routing write stored. Each check is one entry
of `Readiness.checks`, so a new condition is one more entry. A store call is never abandoned
once started, so the read runs in the app's nursery, at most one at a time, and a check that
gives up waiting for it leaves it running for the next check to pick up.

`/metrics` answers a loopback client that came straight (no proxy header) or, when
SWITCHBOARD_METRICS_TOKEN is set, whoever sends it as a bearer token: it reveals how busy the
desk is, which is nobody else's business.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio
from quart import Blueprint, Response, current_app, jsonify, request
from quart_schema import hide

from actors import System
from api._errors import error_response
from api._services import services
from store import AccountStore
from telemetry import READY, event, exposition, set_routing_state

log = logging.getLogger("api.ops")

ops = Blueprint("ops", __name__)

READY_SECONDS = 1.0
"""How long /readyz waits for the store before it calls it not ready."""
SNAPSHOT_SECONDS = 1.0
"""How long /metrics waits for the assignment actor's snapshot (the queue, the agents)."""
PROBE_ID = "0" * 24
"""A user id no record has: the store's cheapest real read."""
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

Check = Callable[[], Awaitable[str | None]]
"""A readiness condition: None when it holds, else what is wrong (one line)."""


class Readiness:
    """The conditions /readyz reports; `problems()` runs them all."""

    def __init__(self, store: AccountStore, system: System) -> None:
        self._store = store
        self._system = system
        self._probe: trio.Event | None = None
        self._store_problem: str | None = None
        self._was_ready: bool | None = None
        self.checks: dict[str, Check] = {
            "store": self._store_answers,
            "assignment": self._assigning,
        }

    async def problems(self) -> dict[str, str | None]:
        found = {name: await check() for name, check in self.checks.items()}
        ready = not any(found.values())
        READY.set(ready)
        if ready != self._was_ready:
            self._was_ready = ready
            level = logging.INFO if ready else logging.WARNING
            reasons = {name: problem for name, problem in found.items() if problem}
            event(log, "readiness", level=level, ready=ready, **reasons)
        return found

    async def _assigning(self) -> str | None:
        if self._system.assignment_running:
            return None
        return (
            "the assignment actor is not running (restarting or stopped)"
            " or cannot store its decisions"
        )

    async def _store_answers(self) -> str | None:
        if self._probe is None:
            self._probe = trio.Event()
            nursery: trio.Nursery = current_app.nursery  # type: ignore[attr-defined]
            nursery.start_soon(self._read_store, self._probe)
        probe = self._probe
        with trio.move_on_after(READY_SECONDS):
            await probe.wait()
            return self._store_problem
        return f"the store did not answer within {READY_SECONDS:g} s"

    async def _read_store(self, done: trio.Event) -> None:
        try:
            await self._store.get_user(PROBE_ID)
        except Exception as error:  # whatever it is, the store cannot serve: that is the answer
            self._store_problem = f"the store failed: {error}"
        else:
            self._store_problem = None
        finally:
            self._probe = None
            done.set()


READINESS_KEY = "switchboard.readiness"


def readiness() -> Readiness:
    app = current_app
    found = app.extensions.get(READINESS_KEY)
    if found is None:
        the_services = services()
        found = app.extensions[READINESS_KEY] = Readiness(the_services.store, the_services.system)
    assert isinstance(found, Readiness)
    return found


@ops.get("/healthz")
@hide
async def healthz() -> Response:
    return jsonify({"status": "ok"})


@ops.get("/readyz")
@hide
async def readyz() -> Response:
    checks = await readiness().problems()
    problems = {name: problem for name, problem in checks.items() if problem}
    if problems:
        return error_response(
            503,
            "not_ready",
            "; ".join(f"{name}: {problem}" for name, problem in problems.items()),
            {name: problem or "ok" for name, problem in checks.items()},
        )
    return jsonify({"status": "ready", "checks": {name: "ok" for name in checks}})


@ops.get("/metrics")
@hide
async def metrics() -> Response:
    refusal = _refusal(services().settings.metrics_token)
    if refusal is not None:
        return refusal
    await _read_routing_state(services().system)
    await readiness().problems()  # switchboard_ready is current whether or not /readyz is polled
    body, content_type = exposition()
    return Response(body, content_type=content_type)


async def _read_routing_state(system: System) -> None:
    """The gauges that come from the assignment actor's state, when it answers in time."""
    actors = [(actor.name, actor.mailbox_depth) for actor in system.actor_states()]
    with trio.move_on_after(SNAPSHOT_SECONDS):
        snapshot = await system.snapshot()
        core = snapshot.core
        agents = Counter((agent.status.value, agent.connections > 0) for agent in core.agents)
        oldest = max((snapshot.now - entry.waiting_since for entry in core.queue), default=0.0)
        set_routing_state(len(core.queue), oldest, agents, actors)
        return
    unknown = float("nan")  # the assignment actor did not answer in time
    set_routing_state(unknown, unknown, {}, actors)


def _refusal(token: str | None) -> Response | None:
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        return error_response(
            401,
            "unauthorized",
            "/metrics needs 'Authorization: Bearer <SWITCHBOARD_METRICS_TOKEN>'",
        )
    if _loopback(request.remote_addr) and not any(h in request.headers for h in PROXY_HEADERS):
        return None
    return error_response(
        403,
        "forbidden",
        "/metrics answers only this machine (loopback, not through a proxy); set "
        "SWITCHBOARD_METRICS_TOKEN to scrape it from elsewhere with a bearer token",
    )


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
