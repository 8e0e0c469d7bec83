"""The run: start the servers, set up agents and customers, drive the traffic with kills and
churn at drawn moments, then gather the evidence and check it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import trio

from bus import Lease, open_bus
from cluster import ARBITER_LEASE
from store import (
    AgentStatus,
)
from tools._remote import Server, Unreachable
from tools._server import START_SECONDS, free_port
from tools.chaos._evidence import _evidence
from tools.chaos._peers import AgentPeer, CustomerPeer
from tools.chaos._plan import (
    ADMIN_EMAIL,
    AGENT_PASSWORD,
    DEMO_AGENTS,
    DEMO_PASSWORD,
    REST_SECONDS,
    RIDE_OUT,
    ChaosError,
    ChaosPlan,
    ChaosReport,
)
from tools.chaos._run import ChaosRun, ChatPlan
from tools.chaos._server import ServerProcess
from tools.chaos_check import (
    AgentState,
    AssignmentState,
    check,
)

# --- the run -------------------------------------------------------------------------------------


async def run_chaos(
    plan: ChaosPlan, workdir: Path, *, say: Callable[[str], None] = print
) -> ChaosReport:
    """Drive `plan` against a server in `workdir`, check what it kept, and report."""
    store_url = plan.store or f"sqlite:///{workdir / 'chaos.db'}"
    servers = _servers(plan, store_url, workdir)
    say(f"chaos: seed {plan.seed}; server log {servers[0].log_path}")
    started = time.monotonic()
    run: ChaosRun | None = None
    try:
        with trio.fail_after(plan.time_limit):
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=server.url, timeout=REST_SECONDS)
                    )
                    for server in servers
                ]
                nursery = await stack.enter_async_context(trio.open_nursery())
                for server in servers:  # one after the other: the first seeds the store
                    await server.start(nursery)
                rest = Server(clients[0], servers[0].url, failover=clients[1:], ride_out=RIDE_OUT)
                run = ChaosRun(plan, servers, rest)
                admin, agents, customers = await _set_up(run)
                assignment_actor = await _drive(run, nursery, admin, agents, customers)
                run.stopping = True
                for server in servers:
                    await server.kill()
                nursery.cancel_scope.cancel()
    except trio.TooSlowError:
        where = run.outstanding_work() if run is not None else "setting up"
        raise ChaosError(f"out of time ({plan.time_limit} s): {where}") from None
    finally:
        with trio.CancelScope(shield=True):
            for server in servers:
                await server.kill()
        for server in servers:
            server.close()
    seconds = time.monotonic() - started
    evidence = await _evidence(store_url, run, agents, customers, assignment_actor)
    acked = {(ack.chat_id, ack.client_msg_id) for ack in run.acks}
    stored = [m for messages in evidence.transcripts.values() for m in messages]
    report = ChaosReport(
        plan=plan,
        store_url=store_url,
        kills_survived=run.kills,
        writer_kills_survived=run.writer_kills,
        seconds=seconds,
        stats=run.stats,
        stored_messages=len(stored),
        stored_unacked=sum((m.chat_id, m.client_msg_id) not in acked for m in stored),
        verdict=check(evidence),
    )
    for line in report.lines():
        say(line)
    return report


def _servers(plan: ChaosPlan, store_url: str, workdir: Path) -> list[ServerProcess]:
    if plan.nodes == 1:
        return [ServerProcess(store_url, free_port(), workdir, plan.grace_seconds)]
    if plan.bus is None or not store_url.startswith("mongodb"):
        raise ChaosError("several nodes need a bus URL and a MongoDB store")
    servers = []
    for number in range(plan.nodes):
        data_dir = workdir / f"node-{number}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "SWITCHBOARD_BUS_URL": plan.bus,
            "SWITCHBOARD_NODE_ID": f"node-{number}",
            "SWITCHBOARD_LEASE_SECONDS": str(plan.lease_seconds),
        }
        servers.append(ServerProcess(store_url, free_port(), data_dir, plan.grace_seconds, env))
    return servers


async def _arbiter(bus: str) -> str | None:
    """The node holding the arbiter lease now (None between holders)."""
    async with open_bus(bus) as opened:
        return await Lease(opened, ARBITER_LEASE, "chaos", 1.0).current_holder()


async def _set_up(run: ChaosRun) -> tuple[str, list[AgentPeer], list[CustomerPeer]]:
    """Agents through the admin API (each at the plan's max load), tokens for the customers."""
    plan, rest = run.plan, run.rest
    admin = (
        await rest.call(
            "POST", "/admin/auth/login", json={"email": ADMIN_EMAIL, "password": DEMO_PASSWORD}
        )
    ).json()["token"]
    count = plan.agent_count
    logins = [(email, DEMO_PASSWORD) for email in DEMO_AGENTS[:count]] + [
        (f"chaos-agent-{i}@switchboard.example", AGENT_PASSWORD)
        for i in range(count - len(DEMO_AGENTS))
    ]
    agents: list[AgentPeer] = []
    customers: list[CustomerPeer] = []

    async def agent(number: int, email: str, password: str) -> None:
        if password == AGENT_PASSWORD:
            await rest.call(
                "POST",
                "/admin/users",
                token=admin,
                json={
                    "name": f"Chaos Agent {number}",
                    "email": email,
                    "password": password,
                    "confirmPassword": password,
                    "maxLoad": plan.max_load,
                },
            )
        signed_in = (
            await rest.call("POST", "/auth/login", json={"email": email, "password": password})
        ).json()
        user_id = signed_in["user"]["id"]
        if password == DEMO_PASSWORD:
            await rest.call(
                "PUT",
                f"/admin/agents/{user_id}/max-load",
                token=admin,
                json={"maxLoad": plan.max_load},
            )
        agents.append(AgentPeer(run, f"agent{number}", signed_in["token"], user_id))

    async def customer(chat: ChatPlan) -> None:
        minted = (
            await rest.call(
                "POST",
                "/dev/customer-token",
                json={"customerId": f"chaos-{plan.seed}-{chat.index}"},
            )
        ).json()
        customers.append(CustomerPeer(run, f"customer{chat.index}", minted["token"], chat))

    async with trio.open_nursery() as nursery:
        for number, (email, password) in enumerate(logins):
            nursery.start_soon(agent, number, email, password)
        for chat in run.chats:
            nursery.start_soon(customer, chat)
    agents.sort(key=lambda peer: peer.name)
    customers.sort(key=lambda peer: peer.chat.index)
    return admin, agents, customers


def _moments(rng: random.Random, count: int, total: int) -> list[int]:
    """`count` distinct ack counts in the traffic (not its last few percent), ascending."""
    upper = max(count + 1, int(total * 0.97))
    return sorted(rng.sample(range(1, upper), min(count, upper - 1)))


async def _drive(
    run: ChaosRun,
    server_nursery: trio.Nursery,
    admin: str,
    agents: list[AgentPeer],
    customers: list[CustomerPeer],
) -> AssignmentState:
    plan = run.plan
    rng = random.Random(plan.seed)
    total = plan.chats * plan.messages
    kill_at = _moments(rng, plan.kills, total)
    churn_at = _moments(rng, plan.churn, total) if plan.churn else []
    writer_kill_at = _moments(random.Random(plan.seed + 2), plan.writer_kills, total)

    async def kill() -> None:
        if not plan.atomic_routing:
            await run.all_assigned.wait()
        for number, threshold in enumerate(kill_at):
            await run.wait_acked(threshold)
            await trio.sleep(rng.uniform(0.0, 0.02))
            victim, arbiter = run.servers[rng.randrange(len(run.servers))], None
            if plan.bus is not None and number % 2 == 0:  # the arbiter, on purpose
                arbiter = await _arbiter(plan.bus)
                if arbiter is not None:
                    victim = run.servers[int(arbiter.rpartition("-")[2])]
            down = trio.current_time()
            await victim.kill()
            run.kills += 1
            if arbiter is not None:
                assert plan.bus is not None
                with trio.fail_after(START_SECONDS):
                    while await _arbiter(plan.bus) in (None, arbiter):  # noqa: ASYNC110
                        await trio.sleep(0.02)
                run.stats.takeover_seconds.append(trio.current_time() - down)
            await victim.start(server_nursery)
            run.stats.restart_seconds.append(trio.current_time() - down)

    async def kill_writer() -> None:
        for threshold in writer_kill_at:
            await run.wait_acked(threshold)
            await run.servers[0].kill_writer()
            run.writer_kills += 1

    async def churn() -> None:
        churn_rng = random.Random(plan.seed + 1)
        for threshold in churn_at:
            await run.wait_acked(threshold)
            await _churn_once(run, churn_rng, admin, agents)

    async with trio.open_nursery() as clients:
        for peer in agents:
            clients.start_soon(peer.live)
        with trio.fail_after(START_SECONDS):
            for peer in agents:
                await peer.available.wait()
        for customer in customers:
            clients.start_soon(customer.live)
        # Every kill and churn moment comes before the last ack, so both end on their own; an
        # operation under way when the traffic ends (an agent stepping away) is finished, not
        # cut short, so nothing moves while the clients catch up.
        async with trio.open_nursery() as chaos:
            chaos.start_soon(kill)
            chaos.start_soon(churn)
            chaos.start_soon(kill_writer)
            await run.all_acked.wait()
        async with trio.open_nursery() as settling:
            for anyone in [*agents, *customers]:
                settling.start_soon(anyone.settle)
        state = await _assignment_state(run, admin)
        run.stopping = True
        for server in run.servers:
            await server.kill()
        clients.cancel_scope.cancel()
    return state


async def _churn_once(
    run: ChaosRun, rng: random.Random, admin: str, agents: list[AgentPeer]
) -> None:
    op = rng.choice(["away", "reassign", "reassign", "max_load"])
    agent = rng.choice(agents)
    outcome = "done"
    try:
        match op:
            case "away":
                outcome = "done" if await agent.step_away(rng) else "offline"
            case "reassign":
                chats = [chat.chat_id for chat in run.chats if chat.chat_id is not None]
                response = await run.rest.send(
                    "POST",
                    f"/admin/chats/{rng.choice(chats)}/reassign",
                    token=admin,
                    json={"agentId": agent.user_id},
                    attempts=3,
                )
                outcome = str(response.status_code)
            case _:
                response = await run.rest.send(
                    "PUT",
                    f"/admin/agents/{agent.user_id}/max-load",
                    token=admin,
                    json={"maxLoad": rng.choice([run.plan.max_load - 1, run.plan.max_load])},
                    attempts=3,
                )
                outcome = str(response.status_code)
    except (ChaosError, Unreachable):
        outcome = "server down"
    run.stats.churn_ops[f"{op} {outcome}"] += 1


async def _assignment_state(run: ChaosRun, admin: str) -> AssignmentState:
    system = (await run.rest.call("GET", "/admin/system", token=admin)).json()
    return AssignmentState(
        agents=tuple(
            AgentState(
                agent["id"],
                AgentStatus(agent["status"]),
                agent["load"],
                agent["maxLoad"],
                tuple(agent["chatIds"]),
            )
            for agent in system["agents"]
        ),
        queued=tuple(entry["chatId"] for entry in system["queue"]),
        parked=tuple(system["parked"]),
    )
