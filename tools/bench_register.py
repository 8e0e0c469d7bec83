"""Benchmark: a registration flood against a real server, and its health check meanwhile.

`POST /auth/register` hashes a password with argon2id: a core and 64 MiB for a fraction of a
second. Unbounded, 40 registrations at once grew a server from 77 MiB to 1.3 GiB; now at most
`SWITCHBOARD_PASSWORD_HASH_CONCURRENCY` hash at once and the others wait their turn (503 busy
past `SWITCHBOARD_PASSWORD_QUEUE_SECONDS`), and an address registers at most
`SWITCHBOARD_REGISTER_PER_ADDRESS` accounts a window (429 beyond).

`switchboard serve` runs as a subprocess (development mode, a fresh SQLite store); `--requests`
registrations start at once, spread over `--addresses` loopback addresses (127.0.0.2, ...),
while one client asks `GET /healthz` again and again. Printed: the server's RSS before and at
its peak (sampled every 50 ms), the CPU it spent, the answers by status, and the health
check's latency beside its floor (the same request before the flood).

    python -m tools.bench_register [--requests 40] [--addresses 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
from rich.console import Console
from rich.table import Table

from tools._server import rss_kib, server_cpu_seconds
from tools._sim_server import spawn_server

FLOOR_PROBES = 20


@dataclass
class Flood:
    rss_before_kib: int
    rss_peak_kib: int
    cpu_seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: set[str] = field(default_factory=set)
    health_floor_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_statuses: Counter[int] = field(default_factory=Counter)


async def _timed_health(http: httpx.AsyncClient) -> tuple[float, int]:
    started = time.perf_counter()
    response = await http.get("/healthz")
    return (time.perf_counter() - started) * 1000, response.status_code


async def flood(requests: int, addresses: int) -> Flood:
    """Flood a fresh server with `requests` registrations from `addresses` addresses."""
    with tempfile.TemporaryDirectory() as folder:
        async with (
            spawn_server(Path(folder)) as server,
            httpx.AsyncClient(base_url=server.url, timeout=60) as health,
        ):
            floor = [(await _timed_health(health))[0] for _ in range(FLOOR_PROBES)]
            result = Flood(
                rss_before_kib=rss_kib(server.pid) or 0,
                rss_peak_kib=0,
                cpu_seconds=-(server_cpu_seconds(server.pid) or 0.0),
                health_floor_ms=floor,
            )
            clients = [
                httpx.AsyncClient(
                    base_url=server.url,
                    timeout=60,
                    transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + n}"),
                )
                for n in range(addresses)
            ]
            done = trio.Event()

            async def register(index: int) -> None:
                response = await clients[index % addresses].post(
                    "/auth/register",
                    json={
                        "name": f"Flood {index}",
                        "email": f"flood-{index}@example.com",
                        "password": "correct horse battery staple",
                        "confirmedPassword": "correct horse battery staple",
                    },
                )
                result.statuses[response.status_code] += 1
                if "Retry-After" in response.headers:
                    result.retry_after.add(response.headers["Retry-After"])

            async def watch_rss() -> None:
                while not done.is_set():
                    result.rss_peak_kib = max(result.rss_peak_kib, rss_kib(server.pid) or 0)
                    with trio.move_on_after(0.05):
                        await done.wait()

            async def probe_health() -> None:
                while not done.is_set():
                    latency, status = await _timed_health(health)
                    result.health_ms.append(latency)
                    result.health_statuses[status] += 1

            async with trio.open_nursery() as watchers:
                watchers.start_soon(watch_rss)
                watchers.start_soon(probe_health)
                async with trio.open_nursery() as nursery:
                    for index in range(requests):
                        nursery.start_soon(register, index)
                done.set()
            for client in clients:
                await client.aclose()
            result.cpu_seconds += server_cpu_seconds(server.pid) or 0.0
            return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard bench register", description=__doc__)
    parser.add_argument("--requests", type=int, default=40, help="registrations at once")
    parser.add_argument("--addresses", type=int, default=4, help="loopback addresses used")
    args = parser.parse_args(argv)
    result = trio.run(flood, args.requests, args.addresses)
    console = Console()
    table = Table(title=f"{args.requests} registrations at once from {args.addresses} addresses")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("floor", justify="right")
    table.add_row(
        "server RSS at the peak, MiB (floor: before)",
        f"{result.rss_peak_kib / 1024:.0f}",
        f"{result.rss_before_kib / 1024:.0f}",
    )
    table.add_row("server CPU during the flood, s", f"{result.cpu_seconds:.2f}", "")
    table.add_row(
        "answers", ", ".join(f"{n} x {s}" for s, n in sorted(result.statuses.items())), ""
    )
    for name, pick in (("median", statistics.median), ("max", max)):
        table.add_row(
            f"GET /healthz during the flood, {name} ms",
            f"{pick(result.health_ms):.1f}",
            f"{pick(result.health_floor_ms):.1f}",
        )
    table.add_row("health checks during the flood", str(len(result.health_ms)), "")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
