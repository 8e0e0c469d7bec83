"""Benchmark: Switchboard relaying persisted chat messages vs a raw trio-websocket echo server.

Each side is one process pair on loopback: this process runs the clients, a subprocess the
server. The same client library (trio-websocket), the same frames (a `message.send` JSON frame
with `--size` characters of content) and the same number of connections on both sides:

- echo: a bare trio-websocket server that sends every frame back; a message is done when its
  echo arrives;
- switchboard: `switchboard serve` on a fresh store (`--store`: SQLite by default, synchronous
  FULL with group commit; or a database of its own on a MongoDB server; see
  tools/_bench_store.py), seeded, development mode, flood limit lifted; each customer connection
  has an open chat with one of the three demo agents, and a message is done when the agent's
  socket receives it, i.e. after it was persisted, acknowledged, fanned out and written.
  Delivery receipts run as in production.

Two phases per side: throughput (each connection sends its next message as soon as the previous
one is done, for `--seconds`), then latency at a fixed offered rate (`--rate` messages a second
spread over the connections, open loop, timed from the scheduled send so a stall is not hidden).
The echo server is the floor: what the transport reaches on this machine with no application.
Beside each side's throughput the report gives its server's CPU time (user + system, every
thread) per message in the throughput phase, which other work on the machine barely changes,
and its garbage per message in that phase: the objects its cyclic garbage collector freed
(cyclic garbage: what reference counting alone could not free), and its young-generation
collections per 1,000 messages (each follows 700 more container objects made than freed, so
it counts the objects a message leaves to the collector). Both come from `gc.get_stats()`: the
echo server answers a probe frame with them, Switchboard's /metrics has them
(`python_gc_collections_total`, `python_gc_objects_collected_total`).

    python -m tools.bench_ws [--connections 9] [--size 256] [--seconds 5] [--rate 200]
        [--store sqlite|memory://|mongodb://...]

A little over 500 lines: both sides of the comparison (the echo server and Switchboard) and their
one table, so both are measured alike.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from trio_websocket import (
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from tools._bench_store import STORE_HELP, bench_store, check_store, describe
from tools._remote import metrics_text
from tools._server import running, server_cpu_seconds
from tools._ws_client import bearer

DEMO_AGENTS = ("ann@switchboard.example", "bob@switchboard.example", "cy@switchboard.example")
DEMO_PASSWORD = "switchboard-demo"
DEMO_CAPACITY = 3 + 4 + 2  # the demo agents' max loads: one open chat per customer connection
ID_DIGITS = 12
SETUP_SECONDS = 60.0
DRAIN_SECONDS = 30.0
MAX_MESSAGES = 1_000_000  # throughput phase: also bounded by count
GC_PROBE = b"gc?"  # a binary frame the echo server answers with its collector's counts


# --- what is measured ----------------------------------------------------------------------------


@dataclass
class Tracker:
    """When each message was (or was due to be) sent, and how long it took to arrive."""

    started: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, trio.Event] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def start(self, n: int, at: float) -> trio.Event:
        self.started[n] = at
        done = self.waiting[n] = trio.Event()
        return done

    def arrived(self, n: int) -> None:
        at = self.started.pop(n, None)
        if at is None:
            return
        self.latencies.append(trio.current_time() - at)
        self.waiting.pop(n).set()

    def reset(self) -> None:
        self.latencies.clear()


@dataclass(frozen=True, slots=True)
class SideResult:
    name: str
    throughput: float  # messages a second, closed loop
    cpu_ms: float  # the server's CPU time per message in the closed loop
    garbage: Garbage | None  # the server's collector's work per message in the closed loop
    p50_ms: float
    p99_ms: float
    offered: int
    delivered: int  # of the offered ones, in the latency phase


@dataclass(frozen=True, slots=True)
class GcCounts:
    """A process's collector so far, from `gc.get_stats()`."""

    young_collections: int
    collected: int  # objects freed by the collector, every generation

    @classmethod
    def of(cls, stats: list[dict[str, int]]) -> GcCounts:
        return cls(stats[0]["collections"], sum(generation["collected"] for generation in stats))


