"""The events an operator watches, each one call: a log line and the metrics that go with it.

Call sites stay one line long; what is logged and counted for an event is decided here, once.
"""

from __future__ import annotations

import functools
import logging
from bisect import bisect_left
from typing import Any

import trio

from telemetry import _metrics as m
from telemetry._logs import event
from telemetry._runtime import GcPauses, watch_loop_lag

http_log = logging.getLogger("api.http")
routing_log = logging.getLogger("actors.routing")
actors_log = logging.getLogger("actors")
store_log = logging.getLogger("store")
limits_log = logging.getLogger("api.limits")

UNMATCHED_ROUTE = "<unmatched>"
"""The route label of a request no route matched (its path is not used: unbounded)."""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def http_request(
    method: str,
    route: str | None,
    status: int,
    seconds: float,
    *,
    principal: str | None,
    client: str | None,
) -> None:
    """One HTTP request answered (the route's template, never the path with its ids)."""
    template = route or UNMATCHED_ROUTE
    m.HTTP_REQUESTS.labels(method, template, str(status)).inc()
    m.HTTP_SECONDS.labels(method, template).observe(seconds)
    level = logging.WARNING if status >= 500 else logging.INFO
    event(
        http_log,
        "http.request",
        level=level,
        method=method,
        route=template,
        status=status,
        ms=_ms(seconds),
        principal=principal,
        client=client,
    )


def connection_opened(
    edge: str, role: str, *, session: str, principal: str, client: str | None, transport: str
) -> None:
    """A websocket or Socket.IO connection is authenticated and live."""
    m.CONNECTIONS.labels(edge, role).inc()
    event(
        logging.getLogger(f"api.{edge}"),
        f"{edge}.connect",
        session=session,
        principal=principal,
        role=role,
        client=client,
        transport=transport,
    )


def connection_closed(
    edge: str,
    role: str,
    *,
    session: str,
    principal: str,
    code: int | str,
    reason: str,
    seconds: float,
) -> None:
    """A connection `connection_opened` announced has ended, with its close code and why."""
    m.CONNECTIONS.labels(edge, role).dec()
    m.CONNECTIONS_CLOSED.labels(edge, str(code)).inc()
    event(
        logging.getLogger(f"api.{edge}"),
        f"{edge}.close",
        session=session,
        principal=principal,
        role=role,
        code=code,
        reason=reason,
        seconds=round(seconds, 3),
    )


def message_acknowledged(edge: str, seconds: float) -> None:
    _histogram(m.ACK_SECONDS, edge).observe(seconds)


def message_delivered(edge: str, seconds: float) -> None:
    _child(m.MESSAGES_DELIVERED, edge).inc()
    _histogram(m.DELIVERY_SECONDS, edge).observe(max(seconds, 0.0))


def message_stored(role: str) -> None:
    _child(m.MESSAGES_STORED, role).inc()


def limit_hit(which: str, /, **fields: object) -> None:
    """A limit refused or cut something: a sign-in throttle, a flood, a frame or body too big,
    a slow reader, too many sessions."""
    m.LIMIT_EVENTS.labels(which).inc()
    event(limits_log, "limit", level=logging.WARNING, limit=which, **fields)


def routing_decision(
    decision: str, category: str, *, chat: str, agent: str, by: str, reason: str
) -> None:
    """`assigned` or `unassigned`, with the activity log's reason (names agents, never
    customers' words) and the metric's bounded category of it."""
    family = m.ASSIGNMENTS if decision == "assigned" else m.UNASSIGNMENTS
    family.labels(category).inc()
    event(
        routing_log,
        f"chat.{decision}",
        chat=chat,
        agent=agent,
        by=by,
        category=category,
        reason=reason,
    )


def actor_restarted(name: str, restarts: int) -> None:
    m.ACTOR_RESTARTS.labels(m.actor_kind(name)).inc()
    event(actors_log, "actor.restarted", level=logging.WARNING, actor=name, restarts=restarts)


def store_call(operation: str, seconds: float) -> None:
    _histogram(m.STORE_SECONDS, operation).observe(seconds)


@functools.cache
def _child(family: Any, label: str) -> Any:
    """`family.labels(label)`, looked up once: `labels` takes a lock and builds a key, and these
    run for every message (their labels are few: edges, roles, store operations)."""
    return family.labels(label)


class Observe:
    """A labelled histogram's `observe`, finding the bucket by bisection: prometheus_client
    compares the amount with each bound in turn, in Python, and these run for every message.
    The same buckets and sum change as with its `observe` (a NaN counts in the sum only)."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Any) -> None:
        self._bounds: list[float] = list(child._upper_bounds)
        self._buckets = child._buckets
        self._sum = child._sum

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        bounds = self._bounds
        at = bisect_left(bounds, amount)
        if at < len(bounds) and amount <= bounds[at]:
            self._buckets[at].inc(1)


@functools.cache
def _histogram(family: Any, label: str) -> Observe:
    return Observe(family.labels(label))


def store_failed(operation: str, error: BaseException, *, unavailable: bool) -> None:
    kind = "unavailable" if unavailable else type(error).__name__
    m.STORE_ERRORS.labels(operation, kind).inc()
    event(
        store_log,
        "store.error",
        level=logging.WARNING if unavailable else logging.ERROR,
        operation=operation,
        error=kind,
        detail=str(error),
    )


async def watch_runtime(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """For the process's life: garbage-collection pauses and event-loop lag into their
    histograms."""

    def paused(generation: int, seconds: float, cpu_seconds: float) -> None:
        m.GC_PAUSES.labels(str(generation)).observe(seconds)
        m.GC_PAUSE_CPU.labels(str(generation)).observe(cpu_seconds)

    with GcPauses(paused):
        await watch_loop_lag(m.LOOP_LAG.observe, task_status=task_status)


def store_writer_ended(pid: int, exit_code: int | None) -> None:
    event(
        store_log,
        "store.writer_ended",
        level=logging.WARNING,
        pid=pid,
        exit_code=exit_code,
        detail="the SQLite writer process ended; the next write starts another",
    )
