"""What a chaos run is asked to do (`ChaosPlan`), its bounds, and what it reports."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tools._remote import RideOut
from tools.chaos_check import (
    Verdict,
)

Frame = dict[str, Any]

# Secrets of the server under test only.
STAFF_SECRET = "chaos-staff-secret-0123456789abcdef0123456789"
CUSTOMER_SECRET = "chaos-customer-secret-0123456789abcdef012345"
ADMIN_EMAIL = "admin@switchboard.example"
DEMO_AGENTS = ("ann@switchboard.example", "bob@switchboard.example", "cy@switchboard.example")
DEMO_PASSWORD = "switchboard-demo"
AGENT_PASSWORD = "chaos-agent-password"

CONNECT_SECONDS = 5.0  # one websocket handshake
REST_SECONDS = 10.0  # one REST call
REST_ATTEMPTS = 60
RECONNECT_ATTEMPTS = 100  # in a row, without a connection lasting
BACKOFF_FIRST, BACKOFF_CAP = 0.02, 0.5
# REST calls ride out the restarts the run causes; reconnects back off alike.
RIDE_OUT = RideOut(REST_ATTEMPTS, REST_SECONDS, BACKOFF_FIRST, BACKOFF_CAP)
ACK_SECONDS = 30.0  # an ack overdue this long on a live connection: reconnect
SETTLE_SECONDS = 30.0
SETTLE_ATTEMPTS = 5
WINDOW_RETRY_SECONDS = 0.05  # before resending a message the server could not take just then
_TITLE = re.compile(r"chaos (\d+)")
# Refusals that mean "not now": the message stays unacknowledged and is sent again.
_TRANSIENT = frozenset({"unavailable", "store_unavailable", "overloaded", "internal"})
# Refusals that mean the agent no longer has the chat (a chat not yours reads as not found).
_NOT_YOURS = frozenset({"chat_not_found", "not_a_participant", "chat_not_active", "chat_resolved"})


class ChaosError(Exception):
    """The run could not go on (a client gave up, the server would not start)."""


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    chats: int = 50
    messages: int = 400  # per chat: the customer sends the first half, the agents the rest
    kills: int = 10
    seed: int = 0
    # SIGKILLs of SQLite's writer process alone (the server stays up and starts another): the
    # batch it held fails as store_unavailable, and its writes are retried.
    writer_kills: int = 0
    churn: int = 0  # agents stepping away and back, admin reassigns and max-load changes
    agents: int = 0  # 0: one per 5 chats, at least 3
    window: int = 4  # messages a client has unacknowledged at once, per chat
    grace_seconds: float = 5.0
    store: str | None = None  # a store URL; default SQLite in the work directory
    # Whether the store writes a routing decision and its activity-log entries atomically
    # (SQLite, a MongoDB replica set). A standalone MongoDB does not: a kill between the two
    # leaves log entries for a decision that never took effect (README, MongoDB), so there the
    # kills wait until every chat is assigned (runs without churn make no decisions after that).
    atomic_routing: bool = True
    time_limit: float = 600.0
    # Cluster mode: this many nodes on one bus (a Valkey/Redis URL) and the store (MongoDB);
    # the clients spread over them, and every other kill is the arbiter's node.
    nodes: int = 1
    bus: str | None = None
    lease_seconds: float = 2.0

    @property
    def customer_messages(self) -> int:
        return (self.messages + 1) // 2

    @property
    def agent_messages(self) -> int:
        return self.messages // 2

    @property
    def agent_count(self) -> int:
        return self.agents or max(3, math.ceil(self.chats / 5))

    @property
    def max_load(self) -> int:
        """Each agent's: room for every chat with one agent away and every max load lowered by
        one (the churn does both)."""
        return min(100, math.ceil(self.chats / max(1, self.agent_count - 1)) + 1)


@dataclass(slots=True)
class Stats:
    acked: int = 0
    resends: int = 0
    abandoned: int = 0  # unacknowledged when the agent lost the chat
    reconnects: int = 0  # connections made again after one ended
    failed_connects: int = 0  # attempts the server refused or did not answer (it was down)
    ack_stalls: int = 0
    gaps: int = 0  # a message arrived ahead of one missing
    duplicates: int = 0  # a message shown already arrived again
    resumes: int = 0
    reloads: int = 0  # resume said the gap was too large: reloaded over REST
    restart_seconds: list[float] = field(default_factory=list)  # kill to serving again
    takeover_seconds: list[float] = field(default_factory=list)  # arbiter killed to a new one
    churn_ops: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)


@dataclass(slots=True)
class ChaosReport:
    plan: ChaosPlan
    store_url: str
    kills_survived: int
    writer_kills_survived: int
    seconds: float
    stats: Stats
    stored_messages: int
    stored_unacked: int
    verdict: Verdict

    @property
    def ok(self) -> bool:
        return (
            self.verdict.ok
            and self.kills_survived == self.plan.kills
            and self.writer_kills_survived == self.plan.writer_kills
        )

    def lines(self) -> list[str]:
        plan, stats = self.plan, self.stats
        store = self.store_url.partition("://")[0]
        return [
            f"chaos: seed {plan.seed}, {store} store, {plan.chats} chats x {plan.messages} "
            f"messages, {plan.agent_count} agents, {plan.kills} kills, {plan.churn} churn ops",
            f"kills survived: {self.kills_survived} in {self.seconds:.1f} s "
            f"(restarts took {_spread(stats.restart_seconds)} s)",
            *(
                [f"writer kills survived: {self.writer_kills_survived} of {plan.writer_kills}"]
                if plan.writer_kills
                else []
            ),
            *(
                [
                    f"cluster: {plan.nodes} nodes, lease {plan.lease_seconds} s; "
                    f"{len(stats.takeover_seconds)} arbiter kills, takeover "
                    f"{_spread(stats.takeover_seconds)} s (target: lease + 1 s)"
                ]
                if plan.nodes > 1
                else []
            ),
            f"messages: {stats.acked} acknowledged, {self.stored_messages} stored "
            f"({self.stored_unacked} stored but never acknowledged), {stats.resends} resent, "
            f"{stats.abandoned} abandoned with a lost chat",
            f"clients: {stats.reconnects} reconnects ({stats.failed_connects} attempts failed), "
            f"{stats.resumes} resumes, {stats.reloads} "
            f"REST reloads, {stats.gaps} gaps, {stats.duplicates} duplicates, "
            f"{stats.ack_stalls} ack stalls",
            f"closes: { {int(code): n for code, n in stats.closes.items()} }; "
            f"refusals: {dict(stats.refusals)}; "
            f"churn: {dict(stats.churn_ops)}",
            *self.verdict.lines(),
        ]


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.1f}-{max(values):.1f}, mean {sum(values) / len(values):.1f}"
