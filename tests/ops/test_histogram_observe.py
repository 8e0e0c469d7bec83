"""The per-message histograms' `observe` (telemetry's `Observe`, bisecting for the bucket) moves
exactly the samples prometheus_client's own `observe` moves, at and between every bound."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram

from telemetry._events import Observe

BOUNDS = (0.001, 0.005, 0.01, 0.1, 1.0)
AMOUNTS = [
    -1.0,
    0.0,
    0.0005,
    0.001,
    0.0010001,
    0.005,
    0.05,
    0.1,
    1.0,
    1.5,
    1e9,
    math.inf,
    math.nan,
]


def samples(histogram: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for metric in histogram.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    ]


def test_observe_moves_the_samples_prometheus_moves() -> None:
    theirs = Histogram("t", "t", ["edge"], buckets=BOUNDS, registry=CollectorRegistry())
    ours = Histogram("t", "t", ["edge"], buckets=BOUNDS, registry=CollectorRegistry())
    fast = Observe(ours.labels("ws"))
    for amount in AMOUNTS:
        theirs.labels("ws").observe(amount)
        fast.observe(amount)
        if math.isnan(amount):  # the last: both sums are NaN, which equals nothing
            assert [s for s in samples(ours) if s[0] != "t_sum"] == [
                s for s in samples(theirs) if s[0] != "t_sum"
            ]
        else:
            assert samples(ours) == samples(theirs), amount
