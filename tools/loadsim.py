"""`switchboard loadsim`: N customers and M agents over real websockets, then a report.

    switchboard loadsim steady --spawn --rate 500 --duration 30 --report steady.json
    switchboard loadsim burst --url http://127.0.0.1:8080 --customers 300 --agents 10

Against a running server (`--url`, loopback only unless `--allow-remote`; the admin credentials
create the agents, and customers get shop tokens from /dev/customer-token, so development mode),
or one it starts itself on a temporary SQLite store (`--spawn`), which also lets it report the
server's memory per connection. The load stops by itself: after `--duration` seconds, after
`--max-messages` messages, or when every customer has had their chats. Then it waits (at most
`drain` seconds) for outstanding acks and deliveries, checks the invariants, prints the report,
and exits 1 if an invariant failed. Agents it created on a running server are deleted, and their
chats closed, at the end.

Over 500 lines: the command line (its flags and their checks) and the run's setup; the clients, the
ledger, the report and the stall detection are modules of their own (tools/_sim_*.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from api import keep_collections_short
from tools._remote import (
    HTTP_SECONDS,
    Credentials,
    RemoteError,
    Server,
    add_server_flags,
    admin_server,
    base_url,
    each,
    first_error,
    is_loopback,
)
from tools._server import (
    ServerFailed,
    cpu_seconds,
    raise_open_file_limit,
    rss_kib,
    tree_cpu_seconds,
)
from tools._sim_clients import Agent, Customer
from tools._sim_ledger import Ledger, Outcome
from tools._sim_participant import Participant, Run
from tools._sim_report import (
    MEASURES,
    AgentChurn,
    Chats,
    Cpu,
    Memory,
    Messages,
    PlotUnavailable,
    Report,
    Summary,
    plot,
    render,
)
from tools._sim_scenario import PRESETS, Scenario
from tools._sim_server import spawn_server
from tools._sim_stalls import (
    Histogram,
    OwnStalls,
    Stalls,
    collections_held,
    server_histograms,
    server_stalls,
    watch_own_lag,
    watching_own_pauses,
)

SETUP_REQUESTS_AT_ONCE = 8
# A server checks only a few sign-ins from one address at a time (its guard against parallel
# password guessing; the others wait, and earlier builds refused them), so two at a time.
SIGN_INS_AT_ONCE = 2
# Connecting is bounded by this plus a second per 100 connections.
SETUP_SECONDS = 60.0
CLEANUP_SECONDS = 60.0
PROGRESS_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    """The server to load; ignored with `spawn`."""
    spawn: bool
    credentials: Credentials
    also: tuple[str, ...] = ()
    """More nodes of the same cluster as `url`: the participants are spread over all of them."""
    server_pids: tuple[int, ...] = ()
    """The processes whose CPU counts as the server's (a spawned server's is counted anyway)."""


@dataclass(frozen=True, slots=True)
class Cast:
    """The simulated people, with what was made for them on the server."""

    agents: tuple[Agent, ...]
    customers: tuple[Customer, ...]

    @property
    def everyone(self) -> tuple[Participant, ...]:
        return (*self.agents, *self.customers)


# --- setting up --------------------------------------------------------------------------------


async def _make_agents(admin: Server, scenario: Scenario, tag: str) -> list[tuple[str, str]]:
    """(id, token) of each new agent, created through the admin API and signed in."""
    password = secrets.token_urlsafe(18)

    def email(index: int) -> str:
        return f"loadsim-{tag}-{index}@loadsim.example"

    async def create(index: int) -> str:
        created = await admin.call(
            "POST",
            "/admin/users",
            json={
                "name": f"Loadsim agent {index}",
                "email": email(index),
                "password": password,
                "confirmPassword": password,
                "maxLoad": scenario.max_load,
            },
        )
        agent_id: str = created.json()["id"]
        return agent_id

    async def sign_in(index: int) -> str:
        body = {"email": email(index), "password": password}
        token: str = (await admin.call("POST", "/auth/login", json=body)).json()["token"]
        return token

    indexes = range(scenario.agents)
    ids = await each(indexes, create, SETUP_REQUESTS_AT_ONCE)
    tokens = await each(indexes, sign_in, SIGN_INS_AT_ONCE)
    return list(zip(ids, tokens, strict=True))


async def _customer_tokens(admin: Server, scenario: Scenario, tag: str) -> list[str]:
    async def mint(index: int) -> str:
        response = await admin.call(
            "POST",
            "/dev/customer-token",
            json={"customerId": f"loadsim-{tag}-{index}", "name": f"Loadsim customer {index}"},
        )
        token: str = response.json()["token"]
        return token

    try:
        return await each(range(scenario.customers), mint, SETUP_REQUESTS_AT_ONCE)
    except RemoteError as error:
        raise RemoteError(
            f"cannot get customer tokens (loadsim needs a server in development mode): {error}"
        ) from None


async def _clean_up(admin: Server, ledger: Ledger, agent_ids: list[str]) -> None:
    """Leave a running server as it was: close the chats opened, delete the agents made."""
    open_chats = [chat_id for chat_id, track in ledger.chats.items() if not track.resolved]
    with trio.move_on_after(CLEANUP_SECONDS):
        await each(
            open_chats,
            lambda chat_id: admin.send("POST", f"/admin/chats/{chat_id}/close"),
            SETUP_REQUESTS_AT_ONCE,
        )
        await each(
            agent_ids,
            lambda agent_id: admin.send("DELETE", f"/admin/users/{agent_id}"),
            SETUP_REQUESTS_AT_ONCE,
        )


# --- running -----------------------------------------------------------------------------------


@asynccontextmanager
async def _server(target: Target) -> AsyncIterator[tuple[str, int | None]]:
    """The URL to load, and the server's pid when we started it."""
    if not target.spawn:
        yield target.url, None
        return
    with tempfile.TemporaryDirectory(prefix="switchboard-loadsim-") as folder:
        async with spawn_server(Path(folder)) as spawned:
            yield spawned.url, spawned.pid