@dataclass(frozen=True, slots=True)
class Garbage:
    """The collector's work per message between two `GcCounts`."""

    collected: float  # objects freed per message
    young_per_1000: float  # young-generation collections per 1,000 messages

    @classmethod
    def between(cls, before: GcCounts, after: GcCounts, messages: int) -> Garbage:
        return cls(
            (after.collected - before.collected) / messages,
            1000 * (after.young_collections - before.young_collections) / messages,
        )


GcProbe = Callable[[], Awaitable[GcCounts | None]]


def frame(chat_id: str, n: int, size: int) -> str:
    content = f"{n:0{ID_DIGITS}d}".ljust(size, "x")
    return json.dumps(
        {"type": "message.send", "chatId": chat_id, "clientMsgId": f"b{n}", "content": content}
    )


def message_number(content: str) -> int:
    return int(content[:ID_DIGITS])


@dataclass
class Sender:
    """One client connection that sends; `chat_id` addresses its frames."""

    conn: WebSocketConnection
    chat_id: str


async def run_phases(
    name: str,
    server_pid: int,
    senders: list[Sender],
    tracker: Tracker,
    gc_counts: GcProbe,
    args: argparse.Namespace,
    progress: Progress,
) -> SideResult:
    numbers = itertools.count(1)

    # Warm up: one message per connection (activates conversations, fills caches).
    for sender in senders:
        n = next(numbers)
        done = tracker.start(n, trio.current_time())
        await sender.conn.send_message(frame(sender.chat_id, n, args.size))
        with trio.fail_after(SETUP_SECONDS):
            await done.wait()
    tracker.reset()

    # Throughput: closed loop per connection, for --seconds.
    task = progress.add_task(f"{name}: throughput", total=None)
    completed = 0

    async def closed_loop(sender: Sender) -> None:
        nonlocal completed
        while completed < MAX_MESSAGES:
            n = next(numbers)
            done = tracker.start(n, trio.current_time())
            await sender.conn.send_message(frame(sender.chat_id, n, args.size))
            await done.wait()
            completed += 1
            progress.update(task, completed=completed)

    gc_before = await gc_counts()
    began, cpu_before = trio.current_time(), server_cpu_seconds(server_pid)
    with trio.move_on_after(args.seconds):
        async with trio.open_nursery() as nursery:
            for sender in senders:
                nursery.start_soon(closed_loop, sender)
    throughput = completed / (trio.current_time() - began)
    cpu_after = server_cpu_seconds(server_pid)
    gc_after = await gc_counts()
    cpu_ms = (
        1000 * (cpu_after - cpu_before) / completed
        if completed and cpu_before is not None and cpu_after is not None
        else float("nan")
    )
    garbage = (
        Garbage.between(gc_before, gc_after, completed)
        if completed and gc_before is not None and gc_after is not None
        else None
    )
    progress.remove_task(task)
    # Let what is still in flight arrive before the next phase.
    with trio.move_on_after(DRAIN_SECONDS):
        for done in list(tracker.waiting.values()):
            await done.wait()
    tracker.reset()

    # Latency: open loop at --rate, spread over the connections.
    total = int(args.rate * args.seconds)
    task = progress.add_task(f"{name}: latency at {args.rate:g}/s", total=total)
    start = trio.current_time() + 0.1
    waits: list[trio.Event] = []
    for i in range(total):
        due = start + i / args.rate
        await trio.sleep_until(due)
        sender = senders[i % len(senders)]
        n = next(numbers)
        waits.append(tracker.start(n, due))
        await sender.conn.send_message(frame(sender.chat_id, n, args.size))
        progress.update(task, completed=i + 1)
    with trio.move_on_after(DRAIN_SECONDS):
        for done in waits:
            await done.wait()
    progress.remove_task(task)
    latencies = sorted(tracker.latencies)
    p50, p99 = _percentiles(latencies)
    return SideResult(
        name, throughput, cpu_ms, garbage, p50 * 1000, p99 * 1000, total, len(latencies)
    )


def _percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


# --- the echo server ----------------------------------------------------------------------------


async def _echo(request: WebSocketRequest) -> None:
    conn = await request.accept()
    while True:
        received = await conn.get_message()
        if received == GC_PROBE:
            await conn.send_message(json.dumps(gc.get_stats()))
        else:
            await conn.send_message(received)


