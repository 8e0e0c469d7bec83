"""Switchboard's Prometheus metric families (prometheus-client's default registry, which also
carries the process's CPU, memory and open files and Python's collection counts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest

# A `_created` series beside every counter and histogram doubles the page for nothing Prometheus
# needs (it sees restarts as resets anyway).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds, from a fast store call to a request that gave up waiting.
LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Whole-process stalls: a millisecond is noticeable, a second is an outage.
PAUSES = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Collections: as PAUSES, with millisecond steps around the 5 ms target (issue 21), so that a
# report can tell a 5.1 ms pause from a 9.9 ms one.
GC_PAUSE_BUCKETS = (
    0.0001,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.006,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

HTTP_REQUESTS = Counter(
    "switchboard_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "switchboard_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ["method", "route"],
    buckets=LATENCY,
)
CONNECTIONS = Gauge(
    "switchboard_connections",
    "Live client connections by edge (ws, socketio) and role",
    ["edge", "role"],
)
CONNECTIONS_CLOSED = Counter(
    "switchboard_connections_closed",
    "Client connections ended, by edge and close code (websocket code, or Socket.IO reason)",
    ["edge", "code"],
)
MESSAGES_STORED = Counter(
    "switchboard_messages_stored", "Chat messages stored durably, by the sender's role", ["role"]
)
MESSAGES_DELIVERED = Counter(
    "switchboard_messages_delivered",
    "Chat messages written to the recipient's connection, by edge",
    ["edge"],
)
ACK_SECONDS = Histogram(
    "switchboard_message_ack_seconds",
    "From a message's arrival on a connection to its acknowledgement (stored durably)",
    ["edge"],
    buckets=LATENCY,
)
DELIVERY_SECONDS = Histogram(
    "switchboard_message_end_to_end_seconds",
    "From a message's creation to its write to the recipient's connection",
    ["edge"],
    buckets=LATENCY,
)
QUEUE_LENGTH = Gauge("switchboard_queue_length", "Chats waiting for an agent")
QUEUE_OLDEST = Gauge(
    "switchboard_queue_oldest_wait_seconds", "How long the chat waiting longest has waited"
)
ASSIGNMENTS = Counter(
    "switchboard_assignments",
    "Chats given to an agent, by reason: new (its first agent), requeued (after it lost its "
    "agent or was parked), admin (moved by an admin)",
    ["reason"],
)
UNASSIGNMENTS = Counter(
    "switchboard_unassignments",
    "Chats taken from their agent, by reason: agent_away, agent_disconnected (grace period "
    "over), agent_removed, parked (waiting for the customer), restored (after a restart), other",
    ["reason"],
)
AGENTS = Gauge(
    "switchboard_agents",
    "Agents by shown status (available, busy, away) and whether they have a live connection",
    ["status", "connected"],
)
ACTORS = Gauge("switchboard_actors", "Running actors by kind", ["kind"])
MAILBOX_DEPTH = Gauge(
    "switchboard_actor_mailbox_depth",
    "Messages waiting in actor mailboxes: the deepest mailbox of each kind",
    ["kind"],
)
ACTOR_RESTARTS = Counter(
    "switchboard_actor_restarts", "Actors restarted after a crash, by kind", ["kind"]
)
STORE_SECONDS = Histogram(
    "switchboard_store_call_duration_seconds",
    "Store calls by operation, failed ones included",
    ["operation"],
    buckets=LATENCY,
)
STORE_ERRORS = Counter(
    "switchboard_store_errors",
    "Store calls that failed, by operation and error: unavailable (the database cannot be "
    "reached) or the exception's name",
    ["operation", "error"],
)
LIMIT_EVENTS = Counter(
    "switchboard_limit_events",
    "Requests, frames and connections refused or cut by a limit, by limit",
    ["limit"],
)
LOOP_LAG = Histogram(
    "switchboard_event_loop_lag_seconds",
    "How much later than asked the event loop woke a task sleeping 0.1 s: time every task "
    "waited through",
    buckets=PAUSES,
)
GC_PAUSES = Histogram(
    "switchboard_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector, by generation",
    ["generation"],
    buckets=GC_PAUSE_BUCKETS,
)
GC_PAUSE_CPU = Histogram(
    "switchboard_gc_pause_cpu_seconds",
    "CPU time each pause of the cyclic garbage collector used, by generation: the pause "
    "without the time the process waited for a core (the collector's own work)",
    ["generation"],
    buckets=GC_PAUSE_BUCKETS,
)
READY = Gauge(
    "switchboard_ready",
    "1 when the last readiness check passed (the store answers, the assignment actor runs)",
)

# Label values known in advance are created at once, so a dashboard shows 0 instead of nothing.
for _edge in ("ws", "socketio"):
    for _role in ("agent", "customer", "admin"):
        CONNECTIONS.labels(_edge, _role)
    MESSAGES_DELIVERED.labels(_edge)
for _reason in ("new", "requeued", "admin"):
    ASSIGNMENTS.labels(_reason)
for _status in ("available", "busy", "away"):
    for _connected in ("yes", "no"):
        AGENTS.labels(_status, _connected)


def actor_kind(name: str) -> str:
    """Actors are named `kind` or `kind:id` (`supervisor`, `chat:<id>`)."""
    return name.partition(":")[0]


def set_routing_state(
    queue_length: float,
    oldest_wait: float,
    agents: Mapping[tuple[str, bool], int],
    actors: Iterable[tuple[str, int]],
) -> None:
    """The gauges read at scrape time: the queue, agents by (status, connected), and each
    running actor's (name, mailbox depth). NaN: not known now."""
    QUEUE_LENGTH.set(queue_length)
    QUEUE_OLDEST.set(oldest_wait)
    for status in ("available", "busy", "away"):
        for connected in (True, False):
            count = agents.get((status, connected), 0)
            AGENTS.labels(status, "yes" if connected else "no").set(count)
    counts: dict[str, int] = {}
    deepest: dict[str, int] = {}
    for name, depth in actors:
        kind = actor_kind(name)
        counts[kind] = counts.get(kind, 0) + 1
        deepest[kind] = max(deepest.get(kind, 0), depth)
    _actor_kinds.update(counts)
    for kind in _actor_kinds:  # a kind with no actor left shows 0, not its last value
        ACTORS.labels(kind).set(counts.get(kind, 0))
        MAILBOX_DEPTH.labels(kind).set(deepest.get(kind, 0))


_actor_kinds: set[str] = set()


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format of every metric, and its content type."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST
