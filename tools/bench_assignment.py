"""Benchmark: the assignment actor in-process under a realistic mix, with an invariant check.

200 agents (max load 2..6) connect and go available; 10,000 chats arrive from concurrent
customers with mixed priorities; agents resolve or park chats after a while, some go away and come
back, an admin changes max loads and reassigns. Every decision goes through the real
AssignmentActor and a real store (memory by default, `--store sqlite` for the durable figure).

A decision is one routing request the assignment actor decides: open (assign or queue), resolve,
status change, max-load change, reassign (refusals included, they are decisions too). Prints
decisions and assignments per second, and the invariants seen from outside: no chat with two
agents, no agent above max load, loads equal to the open chats the store records, no chat
waiting while an agent has room. Exits non-zero on a violation.

    python -m tools.bench_assignment [--agents 200] [--chats 10000] [--store memory|sqlite]
        [--concurrency 100]

`--burst` measures instead how fast a backlog drains, as `switchboard loadsim burst` does over
websockets but with nothing between the agents and the assignment actor: 2,000 chats arrive at 200 a
second for 50 agents with max load 4, each agent resolves each chat after a handling time (2 s
mean, exponential), and the drain time (first arrival to last assignment) is printed against
the ideal, every freed slot refilled at once: chats x handling / slots.

    python -m tools.bench_assignment --burst [--agents 50] [--chats 2000] [--max-load 4]
        [--arrival-rate 200] [--handling 2] [--store memory|sqlite]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, cast

import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from actors import ChatAssigned, Event, Session, System, SystemSnapshot, open_system
from router import Refused
from store import (
    ACTIVE_CHAT_STATUSES,
    ActedBy,
    AgentStatus,
    Backend,
    ChatFilter,
    ChatStatus,
    MemoryStore,
    Priority,
    Role,
    User,
    open_sqlite_store,
    pages,
    utcnow,
)

PRIORITIES = (Priority.LOW, Priority.MEDIUM, Priority.MEDIUM, Priority.HIGH, Priority.URGENT)


@asynccontextmanager
async def _open_store(kind: str) -> AsyncIterator[Backend]:
    if kind == "memory":
        yield MemoryStore()
        return
    with tempfile.TemporaryDirectory() as folder:
        async with open_sqlite_store(Path(folder) / "bench.db") as sqlite:
            yield sqlite


class Counter:
    """Chats assigned (ChatAssigned reaching an agent), decisions asked of the assignment actor, and
    the routing writes that stored them."""

    def __init__(self) -> None:
        self.assignments = 0
        self.decisions = 0
        self.writes = 0
        self.cpu_seconds = 0.0  # this process, every thread (the store's writer included)

    def offer(self, event: Event) -> None:
        if isinstance(event, ChatAssigned):
            self.assignments += 1


class _CountedWrites:
    """`store`, counting `record_routing` calls: one per batch of decisions."""

    def __init__(self, store: Backend, counter: Counter) -> None:
        self._store = store
        self._counter = counter

    async def record_routing(self, *args: Any, **kwargs: Any) -> None:
        self._counter.writes += 1
        await self._store.record_routing(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def _seed_agents(
    store: Backend, count: int, rng: random.Random, max_load: int | None = None
) -> list[str]:
    now = utcnow()
    ids = []
    for n in range(count):
        user = User(
            id=f"agent-{n:04d}",
            email=f"agent-{n}@bench.example",
            name=f"Agent {n}",
            role=Role.AGENT,
            max_load=rng.randint(2, 6) if max_load is None else max_load,
            created_at=now,
            updated_at=now,
        )
        await store.create_user(user)
        ids.append(user.id)
    return ids


async def run(agents: int, chats: int, store_kind: str, seed: int, concurrency: int) -> int:
    rng = random.Random(seed)
    console = Console()
    async with _open_store(store_kind) as store:
        agent_ids = await _seed_agents(store, agents, rng)
        counter = Counter()
        async with open_system(cast(Backend, _CountedWrites(store, counter))) as system:
            # One counting session per agent: ChatAssigned reaches the agent exactly once.
            await _available(system, agent_ids, lambda agent_id: counter.offer)
            counter.assignments = counter.writes = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            await _drive(system, agent_ids, chats, rng, console, counter, concurrency)
            elapsed = time.perf_counter() - started
            counter.cpu_seconds = time.process_time() - cpu_started
            snapshot = await system.snapshot()
            violations = await _check(store, snapshot)
    _report(console, agents, chats, store_kind, concurrency, counter, elapsed, violations)
    return 1 if violations else 0


async def _available(
    system: System, agent_ids: list[str], offer_to: Callable[[str], Callable[[Event], None]]
) -> None:
    """Each agent connected (one session, offering its events to `offer_to(agent_id)`) and
    available."""
    for agent_id in agent_ids:
        await system.connect(
            Session(agent_id, agent_id, offer_to(agent_id), lambda code, why: None), Role.AGENT
        )
        await system.set_agent_status(
            agent_id, AgentStatus.AVAILABLE, by=ActedBy.SELF, actor_id=agent_id
        )


async def _drive(
    system: System,
    agent_ids: list[str],
    chats: int,
    rng: random.Random,
    console: Console,
    counter: Counter,
    concurrency: int,
) -> None:
    open_chats: list[str] = []
    columns = (TextColumn("chats"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("chats", total=chats)

        async def customer(n: int) -> None:
            opened = await system.open_chat(
                f"customer-{n}", title="Order", description="", priority=rng.choice(PRIORITIES)
            )
            open_chats.append(opened.chat.id)
            counter.decisions += 1
            progress.advance(task)

        async def staff_action() -> None:
            roll = rng.random()
            if roll < 0.80 and open_chats:
                chat_id = open_chats.pop(rng.randrange(len(open_chats)))
                await _ignore_refusal(
                    system.resolve_chat(chat_id, by=ActedBy.ADMIN, actor_id="bench")
                )
            elif roll < 0.90:
                agent_id = rng.choice(agent_ids)
                status = rng.choice((AgentStatus.AWAY, AgentStatus.AVAILABLE))
                await system.set_agent_status(agent_id, status, by=ActedBy.SELF, actor_id=agent_id)
            elif roll < 0.95:
                agent_id = rng.choice(agent_ids)
                await system.set_max_load(agent_id, rng.randint(1, 6), actor_id="bench")
            elif open_chats:
                chat_id, agent_id = rng.choice(open_chats), rng.choice(agent_ids)
                await _ignore_refusal(system.reassign_chat(chat_id, agent_id, actor_id="bench"))
            else:
                return
            counter.decisions += 1

        # `concurrency` requests in flight at any time, half customers opening chats and half
        # staff acting, as many sockets would keep them.
        limiter = trio.CapacityLimiter(concurrency)

        async def limited(request: Callable[[], Awaitable[None]]) -> None:
            async with limiter:
                await request()

        async with trio.open_nursery() as nursery:
            for n in range(chats):
                nursery.start_soon(limited, partial(customer, n))
                nursery.start_soon(limited, staff_action)
                await trio.lowlevel.checkpoint()  # start them in order, as they arrive


async def _ignore_refusal(call: Awaitable[object]) -> None:
    """Resolving a chat twice or reassigning to a full agent is refused: part of the mix."""
    with suppress(Refused):
        await call


async def _check(store: Backend, snapshot: SystemSnapshot) -> list[str]:
    """The invariants, from the assignment actor's snapshot and, independently, from the store."""
    violations = []
    owners: dict[str, str] = {}
    for agent in snapshot.core.agents:
        if agent.load > agent.max_load and agent.status != AgentStatus.BUSY:
            violations.append(f"{agent.agent_id}: load {agent.load}/{agent.max_load}, not busy")
        for chat_id in agent.chat_ids:
            if chat_id in owners:
                violations.append(f"{chat_id}: owned by {owners[chat_id]} and {agent.agent_id}")
            owners[chat_id] = agent.agent_id
    eligible = [
        a
        for a in snapshot.core.agents
        if a.status == AgentStatus.AVAILABLE and a.connections and a.load < a.max_load
    ]
    if snapshot.core.queue and eligible:
        violations.append(f"{len(snapshot.core.queue)} chats wait while {len(eligible)} have room")
    stored_owners: dict[str, str] = {}
    active = ChatFilter(statuses=ACTIVE_CHAT_STATUSES)
    async for chats in pages(lambda cursor: store.list_chats(active, limit=500, cursor=cursor)):
        for chat in chats:
            if chat.status == ChatStatus.OPEN and chat.agent_id is not None:
                stored_owners[chat.id] = chat.agent_id
    if stored_owners != owners:
        differing = set(stored_owners.items()) ^ set(owners.items())
        violations.append(f"store and assignment actor disagree on {len(differing)} owners")
    return violations


