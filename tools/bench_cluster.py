"""Benchmark: throughput of a cluster at 1, 2 and 3 nodes, beside one process without a bus.

For each setup in `--nodes` (0 is one process without a bus, the single-process figure; N >= 1
is N nodes on the bus): a database of its own on the MongoDB server `--store` names, N
`switchboard serve` subprocesses on loopback (development mode, flood limits lifted, the demo
accounts seeded), then `loadsim steady` in this process with its customers and agents spread over
the nodes in turn, chats that stay open (no resolve during the run), for `--duration` seconds
after a `--warmup`. Reported per setup: messages acknowledged and offered per second,
end-to-end p50/p99 (customer sends -> agent's socket receives), ack p99, the CPU of every node's
process together per message acknowledged, and the load average when the run ended (the
machine's other work shares the cores with the nodes and with the simulator).

    python -m tools.bench_cluster --store mongodb://127.0.0.1:27017/ --bus redis://127.0.0.1:6379/0
        [--nodes 0,1,2,3] [--customers 200] [--agents 20] [--rate 2000] [--duration 20]

Start a MongoDB (or nx-27017) and a Valkey (or Redis) first; each setup flushes the bus.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from bus import open_bus
from store.mongo import drop_database, with_database
from tools._remote import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, Credentials
from tools._sim_report import Report
from tools._sim_scenario import PRESETS, Scenario
from tools.chaos import ServerProcess, free_port
from tools.loadsim import Target, simulate

SERVER_PID = re.compile(r"server\.started .* pid=(\d+)")
LEASE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class NodesResult:
    nodes: int  # 0: one process, no bus
    report: Report
    load_average: float


def _pid(server: ServerProcess) -> int:
    """The node's process id, as its start-up line gives it."""
    found = SERVER_PID.search(server.log_path.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"no pid in {server.log_path}")
    return int(found.group(1))


async def measure(nodes: int, args: argparse.Namespace, scenario: Scenario) -> NodesResult:
    database = with_database(args.store, f"bench_cluster_{uuid.uuid4().hex[:12]}")
    cluster = {"SWITCHBOARD_BUS_URL": args.bus, "SWITCHBOARD_LEASE_SECONDS": str(LEASE_SECONDS)}
    # Creating and signing in the agents hashes passwords in bulk: on a busy machine they wait
    # longer than a person would be asked to.
    env = {"SWITCHBOARD_PASSWORD_QUEUE_SECONDS": "120"}
    if nodes:
        async with open_bus(args.bus) as bus:
            await bus.client.flushdb()
    servers: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-cluster-") as folder:
        try:
            async with trio.open_nursery() as nursery:
                # The first node seeds the demo accounts and takes the lease.
                for n in range(max(nodes, 1)):
                    data_dir = Path(folder) / f"node-{n}"
                    data_dir.mkdir()
                    server = ServerProcess(
                        database,
                        free_port(),
                        data_dir,
                        grace=15.0,
                        env=env | cluster | {"SWITCHBOARD_NODE_ID": f"node-{n}"} if nodes else env,
                    )
                    servers.append(server)
                    await server.start(nursery)
                target = Target(
                    url=servers[0].url,
                    spawn=False,
                    credentials=Credentials(
                        token=None, email=DEMO_ADMIN_EMAIL, password=DEMO_ADMIN_PASSWORD
                    ),
                    also=tuple(server.url for server in servers[1:]),
                    server_pids=tuple(_pid(server) for server in servers),
                )
                report, _ = await simulate(scenario, target)
                load_average = os.getloadavg()[0]
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for server in servers:
                    await server.kill()
                    server.close()
                await trio.to_thread.run_sync(drop_database, database)
    return NodesResult(nodes, report, load_average)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


COLUMNS = (
    "setup",
    "acked msg/s",
    "offered msg/s",
    "e2e p50 ms",
    "e2e p99 ms",
    "ack p99 ms",
    "server CPU ms/msg",
    "invariants (failed)",
    "load avg",
)
"""The table's columns, in order (tests read the printed table by them)."""


def table(results: list[NodesResult]) -> Table:
    shown = Table(title="Throughput by node count (loadsim steady, chats stay open)")
    for column in COLUMNS:
        shown.add_column(column, justify="left" if column == "setup" else "right")
    for result in results:
        report = result.report
        e2e, ack = report.latency_ms["end_to_end"], report.latency_ms["ack"]
        cpu = report.cpu.server_ms_per_message if report.cpu else None
        shown.add_row(
            "1 process, no bus (floor)" if result.nodes == 0 else f"{result.nodes} node(s)",
            f"{report.messages.per_second:,.0f}",
            f"{report.messages.offered_per_second:,.0f}",
            _ms(e2e.p50),
            _ms(e2e.p99),
            _ms(ack.p99),
            _ms(cpu),
            ", ".join(f"{o.name} x{o.violations}" for o in report.invariants if not o.ok) or "held",
            f"{result.load_average:.1f}",
        )
    return shown


async def run(args: argparse.Namespace, scenario: Scenario, console: Console) -> list[NodesResult]:
    results = []
    for nodes in args.nodes:
        console.print(f"measuring {nodes or 'one process without a bus'} ...")
        results.append(await measure(nodes, args, scenario))
    return results


def _node_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if not counts or any(count < 0 or count > 8 for count in counts):
        raise argparse.ArgumentTypeError("node counts from 0 (no bus) to 8, e.g. 0,1,2,3")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--store", required=True, help="a MongoDB server: mongodb://host:port/")
    parser.add_argument("--bus", required=True, help="a Valkey or Redis: redis://host:port/0")
    parser.add_argument("--nodes", type=_node_counts, default=[0, 1, 2, 3])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--max-load", dest="max_load", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2000.0, help="msg/s offered in all")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args(argv)
    scenario = dataclasses.replace(
        PRESETS["steady"],
        customers=args.customers,
        agents=args.agents,
        max_load=args.max_load,
        handling=1e6,  # no chat ends: the messages are the load
        arrival_rate=0.0,
        duration=args.duration + args.warmup,
        warmup=args.warmup,
        seed=1,
    ).at_rate(args.rate)
    console = Console(width=max(Console().width, 120))
    results = trio.run(run, args, scenario, console)
    console.print(table(results))
    return 0 if all(result.report.ok for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
