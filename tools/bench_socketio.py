"""Benchmark: the /socket.io/ endpoint driven by the stock Node.js client, as the original front
ends use it.

The server is a subprocess (this module with `--serve`): the real app on a fresh store (`--store`:
by default SQLite in a temporary folder, synchronous FULL, group commit; or a database of its own
on a MongoDB server, see tools/_bench_store.py), with `--agents` agents and `--customers` customers
created up front and the per-connection flood limit lifted (a benchmark client is a flood by
design). The clients are one Node.js process (tools/sio_bench.cjs, socket.io-client pinned in
tools/_node.py): agents connect, join their notification room and go available over REST; each
customer connects, opens its chat over REST (`POST /chats/customer`) and joins it; each agent joins
the chats it is given (`chatCreated`).

A message is delivered when the agent's socket receives it (`messageReceived`), which the server
sends only after the message is durable; the customer's ack is counted beside it. Phases, each
`--seconds` long: a closed loop (each customer keeps `--window` messages in flight), then each of
`--rates` offered open loop, latency timed from the scheduled send. Each fixed rate starts once the
server has settled: its store calls (from /metrics) stopped for `SETTLE_QUIET_SECONDS`, so what the
phase before left it to write (delivery receipts, which a saturated store writes late) is not
timed as the fixed rate's latency. Server RSS is read from /proc after each phase; the peak is
VmHWM.

Last, unless `--no-floor`, the transport floor: what hypercorn and the stock client reach on this
machine with no application behind the socket. The real server is stopped, and the floor
(tools/_sio_floor.py, another subprocess: a raw ASGI app on hypercorn's trio worker with the real
server's hypercorn settings) speaks just enough Engine.IO/Socket.IO for the client: it answers
a customer's `sendMessage` with the ack and `messageDelivered`, and sends `messageReceived` to
the paired agent. The same Node process connects the same numbers of agents and customers
(websocket only, no REST, no joinChat) and runs the same closed loop, so a message costs the
same frames, 1 in and 3 out, and zero application work. Its msg/s is the ceiling the real
server is measured against (a target below it is the application's to meet, not the HTTP
server's), and the server CPU per message beside the real server's is what the application
adds on top of the transport.

    python -m tools.bench_socketio [--agents 10] [--customers 100] [--seconds 5] [--rates 200]
        [--store sqlite|memory://|mongodb://...] [--store-pid PID] [--no-floor]

With `--store-pid`, the store server's process on this machine (nx-27017, a local mongod), its
CPU per delivered message in each phase is printed beside the application's: on a machine
shared with other work, a figure that wall-clock rates and latencies are not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table

from api import Services, Settings, open_services, serve
from store import AgentStatus, Role, User, new_id, utcnow
from tools import _sio_floor
from tools._bench_store import STORE_HELP, bench_store, check_store, describe
from tools._node import SOCKET_IO_CLIENT, install, node_env
from tools._server import running, tree_cpu_seconds

CLIENT = Path(__file__).with_name("sio_bench.cjs")
READY = "bench server ready "
# Set-up, each phase and the drain are bounded in the Node script; this bounds the whole run.
RUN_SECONDS_MARGIN = 180.0
FLOOR_SETUP_SECONDS = 60.0  # the real server stopped, the floor's sockets connected
SETTLE_QUIET_SECONDS = 0.5
"""How long the server's store calls must stand still before a fixed rate starts: longer than a
connection's wait between delivery receipts (0.2 s), so a batch of receipts still due is seen."""
SETTLE_OPERATIONS = ("append_messages", "mark_messages")
"""The store calls watched: the writes of messages and receipts."""
SETTLE_POLL_SECONDS = 0.1
SETTLE_LIMIT_SECONDS = 30.0
"""A server that never settles (another client on it) gets its fixed rate anyway after this."""


# --- the server subprocess -----------------------------------------------------------------------


