"""The load simulator's report: percentiles, the JSON file, the terminal table and the plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tools._sim_ledger import Outcome
from tools._sim_stalls import Stalls

# Latencies in the report, in the order shown, with what each measures.
MEASURES = {
    "end_to_end": "customer sends -> agent receives",
    "ack": "send -> ack (durable)",
    "open_to_assigned": "chat.open sent -> customer told its agent",
    "queue_wait": "the same, for chats that were queued",
    "reassign_wait": "chat lost its agent -> next agent",
    "refill": "agent resolves with chats waiting -> its next chat",
    "schedule_lag": "simulator behind its own send schedule",
}


class PlotUnavailable(Exception):
    """--plot was asked for without matplotlib installed."""


@dataclass(frozen=True, slots=True)
class Summary:
    """Percentiles (nearest rank) of one latency, in milliseconds; None without samples."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Summary:
        if not seconds:
            return cls(0, None, None, None, None)
        ordered = sorted(seconds)

        def rank(percent: float) -> float:
            at = max(math.ceil(percent / 100 * len(ordered)) - 1, 0)
            return round(ordered[at] * 1000, 3)

        return cls(len(ordered), rank(50), rank(95), rank(99), round(ordered[-1] * 1000, 3))


@dataclass(frozen=True, slots=True)
class Messages:
    sent: int
    acked: int
    refused: int
    unacked: int
    per_second: float
    """Messages sent and acknowledged within the measured load (after the warm-up), per
    second of it."""
    offered_per_second: float
    """Messages sent within the measured load, per second of it (what the schedule offered)."""


@dataclass(frozen=True, slots=True)
class Chats:
    opened: int
    assigned: int
    resolved: int
    reassignments: int
    backlog_peak: int
    queue_empty_after_seconds: float | None
    """From the start of the load to the last time the queue emptied (None: never emptied)."""


@dataclass(frozen=True, slots=True)
class AgentChurn:
    drops: int
    aways: int
    reconnects: int


@dataclass(frozen=True, slots=True)
class Memory:
    """The spawned server's resident memory before and after the simulated connections."""

    server_pid: int
    connections: int
    rss_before_kib: int
    rss_after_kib: int
    kib_per_connection: float


@dataclass(frozen=True, slots=True)
class Cpu:
    """CPU time used within the measured load: the spawned server's (all its threads and child
    processes) and the simulator's own, which share the machine."""

    server_seconds: float | None
    simulator_seconds: float
    server_ms_per_message: float | None
    """Server CPU per acknowledged message."""
    server_children_ms_per_message: float | None
    """The part of it in the server's child processes (the store's writer)."""


@dataclass(frozen=True, slots=True)
class Report:
    preset: str
    url: str
    spawned: bool
    scenario: dict[str, Any]
    load_seconds: float
    messages: Messages
    latency_ms: dict[str, Summary]
    chats: Chats
    agents: AgentChurn
    errors: dict[str, int]
    frames_received: dict[str, int]
    invariants: tuple[Outcome, ...]
    memory: Memory | None
    cpu: Cpu | None
    stalls: dict[str, Stalls]
    """Garbage-collection pauses and event-loop lag within the measured load, by process:
    "server" (when its /metrics could be read) and "simulator"."""

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.invariants)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["invariants"] = {
            outcome.name: {
                "ok": outcome.ok,
                "violations": outcome.violations,
                "examples": list(outcome.examples),
            }
            for outcome in self.invariants
        }
        document["ok"] = self.ok
        return document

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _stall_rows(who: str, stalls: Stalls) -> list[tuple[str, str]]:
    at_most = "≤ " if stalls.bounded else ""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{at_most}{value:,.1f} ms"

    return [
        (
            f"GC pauses: {who}",
            f"{stalls.gc_collections} ({stalls.gc_total_ms:,.0f} ms in all), "
            f"longest {ms(stalls.gc_longest_ms)} (CPU {ms(stalls.gc_longest_cpu_ms)})",
        ),
        (
            f"event-loop lag: {who}",
            f"p99 {ms(stalls.loop_lag_p99_ms)}, longest {ms(stalls.loop_lag_longest_ms)}",
        ),
    ]