async def serve_echo() -> None:
    """The baseline server: every frame straight back. Prints its URL once listening."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                _echo, "127.0.0.1", 0, ssl_context=None, task_status=task_status
            )
        )
        print(f"echo listening on ws://127.0.0.1:{server.port}", flush=True)


# --- the two sides -------------------------------------------------------------------------------


async def bench_echo(args: argparse.Namespace, progress: Progress) -> SideResult:
    command = [sys.executable, "-m", "tools.bench_ws", "--serve-echo"]
    async with (
        running(command, env=os.environ, ready="listening on ") as echo,
        trio.open_nursery() as nursery,
    ):
        url, pid = echo.found, echo.pid
        tracker = Tracker()
        senders: list[Sender] = []
        for _ in range(args.connections):
            conn = await nursery.start(_connect, url, [])
            nursery.start_soon(_read_echoes, conn, tracker)
            senders.append(Sender(conn, "0" * 24))  # the same frame size as a real chat id
        probe = await nursery.start(_connect, url, [])

        async def gc_counts() -> GcCounts:
            await probe.send_message(GC_PROBE)
            return GcCounts.of(json.loads(await probe.get_message()))

        result = await run_phases("echo", pid, senders, tracker, gc_counts, args, progress)
        nursery.cancel_scope.cancel()
    return result


async def _read_echoes(conn: WebSocketConnection, tracker: Tracker) -> None:
    while True:
        echoed = json.loads(await conn.get_message())
        tracker.arrived(message_number(echoed["content"]))


async def bench_switchboard(args: argparse.Namespace, progress: Progress) -> SideResult:
    with tempfile.TemporaryDirectory() as folder:
        async with bench_store(args.store, Path(folder)) as store:
            return await _bench_switchboard(store, args, progress)


async def _bench_switchboard(
    store: str, args: argparse.Namespace, progress: Progress
) -> SideResult:
    command = [
        sys.executable, "-m", "tools.cli", "serve", "--host", "127.0.0.1", "--port", "0",
        "--store", store, "--seed-if-empty",
    ]  # fmt: skip
    env = {
        "SWITCHBOARD_MODE": "development",
        # A benchmark client is a flood by design.
        "SWITCHBOARD_WS_MAX_FRAMES_PER_SECOND": "1000000",
        "SWITCHBOARD_WS_FRAME_BURST": "1000000",
    }
    async with (
        running(command, env=os.environ | env) as server,
        httpx.AsyncClient(base_url=server.found) as http,
        trio.open_nursery() as nursery,
    ):
        base, pid = server.found, server.pid
        url = base.replace("http://", "ws://", 1) + "/ws"
        tracker = Tracker()
        with trio.fail_after(SETUP_SECONDS):
            for email in DEMO_AGENTS:
                token = await _login(http, email)
                agent = await nursery.start(_connect, url, [token])
                await agent.send_message(json.dumps({"type": "status.set", "status": "available"}))
                await _until(agent, lambda f: f["type"] == "agent.status")
                nursery.start_soon(_read_deliveries, agent, tracker)
            senders: list[Sender] = []
            for i in range(args.connections):
                token = await _customer_token(http, f"bench-customer-{i}")
                customer = await nursery.start(_connect, url, [token])
                await customer.send_message(json.dumps({"type": "chat.open", "title": "bench"}))
                opened = await _until(customer, lambda f: f["type"] == "chat.opened")
                assert opened["chat"]["agent"] is not None, "no agent had room for the chat"
                nursery.start_soon(_drain, customer)
                senders.append(Sender(customer, opened["chat"]["id"]))
        result = await run_phases(
            "switchboard",
            pid,
            senders,
            tracker,
            functools.partial(server_gc_counts, http),
            args,
            progress,
        )
        nursery.cancel_scope.cancel()
    return result


async def server_gc_counts(http: httpx.AsyncClient) -> GcCounts | None:
    """A Switchboard server's collector so far, from its /metrics (None: not readable)."""
    text = await metrics_text(http)
    if text is None:
        return None
    young = collected = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "python_gc_collections_total" and sample.labels["generation"] == "0":
                young = sample.value
            elif sample.name == "python_gc_objects_collected_total":
                collected += sample.value
    return GcCounts(int(young), int(collected))