async def serve_bench(folder: Path, store: str, agents: int, customers: int) -> None:
    """Serve on a free port with the bench users; write their tokens and the URL to a file."""
    settings = Settings(
        host="127.0.0.1",
        port=0,
        mode="development",
        data_dir=folder,
        store=store,
        ws_max_frames_per_second=1_000_000,
        ws_frame_burst=1_000_000,
    )
    async with open_services(settings) as found, trio.open_nursery() as nursery:
        max_load = math.ceil(customers / agents)
        agent_tokens = [found.tokens.issue(await _agent(found, n, max_load)) for n in range(agents)]
        customer_tokens = [found.tokens.mint_customer(f"bench-{n}") for n in range(customers)]
        binds: list[str] = await nursery.start(partial(serve, found))
        described = trio.Path(folder / "bench.json")
        await described.write_text(
            json.dumps(
                {
                    "url": binds[0],
                    "pid": os.getpid(),
                    "agents": agent_tokens,
                    "customers": customer_tokens,
                }
            )
        )
        print(f"{READY}{described}", flush=True)


async def _agent(found: Services, n: int, max_load: int) -> User:
    now = utcnow()
    agent = await found.store.create_user(
        User(
            id=new_id(),
            email=f"bench-agent-{n}@switchboard.example",
            name=f"Bench Agent {n}",
            role=Role.AGENT,
            status=AgentStatus.AWAY,
            max_load=max_load,
            created_at=now,
            updated_at=now,
        )
    )
    # The assignment actor read the agents when it started, before this one existed.
    await found.system.add_agent(agent.id, max_load)
    return agent


# --- the run -------------------------------------------------------------------------------------


@dataclass
class SioBenchReport:
    closed: dict[str, Any] = field(default_factory=dict)
    rates: list[dict[str, Any]] = field(default_factory=list)
    floor: dict[str, Any] | None = None  # the transport floor's closed loop
    rss_kib: dict[str, int] = field(default_factory=dict)  # after each phase, the floor's too
    server_cpu_seconds: float = 0.0  # in the closed loop, all its threads and child processes
    server_children_cpu_seconds: float = 0.0  # the child processes' part of it
    # The store server's (--store-pid), in the closed loop and in each fixed rate.
    store_cpu_seconds: list[float] = field(default_factory=list)
    floor_cpu_seconds: float = 0.0  # the floor server's, in its closed loop
    peak_kib: int = 0  # the real server's
    # The real server's store calls in the closed loop, by operation (None: /metrics unread).
    store_calls: Counter[str] | None = None
    # Before each fixed rate: how long the server took to settle (None: its /metrics unread).
    settled_seconds: list[float | None] = field(default_factory=list)
    cores: int = os.cpu_count() or 1
    # Other work on the machine shares its cores with both processes: say how much there was.
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)