def render(report: Report) -> RenderableType:
    messages, chats, agents = report.messages, report.chats, report.agents
    where = "spawned" if report.spawned else "running"
    summary = Table(
        title=f"loadsim {report.preset} against {report.url} ({where})", show_header=False
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    empty_after = chats.queue_empty_after_seconds
    rows = [
        ("load measured", f"{report.load_seconds:.1f} s"),
        ("messages acked / s", f"{messages.per_second:,.1f}"),
        ("messages offered / s", f"{messages.offered_per_second:,.1f}"),
        (
            "sent / acked / refused / unacked",
            f"{messages.sent} / {messages.acked} / {messages.refused} / {messages.unacked}",
        ),
        (
            "chats opened / assigned / resolved",
            f"{chats.opened} / {chats.assigned} / {chats.resolved}",
        ),
        ("reassignments", str(chats.reassignments)),
        ("backlog peak", str(chats.backlog_peak)),
        ("queue empty after", "-" if empty_after is None else f"{empty_after:.2f} s"),
        (
            "agent drops / aways / reconnects",
            f"{agents.drops} / {agents.aways} / {agents.reconnects}",
        ),
    ]
    if report.memory is not None:
        memory = report.memory
        rows.append(
            (
                "server RSS per connection",
                f"{memory.kib_per_connection:,.1f} KiB ({memory.connections} connections, "
                f"{memory.rss_before_kib:,} -> {memory.rss_after_kib:,} KiB)",
            )
        )
    if report.cpu is not None:
        cpu = report.cpu
        server = (
            "-"
            if cpu.server_seconds is None
            else f"{cpu.server_seconds:.1f} s ({cpu.server_ms_per_message or 0:.2f} ms/message, "
            f"{cpu.server_children_ms_per_message or 0:.2f} ms in its child processes)"
        )
        rows.append(("CPU: server / simulator", f"{server} / {cpu.simulator_seconds:.1f} s"))
    for who in ("server", "simulator"):
        if who in report.stalls:
            rows.extend(_stall_rows(who, report.stalls[who]))
    for name, value in rows:
        summary.add_row(name, value)

    latency = Table(title="latency (ms)", title_justify="left")
    for column in ("measure", "count", "p50", "p95", "p99", "max"):
        latency.add_column(column, justify="left" if column == "measure" else "right")
    for name, what in MEASURES.items():
        s = report.latency_ms[name]
        latency.add_row(
            Text.assemble(name, (f"  {what}", "dim")),
            str(s.count),
            _ms(s.p50),
            _ms(s.p95),
            _ms(s.p99),
            _ms(s.max),
        )

    checks = Table(title="invariants", title_justify="left")
    for column in ("invariant", "result", "first violations"):
        checks.add_column(column)
    for outcome in report.invariants:
        result = (
            Text("ok", style="green")
            if outcome.ok
            else Text(f"{outcome.violations} violations", style="bold red")
        )
        checks.add_row(outcome.name, result, Text("\n".join(outcome.examples)))

    parts: list[RenderableType] = [summary, latency, checks]
    if report.errors:
        errors = Table(title="errors", title_justify="left")
        errors.add_column("what")
        errors.add_column("count", justify="right")
        for what, count in sorted(report.errors.items()):
            errors.add_row(Text(what), str(count))
        parts.append(errors)
    return Group(*parts)


def plot(
    path: Path,
    title: str,
    timeline: Sequence[tuple[float, float]],
    backlog: Sequence[tuple[float, int]],
    *,
    warmup: float = 0.0,
    latency: Summary | None = None,
) -> None:
    """Latency of each customer message over time, with the queue's length below it: the
    warm-up (left out of the figures) shaded, and the measured p50 and p99 as lines."""
    figure = draw(title, timeline, backlog, warmup=warmup, latency=latency)
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)


def draw(
    title: str,
    timeline: Sequence[tuple[float, float]],
    backlog: Sequence[tuple[float, int]],
    *,
    warmup: float = 0.0,
    latency: Summary | None = None,
) -> Any:
    """The figure `plot` saves (a matplotlib Figure)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'switchboard[plot]' (or matplotlib)"
        ) from None
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=[3, 1])
    top.scatter([t for t, _ in timeline], [v * 1000 for _, v in timeline], s=2, alpha=0.4)
    if warmup > 0:
        for axes in (top, bottom):
            axes.axvspan(0, warmup, color="grey", alpha=0.15, label="warm-up (not measured)")
    if latency is not None:
        for name, value, style in (("p50", latency.p50, "--"), ("p99", latency.p99, "-")):
            if value is not None:
                label = f"{name} {value:,.1f} ms"
                top.axhline(value, color="tab:red", linestyle=style, linewidth=1, label=label)
    if warmup > 0 or latency is not None:
        top.legend(loc="upper right", fontsize="small")
    top.set_ylabel("end-to-end latency (ms)")
    top.set_yscale("log")
    top.set_title(title)
    bottom.step([t for t, _ in backlog], [n for _, n in backlog], where="post")
    bottom.set_ylabel("chats waiting")
    bottom.set_xlabel("seconds since the load started")
    figure.tight_layout()
    return figure