def _report(
    console: Console,
    agents: int,
    chats: int,
    store_kind: str,
    concurrency: int,
    counter: Counter,
    elapsed: float,
    violations: list[str],
) -> None:
    decisions, cpu = counter.decisions, counter.cpu_seconds
    rows = [
        ("agents / chats", f"{agents} / {chats}"),
        ("store", store_kind),
        ("requests in flight", f"{concurrency}"),
        ("elapsed", f"{elapsed:.2f} s"),
        ("decisions (open, resolve, status, max load, reassign)", f"{decisions}"),
        ("decisions per second", f"{decisions / elapsed:,.0f}"),
        # On a shared machine the wall-clock rate falls with the load; the CPU cost does not.
        ("CPU seconds (this process: the actor, store, driver)", f"{cpu:.2f}"),
        ("decisions per CPU second", f"{decisions / max(cpu, 1e-9):,.0f}"),
        ("routing writes", f"{counter.writes}"),
        ("decisions per write", f"{decisions / max(counter.writes, 1):.1f}"),
        ("chats assigned", f"{counter.assignments}"),
        ("assignments per second", f"{counter.assignments / elapsed:,.0f}"),
    ]
    _print_table(console, "Assignment actor benchmark", rows, violations)


def _print_table(
    console: Console, title: str, rows: list[tuple[str, str]], violations: list[str]
) -> None:
    """The figures, the load average they were measured under, and the violations."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    table.add_row("load average (1 min, at the end)", f"{os.getloadavg()[0]:.2f}")
    table.add_row("invariant violations", f"{len(violations)}")
    console.print(table)
    for violation in violations[:20]:
        console.print(f"[red]violation:[/red] {violation}")


async def run_burst(
    agents: int,
    chats: int,
    store_kind: str,
    seed: int,
    *,
    max_load: int,
    arrival_rate: float,
    handling: float,
) -> int:
    """A backlog of `chats` for `agents` x `max_load` slots, drained as agents resolve."""
    rng = random.Random(seed)
    console = Console()
    assigned: list[tuple[str, str]] = []
    resolved = 0
    all_resolved = trio.Event()
    async with _open_store(store_kind) as store:
        agent_ids = await _seed_agents(store, agents, rng, max_load)
        counter = Counter()
        send, receive = trio.open_memory_channel[tuple[str, str]](math.inf)

        def offer_to(agent_id: str) -> Callable[[Event], None]:
            def offer(event: Event) -> None:
                if isinstance(event, ChatAssigned):
                    send.send_nowait((event.chat.id, agent_id))

            return offer

        async with open_system(cast(Backend, _CountedWrites(store, counter))) as system:
            await _available(system, agent_ids, offer_to)
            counter.writes = 0
            started, cpu_started = trio.current_time(), time.process_time()
            last_assigned = started

            async def resolve_after(chat_id: str, agent_id: str) -> None:
                nonlocal resolved
                await trio.sleep(rng.expovariate(1 / handling))
                await system.resolve_chat(chat_id, by=ActedBy.SELF, actor_id=agent_id)
                counter.decisions += 1
                resolved += 1
                if resolved == chats:
                    all_resolved.set()

            async def agents_at_work(nursery: trio.Nursery) -> None:
                nonlocal last_assigned
                async for chat_id, agent_id in receive:
                    last_assigned = trio.current_time()
                    assigned.append((chat_id, agent_id))
                    nursery.start_soon(resolve_after, chat_id, agent_id)

            async def customer(n: int) -> None:
                await system.open_chat(
                    f"customer-{n}", title="Order", description="", priority=Priority.MEDIUM
                )
                counter.decisions += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(agents_at_work, nursery)
                for n in range(chats):
                    nursery.start_soon(customer, n)
                    await trio.sleep(1 / arrival_rate)
                await all_resolved.wait()
                nursery.cancel_scope.cancel()
            elapsed = trio.current_time() - started
            counter.cpu_seconds = time.process_time() - cpu_started
            violations = await _check(store, await system.snapshot())
    if len({chat_id for chat_id, _ in assigned}) != chats:
        violations.append(f"{len(assigned)} assignments for {chats} chats")
    drain = last_assigned - started
    ideal = max(chats * handling / (agents * max_load), chats / arrival_rate)
    rows = [
        ("agents x max load / chats", f"{agents} x {max_load} / {chats}"),
        ("store", store_kind),
        ("arrivals / handling (mean)", f"{arrival_rate:g} a second / {handling:g} s"),
        ("drained (first arrival -> last assignment)", f"{drain:.2f} s"),
        ("ideal (chats x handling / slots)", f"{ideal:.2f} s"),
        ("drain / ideal", f"{drain / ideal:.2f}"),
        ("decisions (opens and resolves)", f"{counter.decisions}"),
        ("routing writes", f"{counter.writes}"),
        ("CPU seconds (this process)", f"{counter.cpu_seconds:.2f} of {elapsed:.2f} s"),
    ]
    _print_table(console, "Assignment actor benchmark: a burst drained", rows, violations)
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--burst", action="store_true", help="drain a backlog instead")
    parser.add_argument("--agents", type=int, help="default 200 (50 with --burst)")
    parser.add_argument("--chats", type=int, help="default 10,000 (2,000 with --burst)")
    parser.add_argument("--max-load", type=int, default=4, help="with --burst (default 4)")
    parser.add_argument("--arrival-rate", type=float, default=200.0, help="with --burst")
    parser.add_argument("--handling", type=float, default=2.0, help="with --burst: mean seconds")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--concurrency", type=int, default=100, help="requests in flight at once (default 100)"
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if min(args.max_load, args.arrival_rate, args.handling) <= 0:
        parser.error("--max-load, --arrival-rate and --handling must be positive")
    if args.burst:
        burst = partial(
            run_burst,
            max_load=args.max_load,
            arrival_rate=args.arrival_rate,
            handling=args.handling,
        )
        agents, chats = args.agents or 50, args.chats or 2_000
        return trio.run(burst, agents, chats, args.store, args.seed)
    agents, chats = args.agents or 200, args.chats or 10_000
    return trio.run(run, agents, chats, args.store, args.seed, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