async def simulate(
    scenario: Scenario, target: Target, progress: Progress | None = None
) -> tuple[Report, Ledger]:
    """Run the scenario; the report, and the ledger behind it (for the plot)."""
    raise_open_file_limit()
    async with _server(target) as (url, pid), admin_server(url, target.credentials) as admin:
        tag = secrets.token_hex(3)
        made = await _make_agents(admin, scenario, tag)
        tokens = await _customer_tokens(admin, scenario, tag)
        rss_before = rss_kib(pid) if pid else None
        ledger = Ledger()
        urls = (url, *target.also)
        async with httpx.AsyncClient(base_url=url, timeout=HTTP_SECONDS) as http:
            run = Run(scenario, [u.replace("http", "ws", 1) + "/ws" for u in urls], http, ledger)
            cast = Cast(
                agents=tuple(Agent(run, agent_id, token) for agent_id, token in made),
                customers=tuple(Customer(run, f"c{i}", token) for i, token in enumerate(tokens)),
            )
            for agent_id, _ in made:
                ledger.agent_joined(agent_id, scenario.max_load)
            cpu_pids = (pid,) if pid else target.server_pids
            phase = await _drive(run, cast, pid, cpu_pids, progress)
        memory = None
        if pid and rss_before is not None and phase.rss_after is not None:
            memory = Memory(
                server_pid=pid,
                connections=len(cast.everyone),
                rss_before_kib=rss_before,
                rss_after_kib=phase.rss_after,
                kib_per_connection=round((phase.rss_after - rss_before) / len(cast.everyone), 2)
                if cast.everyone
                else 0.0,
            )
        if not target.spawn:
            await _clean_up(admin, ledger, [agent_id for agent_id, _ in made])
    return _report(scenario, " ".join(urls), target.spawn, phase, ledger, memory), ledger


@dataclass(frozen=True, slots=True)
class Phase:
    """When the load ran (simulator clock), what it found, and the server's RSS at its end."""

    started: float
    ended: float
    outcomes: tuple[Outcome, ...]
    rss_after: int | None
    cpu_used: tuple[float | None, float | None, float | None]
    """CPU seconds of the server (its child processes included), of its child processes, and of
    the simulator, from the warm-up's end to `ended`."""
    stalls: dict[str, Stalls]
    """The server's (when its /metrics can be read) and the simulator's, over the same time."""


async def _drive(
    run: Run,
    cast: Cast,
    pid: int | None,
    cpu_pids: tuple[int, ...],
    progress: Progress | None,
) -> Phase:
    setup_bound = SETUP_SECONDS + len(cast.everyone) / 100
    own = OwnStalls()
    with watching_own_pauses(own):
        return await _drive_watched(run, cast, pid, cpu_pids, progress, own, setup_bound)