async def _login(http: httpx.AsyncClient, email: str) -> str:
    response = await http.post("/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


async def _customer_token(http: httpx.AsyncClient, customer_id: str) -> str:
    response = await http.post("/dev/customer-token", json={"customerId": customer_id})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


async def _connect(
    url: str,
    tokens: list[str],
    *,
    task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hold a connection open until cancelled; hand it over once open."""
    headers = [header for token in tokens for header in bearer(token)]
    async with open_websocket_url(url, extra_headers=headers, message_queue_size=1024) as conn:
        task_status.started(conn)
        await trio.sleep_forever()


async def _until(conn: WebSocketConnection, wanted: Callable[[dict[str, Any]], bool]) -> Any:
    while True:
        received = json.loads(await conn.get_message())
        if received["type"] == "error":
            raise RuntimeError(f"server refused: {received}")
        if wanted(received):
            return received


async def _read_deliveries(agent: WebSocketConnection, tracker: Tracker) -> None:
    while True:
        received = json.loads(await agent.get_message())
        if received["type"] == "message" and received["message"]["senderRole"] == "customer":
            tracker.arrived(message_number(received["message"]["content"]))
        elif received["type"] == "error":
            raise RuntimeError(f"server refused: {received}")


async def _drain(customer: WebSocketConnection) -> None:
    """A customer's own frames (acks, its message fanned back, receipts): read, not measured."""
    while True:
        received = json.loads(await customer.get_message())
        if received["type"] == "error":
            raise RuntimeError(f"server refused: {received}")


# --- the report ----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, console: Console) -> list[SideResult]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        echo = await bench_echo(args, progress)
        switchboard = await bench_switchboard(args, progress)
    return [echo, switchboard]


def report(results: list[SideResult], args: argparse.Namespace, console: Console) -> None:
    echo, switchboard = results
    table = Table(
        title=f"Websocket relay: {args.connections} connections, {args.size}-character messages; "
        f"store {describe(args.store)}"
    )
    table.add_column("server")
    table.add_column("throughput (msg/s)", justify="right")
    table.add_column("server CPU per message", justify="right")
    table.add_column("cyclic garbage per message (objects)", justify="right")
    table.add_column("young collections per 1,000 messages", justify="right")
    table.add_column(f"p50 at {args.rate:g}/s (ms)", justify="right")
    table.add_column(f"p99 at {args.rate:g}/s (ms)", justify="right")
    table.add_column("delivered / offered", justify="right")
    for result in results:
        table.add_row(
            "echo (the transport floor)" if result is echo else result.name,
            f"{result.throughput:,.0f}",
            f"{result.cpu_ms:.3f} ms",
            "—" if result.garbage is None else f"{result.garbage.collected:.1f}",
            "—" if result.garbage is None else f"{result.garbage.young_per_1000:.1f}",
            f"{result.p50_ms:.2f}",
            f"{result.p99_ms:.2f}",
            f"{result.delivered}/{result.offered}",
        )
    console.print(table)
    console.print(
        f"switchboard / echo throughput: {switchboard.throughput / echo.throughput:.3f} "
        f"({os.cpu_count()} cores; {args.seconds:g} s per phase; load average before the run "
        f"{args.load:.1f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_ws", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=DEMO_CAPACITY,
        choices=range(1, DEMO_CAPACITY + 1),
        metavar=f"1..{DEMO_CAPACITY}",
        help="sending connections (the demo agents have room for 9 chats)",
    )
    parser.add_argument("--size", type=int, default=256, help="message content, in characters")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="offered rate in the latency phase (msg/s)"
    )
    parser.add_argument("--store", type=check_store, default="sqlite", help=STORE_HELP)
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_echo:
        trio.run(serve_echo)
        return 0
    if args.size < ID_DIGITS or args.size > 16_000:
        parser.error(f"--size must be within {ID_DIGITS}..16000")
    console = Console(width=max(Console().width, 100))
    # Other work on the machine shares its cores with both processes: say how much there was.
    args.load = os.getloadavg()[0]
    results = trio.run(run, args, console)
    report(results, args, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
