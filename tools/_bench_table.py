"""The table the timing benchmarks print: median, p90 and mean of each kind of request."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from rich.table import Table


def timing_table(title: str, first_column: str, timings: Mapping[str, Sequence[float]]) -> Table:
    table = Table(title=title)
    for column in (first_column, "median", "p90", "mean"):
        table.add_column(column, justify="left" if column == first_column else "right")
    for name, values in timings.items():
        deciles = statistics.quantiles(values, n=10)
        table.add_row(
            name,
            f"{statistics.median(values):.2f}",
            f"{deciles[-1]:.2f}",
            f"{statistics.fmean(values):.2f}",
        )
    return table