async def _drive_watched(
    run: Run,
    cast: Cast,
    pid: int | None,
    cpu_pids: tuple[int, ...],
    progress: Progress | None,
    own: OwnStalls,
    setup_bound: float,
) -> Phase:
    scenario = run.scenario
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_own_lag, own)
        for agent in cast.agents:
            nursery.start_soon(agent.life)
        await _all_connected(cast.agents, setup_bound, "agents")
        # The simulator's own collections would show as the server's latency: none while the
        # load runs, and the server's policy (rare full collections) as the safety net.
        await nursery.start(keep_collections_short)
        with collections_held():
            started = trio.current_time()
            run.ledger.begin(started, scenario.warmup)
            nursery.start_soon(_arrivals, run, cast.customers, nursery)
            if progress is not None:
                nursery.start_soon(_show_progress, run, started, progress)
            if scenario.chats_per_customer == 0:
                # Only connections: all of them up before the time starts to count.
                await _all_connected(cast.customers, setup_bound, "customers")
                with trio.fail_after(setup_bound):
                    await _round_trips(cast.everyone)
            cpu_from: list[float | None] = []
            stalls_from: list[dict[str, Histogram] | None] = []
            nursery.start_soon(
                _measure_from, run.ledger.measure_from, cpu_pids, run.http, cpu_from, stalls_from
            )
            with trio.move_on_after(scenario.duration):
                await run.stopping.wait()
            run.stop()
            ended = trio.current_time()
        rss_after = rss_kib(pid) if pid else None
        cpu_used = _cpu_since(cpu_from, cpu_pids)
        stalls = {"simulator": own.since(run.ledger.measure_from, ended)}
        server_then = stalls_from[0] if stalls_from else None
        server_now = await server_histograms(run.http) if server_then else None
        if server_then and server_now:
            stalls["server"] = server_stalls(server_then, server_now)
        with trio.move_on_after(scenario.drain):
            await run.acked_all.wait()
            await _round_trips(cast.everyone)
        outcomes = run.ledger.finish(trio.current_time())
        nursery.cancel_scope.cancel()
    return Phase(started, ended, outcomes, rss_after, cpu_used, stalls)


async def _measure_from(
    when: float,
    cpu_pids: tuple[int, ...],
    http: httpx.AsyncClient,
    cpu: list[float | None],
    stalls: list[dict[str, Histogram] | None],
) -> None:
    """At the warm-up's end: the CPU clocks, then the server's stall histograms."""
    await trio.sleep_until(when)
    cpu.extend((*_server_cpu(cpu_pids), cpu_seconds(None)))
    stalls.append(await server_histograms(http))


def _server_cpu(pids: tuple[int, ...]) -> tuple[float | None, float | None]:
    """The CPU seconds of every server process and its child processes, together, and the child
    processes' part (None: a server cannot be read)."""
    total = children = 0.0
    for pid in pids:
        tree = tree_cpu_seconds(pid)
        if tree is None:
            return None, None
        total, children = total + tree[0], children + tree[1]
    return (total, children) if pids else (None, None)


def _cpu_since(
    start: list[float | None], cpu_pids: tuple[int, ...]
) -> tuple[float | None, float | None, float | None]:
    """What was used since `_measure_from` read the clocks (nothing if the load ended before)."""
    if not start:
        return None, None, None
    server_then, children_then, simulator_then = start
    server, children = _server_cpu(cpu_pids)
    return (
        _minus(server, server_then),
        _minus(children, children_then),
        _minus(cpu_seconds(None), simulator_then),
    )


def _minus(later: float | None, then: float | None) -> float | None:
    return None if later is None or then is None else round(later - then, 2)


async def _all_connected(who: Sequence[Participant], bound: float, what: str) -> None:
    try:
        with trio.fail_after(bound):
            for participant in who:
                await participant.connected.wait()
    except trio.TooSlowError:
        up = sum(participant.connected.is_set() for participant in who)
        raise RemoteError(f"only {up} of {len(who)} {what} connected within {bound:.0f}s") from None


async def _round_trips(who: Sequence[Participant]) -> None:
    async with trio.open_nursery() as nursery:
        for participant in who:
            if not participant.gave_up:
                nursery.start_soon(participant.round_trip)


async def _arrivals(run: Run, customers: Sequence[Customer], nursery: trio.Nursery) -> None:
    """Customers arrive evenly at the arrival rate (all at once for 0)."""
    rate = run.scenario.arrival_rate
    start = trio.current_time()
    for index, customer in enumerate(customers):
        if rate > 0:
            await trio.sleep_until(start + index / rate)
        if run.stopped:
            return
        nursery.start_soon(customer.life)