async def store_calls(url: str) -> Counter[str] | None:
    """The server's store calls so far by operation, from its /metrics (None if unread)."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            response = await http.get("/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    calls: Counter[str] = Counter()
    for family in text_string_to_metric_families(response.text):
        if family.name == "switchboard_store_call_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    calls[sample.labels["operation"]] += int(sample.value)
    return calls


async def settle(
    read: Callable[[], Awaitable[Counter[str] | None]],
    quiet: float = SETTLE_QUIET_SECONDS,
    poll: float = SETTLE_POLL_SECONDS,
    limit: float = SETTLE_LIMIT_SECONDS,
) -> float | None:
    """Wait until the writes among `read` (the server's store calls so far) have not moved for
    `quiet` seconds, or `limit` seconds in all; how long that took, or None at once if the calls
    cannot be read."""
    began = trio.current_time()
    last = _writes(await read())
    if last is None:
        return None
    still_since = began
    while (now := trio.current_time()) - still_since < quiet and now - began < limit:
        await trio.sleep(poll)
        current = _writes(await read())
        if current != last:
            last, still_since = current, trio.current_time()
    return trio.current_time() - began


def _writes(calls: Counter[str] | None) -> dict[str, int] | None:
    # Only what a phase leaves the server to write: reading /metrics makes a read of its own.
    if calls is None:
        return None
    return {operation: calls[operation] for operation in SETTLE_OPERATIONS}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system time the process and its live child processes have used so far, all
    threads, and the children's part (tools/_server.py)."""
    used = tree_cpu_seconds(pid)
    if used is None:
        raise RuntimeError(f"/proc does not tell the CPU time of process {pid}")
    return used


def memory_kib(pid: int) -> tuple[int, int]:
    """The process's resident set size now and at its peak (VmRSS, VmHWM), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    now, peak = (
        int(re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
        for name in ("VmRSS", "VmHWM")
    )
    return now, peak


@dataclass
class SpawnedServer:
    """A server subprocess held by a task of its own, so that it can stop before the others."""

    described: dict[str, Any]  # what it wrote: url, pid (and the real server's tokens)
    _stop: trio.Event
    _stopped: trio.Event

    @property
    def pid(self) -> int:
        pid: int = self.described["pid"]
        return pid

    async def stop(self) -> None:
        """Stop it (SIGTERM) and wait until it has exited."""
        self._stop.set()
        await self._stopped.wait()


def serve_args(customers: int, store_url: str, folder: Path) -> list[str]:
    """The arguments of the server subprocess: it opens `store_url` as made by `bench_store`
    (a file's or a database's URL, which `--store` does not take)."""
    return ["--customers", str(customers), "--store-url", store_url, "--serve", str(folder)]


async def _hold(
    command: list[str], ready: str, *, task_status: trio.TaskStatus[SpawnedServer]
) -> None:
    stop, stopped = trio.Event(), trio.Event()
    try:
        async with running(command, env=os.environ, ready=ready) as launched:
            found = json.loads(await trio.Path(launched.found).read_text())
            task_status.started(SpawnedServer(found, stop, stopped))
            await stop.wait()
    finally:
        stopped.set()


async def run(args: argparse.Namespace, console: Console) -> SioBenchReport:
    modules = install()
    report = SioBenchReport()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        bench = [sys.executable, "-m", "tools.bench_socketio", "--agents", str(args.agents)]
        async with bench_store(args.store, folder) as store, trio.open_nursery() as servers:
            real: SpawnedServer = await servers.start(
                _hold, [*bench, *serve_args(args.customers, store, folder)], READY
            )
            report.rss_kib["idle"] = memory_kib(real.pid)[0]
            floor: SpawnedServer | None = None
            if args.floor:
                floor = await servers.start(
                    _hold, [*bench, "--serve-floor", str(folder)], _sio_floor.READY
                )
            config = trio.Path(folder / "client.json")
            await config.write_text(
                json.dumps(
                    {
                        "url": real.described["url"],
                        "agents": real.described["agents"],
                        "customers": real.described["customers"],
                        "transports": ["websocket"] if args.websocket_only else None,
                        "size": args.size,
                        "seconds": args.seconds,
                        "window": args.window,
                        "rates": args.rates,
                        "floor": floor.described["url"] if floor else None,
                    }
                )
            )
            phases = 2 + len(args.rates) + (1 if floor else 0)
            margin = (
                RUN_SECONDS_MARGIN
                + (FLOOR_SETUP_SECONDS if floor else 0.0)
                + SETTLE_LIMIT_SECONDS * len(args.rates)
            )
            with trio.fail_after(margin + phases * args.seconds):
                await _drive(
                    ["node", str(CLIENT), str(config)],
                    modules,
                    real,
                    floor,
                    report,
                    console,
                    args.store_pid,
                )
            servers.cancel_scope.cancel()
    return report


async def _drive(
    command: list[str],
    modules: Path,
    real: SpawnedServer,
    floor: SpawnedServer | None,
    report: SioBenchReport,
    console: Console,
    store_pid: int | None = None,
) -> None:
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=node_env(modules),
                    check=False,
                )
            )
            assert process.stdin is not None
            assert process.stdout is not None
            pending = b""
            async for chunk in process.stdout:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    record = json.loads(line)
                    if "failed" in record:
                        raise RuntimeError(f"the Node client failed: {record['failed']}")
                    if "error" in record:
                        raise RuntimeError(f"the server sent an error: {record['error']}")
                    if "progress" in record:
                        name = record["progress"]
                        if name not in tasks:
                            tasks[name] = progress.add_task(name, total=record["total"])
                        progress.update(tasks[name], completed=record["done"])
                        continue
                    match record.get("phase"):
                        case "ready":
                            report.rss_kib["ready"] = memory_kib(real.pid)[0]
                        case "measuring" if record["loop"] == "floor":
                            assert floor is not None
                            report.floor_cpu_seconds = -cpu_seconds(floor.pid)[0]
                        case "measuring":
                            used, children = cpu_seconds(real.pid)
                            report.server_cpu_seconds = -used
                            report.server_children_cpu_seconds = -children
                            _store_cpu(report, store_pid, start=True)
                            report.store_calls = await store_calls(real.described["url"])
                        case "closed loop":
                            used, children = cpu_seconds(real.pid)
                            report.server_cpu_seconds += used
                            report.server_children_cpu_seconds += children
                            _store_cpu(report, store_pid, start=False)
                            before, after = (
                                report.store_calls,
                                await store_calls(real.described["url"]),
                            )
                            report.store_calls = (
                                None if before is None or after is None else after - before
                            )
                            report.closed = record
                            _measured(report, real.pid, "closed loop")
                        case "settle":
                            report.settled_seconds.append(
                                await settle(partial(store_calls, real.described["url"]))
                            )
                            _store_cpu(report, store_pid, start=True)
                            await process.stdin.send_all(b"go\n")
                        case "fixed rate":
                            report.rates.append(record)
                            _store_cpu(report, store_pid, start=False)
                            _measured(report, real.pid, f"{record['rate']:g}/s")
                        case "floor next":
                            # The real server's phases are over and its sockets closed: the
                            # floor gets the machine to itself.
                            assert floor is not None
                            await real.stop()
                            await process.stdin.send_all(b"go\n")
                        case "floor":
                            assert floor is not None
                            report.floor_cpu_seconds += cpu_seconds(floor.pid)[0]
                            report.floor = record
                            report.rss_kib["floor"] = memory_kib(floor.pid)[0]
                        case "done":
                            return


def _store_cpu(report: SioBenchReport, pid: int | None, *, start: bool) -> None:
    """The store server's CPU over a phase: taken away at its start, added at its end."""
    if pid is not None:
        if start:
            report.store_cpu_seconds.append(-cpu_seconds(pid)[0])
        else:
            report.store_cpu_seconds[-1] += cpu_seconds(pid)[0]


def _measured(report: SioBenchReport, pid: int, phase: str) -> None:
    """The real server's memory after a phase: RSS, and the peak so far (VmHWM)."""
    report.rss_kib[phase], report.peak_kib = memory_kib(pid)


def show(report: SioBenchReport, args: argparse.Namespace, console: Console) -> None:
    transport = "websocket only" if args.websocket_only else "polling, then websocket"
    table = Table(
        title=(
            f"Socket.IO ({transport}; socket.io-client {SOCKET_IO_CLIENT}): {args.customers} "
            f"customers, {args.agents} agents, {args.size}-character messages; store "
            f"{describe(args.store)}"
        )
    )
    for column in ("phase", "offered", "delivered", "acked", "msg/s", "p50 ms", "p99 ms", "RSS"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    closed = report.closed
    table.add_row(
        f"closed loop, {args.window} in flight",
        "",
        f"{closed['delivered']:,}",
        f"{closed['acked']:,}",
        f"{closed['perSecond']:,.0f}",
        "",
        "",
        _mib(report.rss_kib["closed loop"]),
    )
    for rate in report.rates:
        table.add_row(
            f"fixed {rate['rate']:g}/s",
            f"{rate['offered']:,}",
            f"{rate['delivered']:,}",
            f"{rate['acked']:,}",
            f"{rate['delivered'] / args.seconds:,.0f}",
            f"{rate['p50']:.2f}",
            f"{rate['p99']:.2f}",
            _mib(report.rss_kib[f"{rate['rate']:g}/s"]),
        )
    floor = report.floor
    if floor is not None:
        table.add_row(
            "transport floor: no application",
            "",
            f"{floor['delivered']:,}",
            f"{floor['acked']:,}",
            f"{floor['perSecond']:,.0f}",
            "",
            "",
            _mib(report.rss_kib["floor"]),
        )
    console.print(table)
    refused = closed["refused"] + sum(rate["refused"] for rate in report.rates)
    if refused:
        console.print(f"[red]{refused} messages were refused by the server[/red]")
    console.print(
        f"CPU per delivered message in the closed loop: server "
        f"{_per_message(report.server_cpu_seconds, closed)} "
        f"({_per_message(report.server_children_cpu_seconds, closed)} in its child processes"
        + ("" if floor is None else f"; floor {_per_message(report.floor_cpu_seconds, floor)}")
        + ")"
        + f", Node client {_per_message(closed['clientCpuSeconds'], closed)}"
        + ("" if floor is None else f" (floor {_per_message(floor['clientCpuSeconds'], floor)})")
    )
    if report.store_calls is not None and closed["delivered"]:
        per_message = {
            operation: count / closed["delivered"]
            for operation, count in report.store_calls.most_common()
        }
        console.print(
            f"store calls per delivered message in the closed loop: "
            f"{sum(per_message.values()):.2f} ("
            + ", ".join(f"{operation} {calls:.2f}" for operation, calls in per_message.items())
            + ")"
        )
    if report.store_cpu_seconds:
        phases = [("closed loop", closed)] + [(f"{r['rate']:g}/s", r) for r in report.rates]
        console.print(
            f"store server (pid {args.store_pid}) CPU per delivered message: "
            + ", ".join(
                f"{name} {_per_message(seconds, phase)}"
                for (name, phase), seconds in zip(phases, report.store_cpu_seconds, strict=False)
            )
        )
    if report.rates:
        settled = ", ".join(
            "not measured" if seconds is None else f"{seconds:.1f} s"
            for seconds in report.settled_seconds
        )
        console.print(
            f"each fixed rate started once the server's store calls had stood still for "
            f"{SETTLE_QUIET_SECONDS:g} s: after {settled}"
        )
    console.print(
        f"server RSS: idle {_mib(report.rss_kib['idle'])}, connected "
        f"{_mib(report.rss_kib['ready'])}, peak {_mib(report.peak_kib)}; "
        f"{args.seconds:g} s per phase; load average before the run "
        f"{report.load[0]:.1f} (1 min) on {report.cores} cores"
    )


def _per_message(cpu_seconds: float, loop: dict[str, Any]) -> str:
    return f"{1000 * cpu_seconds / loop['delivered']:.2f} ms" if loop["delivered"] else "n/a"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.serve is not None:
        trio.run(serve_bench, args.serve, args.store_url, args.agents, args.customers)
        return 0
    if args.serve_floor is not None:
        trio.run(_sio_floor.serve_floor, args.serve_floor, args.agents)
        return 0
    if not 12 <= args.size <= 16_000:
        parser.error("--size must be within 12..16000 (the first 12 characters number a message)")
    console = Console(width=max(Console().width, 100))
    show(trio.run(run, args, console), args, console)
    return 0


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_socketio", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--agents", type=int, default=10, help="agent sockets")
    parser.add_argument(
        "--customers", type=int, default=100, help="customer sockets, one chat each"
    )
    parser.add_argument(
        "--window", type=int, default=1, help="closed loop: messages in flight per customer"
    )
    parser.add_argument("--size", type=int, default=256, help="message content, in characters")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(rate) for rate in text.split(",")],
        default=[200.0],
        help="offered rates of the open-loop phases, msg/s, comma-separated",
    )
    parser.add_argument("--websocket-only", action="store_true", help="skip the polling start")
    parser.add_argument("--store", type=check_store, default="sqlite", help=STORE_HELP)
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the last phase: the transport floor (hypercorn with no application)",
    )
    parser.add_argument(
        "--store-pid",
        type=int,
        help="the store server's process on this machine (nx-27017, mongod): its CPU per message",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store-url", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", type=Path, help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
