"""The server's stalls as loadsim reads them from /metrics: the window's difference of two
scrapes, the longest as its histogram bucket's bound. And the simulator's own collections, held
while the load runs."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tools._sim_stalls import (
    GC_CPU_METRIC,
    GC_METRIC,
    LAG_METRIC,
    _histograms,
    collections_held,
    server_stalls,
)

BUCKETS = (0.001, 0.005, 0.01, 0.1)


def test_only_what_happened_between_the_two_scrapes_counts() -> None:
    registry = CollectorRegistry()
    gc = Histogram(GC_METRIC, "gc", ["generation"], buckets=BUCKETS, registry=registry)
    lag = Histogram(LAG_METRIC, "lag", buckets=BUCKETS, registry=registry)
    cpu = Histogram(GC_CPU_METRIC, "gc cpu", ["generation"], buckets=BUCKETS, registry=registry)
    gc.labels("2").observe(0.08)  # before the window: not the window's longest
    cpu.labels("2").observe(0.07)
    lag.observe(0.05)

    def scrape() -> str:
        return generate_latest(registry).decode()

    before = _histograms(scrape(), (GC_METRIC, LAG_METRIC), optional=(GC_CPU_METRIC,))
    for seconds in (0.0004, 0.0004, 0.003):
        gc.labels("0").observe(seconds)
        cpu.labels("0").observe(seconds / 4)  # the rest of each pause: waiting for a core
    gc.labels("1").observe(0.004)
    for _ in range(99):
        lag.observe(0.0005)
    lag.observe(0.007)
    cpu.labels("1").observe(0.0008)
    after = _histograms(scrape(), (GC_METRIC, LAG_METRIC), optional=(GC_CPU_METRIC,))
    assert before is not None
    assert after is not None

    stalls = server_stalls(before, after)
    assert stalls.gc_collections == 4
    assert stalls.gc_total_ms == 7.8
    assert stalls.gc_longest_ms == 5.0  # in the bucket up to 5 ms
    assert stalls.gc_longest_cpu_ms == 1.0  # at most 0.8 ms of CPU: the bucket up to 1 ms
    assert stalls.loop_lag_p99_ms == 1.0
    assert stalls.loop_lag_longest_ms == 10.0
    assert stalls.bounded


def test_a_server_without_the_histograms_has_no_stalls() -> None:
    assert _histograms("# nothing here\n", (GC_METRIC, LAG_METRIC)) is None


def test_no_collection_runs_while_the_load_is_held_and_what_it_made_is_frozen_after() -> None:
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    frozen_before = gc.get_freeze_count()
    gc.callbacks.append(note)
    try:
        with collections_held():
            assert not gc.isenabled()
            kept = []
            for _ in range(20_000):  # far past every young threshold
                cycle: list[object] = []
                cycle.append(cycle)
                kept.append(cycle)
            assert collected == []
        assert gc.isenabled()
        # The load's survivors are not examined by the next young collections.
        assert gc.get_freeze_count() >= frozen_before + len(kept)
    finally:
        gc.callbacks.remove(note)
        gc.unfreeze()