async def _show_progress(run: Run, started: float, progress: Progress) -> None:
    ledger, duration = run.ledger, run.scenario.duration
    # Every field the columns show must be there from the first frame: the bar is drawn by
    # its own thread, possibly before the first update.
    task = progress.add_task(run.scenario.preset, total=duration, status="starting")
    while True:
        counts = ledger.counts
        progress.update(
            task,
            completed=min(trio.current_time() - started, duration),
            status=f"sent {counts['sent']}  acked {counts['acked']}  "
            f"chats {counts['chats_opened']}  waiting {ledger.waiting}  "
            f"errors {sum(ledger.errors.values())}",
        )
        await trio.sleep(PROGRESS_SECONDS)


# --- the report --------------------------------------------------------------------------------


def _report(
    scenario: Scenario, url: str, spawned: bool, phase: Phase, ledger: Ledger, memory: Memory | None
) -> Report:
    counts = ledger.counts
    since = ledger.measure_from
    seconds = max(phase.ended - since, 1e-9)
    sends = [send for send in ledger.sends.values() if send.sent_at >= since]
    acked_in_load = sum(
        1 for send in sends if send.acked_at is not None and send.acked_at <= phase.ended
    )
    return Report(
        preset=scenario.preset,
        url=url,
        spawned=spawned,
        scenario=dataclasses.asdict(scenario),
        load_seconds=round(seconds, 3),
        messages=Messages(
            sent=counts["sent"],
            acked=counts["acked"],
            refused=counts["refused"],
            unacked=ledger.outstanding,
            per_second=round(acked_in_load / seconds, 1),
            offered_per_second=round(len(sends) / seconds, 1),
        ),
        latency_ms={name: Summary.of(ledger.samples[name]) for name in MEASURES},
        chats=Chats(
            opened=counts["chats_opened"],
            assigned=counts["chats_assigned"],
            resolved=counts["chats_resolved"],
            reassignments=counts["reassignments"],
            backlog_peak=ledger.backlog_peak,
            queue_empty_after_seconds=_queue_empty_after(ledger, phase.started),
        ),
        agents=AgentChurn(
            drops=counts["drops"], aways=counts["aways"], reconnects=counts["reconnects"]
        ),
        errors=dict(ledger.errors),
        frames_received=dict(ledger.frames.most_common()),
        invariants=phase.outcomes,
        memory=memory,
        cpu=_cpu(phase, acked_in_load),
        stalls=phase.stalls,
    )


def _cpu(phase: Phase, acked: int) -> Cpu | None:
    server, children, simulator = phase.cpu_used
    if simulator is None:
        return None

    def per_message(seconds: float | None) -> float | None:
        return round(seconds * 1000 / acked, 3) if seconds is not None and acked else None

    return Cpu(
        server_seconds=server,
        simulator_seconds=simulator,
        server_ms_per_message=per_message(server),
        server_children_ms_per_message=per_message(children),
    )


def _queue_empty_after(ledger: Ledger, started: float) -> float | None:
    """Seconds from the start of the load to the last time the queue emptied (0 if nothing
    ever waited, None if chats were still waiting at the end)."""
    if ledger.waiting:
        return None
    emptied = [at for at, waiting in ledger.backlog if waiting == 0]
    return round(emptied[-1] - started, 3) if ledger.backlog_peak else 0.0


# --- the command -------------------------------------------------------------------------------

# Flags that override a field of the preset, with their help.
_OVERRIDES: dict[str, tuple[type, str]] = {
    "customers": (int, "simulated customers"),
    "agents": (int, "simulated agents (created through the admin API)"),
    "max_load": (int, "each agent's max load"),
    "duration": (float, "seconds of load at most (idle: how long connections are held)"),
    "max_messages": (int, "messages sent at most"),
    "think": (float, "mean seconds between one participant's messages in a chat"),
    "arrival_rate": (float, "customers arriving per second (0: all at once)"),
    "chats_per_customer": (int, "chats each customer opens (default: steady/churn keep going)"),
    "handling": (float, "mean seconds an agent keeps a chat before resolving it"),
    "away_rate": (float, "times per minute each agent goes away"),
    "drop_rate": (float, "times per minute each agent drops their connection"),
    "message_bytes": (int, "size of each message's content"),
    "seed": (int, "random seed"),
    "warmup": (float, "seconds at the start left out of latencies and rates"),
}


