"""The benchmarks' `--store`: every run on a store of its own, a MongoDB database dropped after."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from pymongo import MongoClient
from rich.console import Console

from store import open_store
from tests.store.mongo_server import running_wire_server
from tools import bench_socketio
from tools._bench_store import bench_store, check_store, describe


def test_only_the_stores_a_benchmark_can_make_fresh_are_accepted() -> None:
    for spec in ("sqlite", "memory://", "mongodb://127.0.0.1:27017/x", "mongodb+srv://h/x"):
        assert check_store(spec) == spec
    for spec in ("sqlite:///shared.db", "postgres://h/x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="sqlite, memory:// or a mongodb"):
            check_store(spec)
    assert (
        describe("mongodb://user:secret@db.example:27017/x?tls=true")
        == "mongodb://db.example:27017"
    )


async def test_sqlite_is_a_new_file_in_the_run_folder(tmp_path: Path) -> None:
    async with bench_store("sqlite", tmp_path) as url:
        assert url == f"sqlite:///{tmp_path / 'bench.db'}"


def _databases(url: str) -> list[str]:
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    with client:
        return client.list_database_names()


async def test_a_mongodb_run_gets_a_database_of_its_own_dropped_at_the_end(tmp_path: Path) -> None:
    with running_wire_server(tmp_path / "nx") as server:
        async with bench_store(server.url, tmp_path) as url:
            name = url.partition("://")[2].partition("/")[2].partition("?")[0]
            assert name.startswith("switchboard_bench_")
            async with open_store(url) as store:
                assert await store.count_users() == 0
            assert name in await trio.to_thread.run_sync(_databases, server.url)
        assert name not in await trio.to_thread.run_sync(_databases, server.url)


async def test_the_socketio_benchmark_server_opens_the_store_made_for_its_run(
    tmp_path: Path,
) -> None:
    async with bench_store("sqlite", tmp_path) as url:
        served = bench_socketio.arguments().parse_args(
            ["--agents", "2", *bench_socketio.serve_args(4, url, tmp_path)]
        )
    assert (served.serve, served.store_url, served.customers) == (tmp_path, url, 4)


async def test_a_fixed_rate_waits_until_the_servers_store_calls_stand_still(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Receipts the closed loop left: the count moves for the first 2 s, then stands still.
    began = trio.current_time()

    async def calls() -> Counter[str]:
        moving = min(trio.current_time() - began, 2.0)
        # Each read of /metrics is a read of the store too: not something left to write.
        return Counter({"mark_messages": int(moving * 10), "get_user": int(trio.current_time())})

    waited = await bench_socketio.settle(calls, quiet=0.5, poll=0.1, limit=30.0)
    assert waited is not None
    assert 2.5 <= waited <= 2.7


async def test_a_server_that_never_settles_gets_its_fixed_rate_after_the_limit(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def calls() -> Counter[str]:
        return Counter({"append_messages": int(trio.current_time() * 100)})

    assert await bench_socketio.settle(calls, quiet=0.5, poll=0.1, limit=3.0) == pytest.approx(
        3.0, abs=0.11
    )


async def test_unreadable_metrics_start_the_fixed_rate_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def unread() -> None:
        return None

    began = trio.current_time()
    assert await bench_socketio.settle(unread) is None
    assert trio.current_time() == began


def test_the_store_servers_cpu_is_shown_per_delivered_message_in_each_phase() -> None:
    args = bench_socketio.arguments().parse_args(["--store-pid", "4242", "--rates", "200"])
    report = bench_socketio.SioBenchReport(
        closed={"delivered": 1000, "acked": 1000, "perSecond": 200.0, "refused": 0},
        rates=[
            {"rate": 200.0, "offered": 1000, "delivered": 500, "acked": 500, "refused": 0}
            | {"p50": 1.0, "p99": 2.0}
        ],
        rss_kib={"idle": 1024, "ready": 1024, "closed loop": 1024, "200/s": 1024},
        store_cpu_seconds=[0.8, 0.6],
        settled_seconds=[1.5],
    )
    report.closed["clientCpuSeconds"] = 0.1
    console = Console(width=200, record=True)
    bench_socketio.show(report, args, console)
    text = console.export_text()
    assert (
        "store server (pid 4242) CPU per delivered message: closed loop 0.80 ms, 200/s 1.20 ms"
        in text
    )
    assert "stood still for 0.5 s: after 1.5 s" in text


def test_the_servers_cpu_says_how_much_was_in_its_child_processes() -> None:
    args = bench_socketio.arguments().parse_args(["--rates", "200"])
    report = bench_socketio.SioBenchReport(
        closed={"delivered": 1000, "acked": 1000, "perSecond": 200.0, "refused": 0},
        rss_kib={"idle": 1024, "ready": 1024, "closed loop": 1024},
        server_cpu_seconds=0.36,
        server_children_cpu_seconds=0.1,
    )
    report.closed["clientCpuSeconds"] = 0.1
    console = Console(width=200, record=True)
    bench_socketio.show(report, args, console)
    assert (
        "CPU per delivered message in the closed loop: server 0.36 ms (0.10 ms in its child "
        "processes), Node client 0.10 ms" in console.export_text()
    )
