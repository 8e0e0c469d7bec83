"""Whole-process stalls within loadsim's measured load: garbage-collection pauses and event-loop
lag, of the server and of the simulator itself (whose own stalls would show as latency too).

Both are measured as the server measures them (telemetry's `GcPauses`, `gc.callbacks`, and
`watch_loop_lag`, a 0.1 s sleep woken late). The simulator's come from its own process, exactly.
The server's come from its /metrics (the histograms `switchboard_gc_pause_seconds` and
`switchboard_event_loop_lag_seconds`), read when the measured load starts and when it ends: a
count and a total exactly, the longest and the p99 as the upper bound of their histogram bucket
(`bounded`). /metrics answers a loopback client, or a bearer token; a server that refuses it,
or is not Switchboard, leaves the server's row out.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from telemetry import GcPauses, watch_loop_lag
from tools._remote import metrics_text

GC_METRIC = "switchboard_gc_pause_seconds"
GC_CPU_METRIC = "switchboard_gc_pause_cpu_seconds"
LAG_METRIC = "switchboard_event_loop_lag_seconds"


@dataclass(frozen=True, slots=True)
class Stalls:
    """One process's stalls within the measured load, in milliseconds."""

    gc_collections: int
    gc_total_ms: float
    gc_longest_ms: float | None
    gc_longest_cpu_ms: float | None
    """The CPU the longest-working collection used: its pause without the time the process
    waited for a core (on a busy machine the wall-clock pause includes that wait)."""
    loop_lag_p99_ms: float | None
    loop_lag_longest_ms: float | None
    bounded: bool
    """From histogram buckets: the longest and the p99 are "at most" these."""


# --- the simulator's own -------------------------------------------------------------------------


@dataclass
class OwnStalls:
    """The simulator's pauses and lags, each with when it happened (`time.perf_counter`: a
    collection may run in any thread, where trio's clock cannot be read)."""

    pauses: list[tuple[float, float, float]] = field(default_factory=list)  # at, wall, CPU
    lags: list[tuple[float, float]] = field(default_factory=list)

    def since(self, start: float, end: float) -> Stalls:
        """Those between `start` and `end` on trio's clock (call it from the run)."""
        offset = time.perf_counter() - trio.current_time()
        start, end = start + offset, end + offset
        pauses = [(seconds, cpu) for at, seconds, cpu in self.pauses if start <= at <= end]
        lags = sorted(seconds for at, seconds in self.lags if start <= at <= end)
        return Stalls(
            gc_collections=len(pauses),
            gc_total_ms=_ms(sum(seconds for seconds, _ in pauses)),
            gc_longest_ms=_ms(max(seconds for seconds, _ in pauses)) if pauses else None,
            gc_longest_cpu_ms=_ms(max(cpu for _, cpu in pauses)) if pauses else None,
            loop_lag_p99_ms=_ms(_rank(lags, 0.99)) if lags else None,
            loop_lag_longest_ms=_ms(lags[-1]) if lags else None,
            bounded=False,
        )


@contextmanager
def watching_own_pauses(into: OwnStalls) -> Iterator[None]:
    """Note every collection of this process while the block runs."""

    def paused(generation: int, seconds: float, cpu_seconds: float) -> None:
        into.pauses.append((time.perf_counter(), seconds, cpu_seconds))

    with GcPauses(paused):
        yield


@contextmanager
def collections_held() -> Iterator[None]:
    """No automatic collection in this process while the block (the measured load) runs.

    Under the server's policy (`keep_collections_short`) the simulator still paused for its
    young and middle collections: about 200 a minute, up to 12 to 20 ms each, since what it keeps
    per message survives them all. Every message in flight then was late by the pause, which is
    the simulator's own latency, not the server's. It makes little cyclic garbage (about 30,000
    objects a minute at 200 msg/s), so nothing is collected until the block ends, except the
    full collection the policy still runs when the heap has doubled (counted as a pause). At the
    end what the block made is frozen, so the first young collection after it does not examine
    it all while the last messages drain.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


async def watch_own_lag(
    into: OwnStalls, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    await watch_loop_lag(
        lambda seconds: into.lags.append((time.perf_counter(), seconds)), task_status=task_status
    )


# --- the server's, from its /metrics -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Histogram:
    """A histogram's cumulative bucket counts (upper bound -> count) and sum, all labels added."""

    buckets: dict[float, float]
    total: float

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            {le: count - earlier.buckets.get(le, 0.0) for le, count in self.buckets.items()},
            self.total - earlier.total,
        )

    @property
    def count(self) -> int:
        return int(self.buckets.get(math.inf, 0.0))

    def bound(self, quantile: float) -> float | None:
        """The upper bound of the bucket holding the `quantile` (1.0: the largest value)."""
        if not self.count:
            return None
        wanted = math.ceil(quantile * self.count)
        return next(le for le, count in sorted(self.buckets.items()) if count >= wanted)


async def server_histograms(http: httpx.AsyncClient) -> dict[str, Histogram] | None:
    """The server's stall histograms now, or None when its /metrics cannot be read."""
    text = await metrics_text(http)
    if text is None:
        return None
    return _histograms(text, (GC_METRIC, LAG_METRIC), optional=(GC_CPU_METRIC,))


def _histograms(
    text: str, names: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, Histogram] | None:
    """The histograms `names` (None unless all are there) and those of `optional` found."""
    found: dict[str, Histogram] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in names and family.name not in optional:
            continue
        buckets: dict[float, float] = {}
        total = 0.0
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
        found[family.name] = Histogram(buckets, total)
    return found if all(name in found for name in names) else None


def server_stalls(before: dict[str, Histogram], after: dict[str, Histogram]) -> Stalls:
    gc = after[GC_METRIC].minus(before[GC_METRIC])
    lag = after[LAG_METRIC].minus(before[LAG_METRIC])
    # A server older than the CPU histogram has none.
    cpu = (
        after[GC_CPU_METRIC].minus(before[GC_CPU_METRIC])
        if GC_CPU_METRIC in after and GC_CPU_METRIC in before
        else None
    )
    return Stalls(
        gc_collections=gc.count,
        gc_total_ms=_ms(gc.total),
        gc_longest_ms=_ms_or_none(gc.bound(1.0)),
        gc_longest_cpu_ms=None if cpu is None else _ms_or_none(cpu.bound(1.0)),
        loop_lag_p99_ms=_ms_or_none(lag.bound(0.99)),
        loop_lag_longest_ms=_ms_or_none(lag.bound(1.0)),
        bounded=True,
    )


def _rank(ordered: Sequence[float], quantile: float) -> float:
    return ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else _ms(seconds)