def add_loadsim_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "loadsim",
        help="simulate customers and agents over websockets and report latency and invariants",
        description="Simulate N customers and M agents over real websockets against a running "
        "server (--url) or one started for the run (--spawn); report throughput, latency "
        "percentiles, queue waits and the invariants seen from outside. Exits 1 if an "
        "invariant failed.",
    )
    parser.add_argument("preset", choices=sorted(PRESETS), help="the scenario to start from")
    add_server_flags(parser)
    parser.add_argument(
        "--spawn", action="store_true", help="start a server on a temporary store for the run"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="URL",
        help="another node of the same cluster as --url (repeatable): the simulated people are "
        "spread over --url and these, in turn",
    )
    parser.add_argument(
        "--server-pid",
        dest="server_pids",
        action="append",
        type=int,
        default=[],
        metavar="PID",
        help="a server process on this machine (repeatable, e.g. each node's): their CPU is "
        "reported as the server's",
    )
    parser.add_argument(
        "--allow-remote",
        dest="allow_remote",
        action="store_true",
        help="allow a --url that is not a loopback address",
    )
    parser.add_argument(
        "--rate", type=float, help="messages per second offered in all (sets --think)"
    )
    for name, (kind, text) in _OVERRIDES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=text)
    parser.add_argument("--report", type=Path, help="write the report as JSON here")
    parser.add_argument("--plot", type=Path, help="draw latency over time to this PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def scenario_of(args: argparse.Namespace) -> Scenario:
    changes = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    scenario = dataclasses.replace(PRESETS[args.preset], **changes)
    if args.rate is not None:
        if args.rate <= 0:
            raise ValueError("--rate must be positive")
        scenario = scenario.at_rate(args.rate)
    problems = [
        f"--{name.replace('_', '-')} must be positive"
        for name in ("think", "handling", "duration")
        if getattr(scenario, name) <= 0
    ]
    if scenario.chats_per_customer != 0 and scenario.agents < 1:
        problems.append("chats need at least one agent (--agents)")
    if not 1 <= scenario.max_load <= 100:
        problems.append("--max-load must be between 1 and 100")
    if problems:
        raise ValueError("; ".join(problems))
    return scenario


def _check_plot_possible() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'switchboard[plot]' (or matplotlib)"
        ) from None


async def _run(
    scenario: Scenario, target: Target, console: Console, quiet: bool
) -> tuple[Report, Ledger]:
    if quiet or not console.is_terminal:
        return await simulate(scenario, target)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
    ) as progress:
        return await simulate(scenario, target, progress)


_CANNOT_RUN = (ValueError, RemoteError, ServerFailed, PlotUnavailable)


def loadsim_command(args: argparse.Namespace) -> int:
    """0 when every invariant held, 1 when one failed, 2 when the run could not be made."""
    console = Console()
    try:
        scenario = scenario_of(args)
        if args.spawn and args.also:
            raise ValueError("--also adds nodes to a running cluster's --url, not to --spawn")
        for url in (args.url, *args.also):
            if not args.spawn and not args.allow_remote and not is_loopback(url):
                raise ValueError(
                    f"loadsim loads only this machine ({url} is not a loopback address); "
                    "pass --allow-remote to load another host"
                )
        if args.plot is not None:
            _check_plot_possible()
        for warning in scenario.warnings():
            print(f"switchboard: warning: {warning}", file=sys.stderr)
        target = Target(
            url=args.url,
            spawn=args.spawn,
            credentials=Credentials.of(args),
            also=tuple(base_url(url) for url in args.also),
            server_pids=tuple(args.server_pids),
        )
        try:
            report, ledger = trio.run(_run, scenario, target, console, args.quiet)
        except BaseExceptionGroup as group:
            # A refusal met inside the run's task groups: report it as itself.
            raise first_error(group) from None
    except _CANNOT_RUN as error:
        print(f"switchboard: error: {error}", file=sys.stderr)
        return 2
    console.print(render(report))
    if args.report is not None:
        report.write(args.report)
        console.print(f"report written to {args.report}")
    if args.plot is not None:
        origin = ledger.origin
        plot(
            args.plot,
            f"loadsim {report.preset}: {report.messages.per_second:,.0f} msg/s",
            [(at - origin, latency) for at, latency in ledger.timeline],
            [(at - origin, waiting) for at, waiting in ledger.backlog],
            warmup=ledger.measure_from - origin,
            latency=report.latency_ms["end_to_end"],
        )
        console.print(f"plot written to {args.plot}")
    return 0 if report.ok else 1
