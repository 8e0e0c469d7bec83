"""Crash/restart chaos: real websocket clients talk through a real server that is SIGKILLed.

`run_chaos(plan, workdir)` starts `switchboard serve` as a subprocess on a port of its own (so a
restart keeps the URL), creates agents through the admin API, and drives `plan.chats` chats of
`plan.messages` messages each (half from the customer, half from whichever agent has the chat)
from trio-websocket clients. It kills the server with SIGKILL `plan.kills` times, each after a
drawn number of acknowledged messages (drawn from `plan.seed`), and starts it again on the same
store. Clients do what a real client does: reconnect with bounded backoff, resend every
unacknowledged message with the same clientMsgId, and `resume` each chat from the last seq they
showed (reloading over REST when the gap is too large). Optional churn (`plan.churn`) has agents
step away and back, and an admin reassign chats and change max loads, at drawn moments.

When every message is acknowledged, each client catches up with a final resume, the assignment
actor's state is read (GET /admin/system), the server is killed, and tools/chaos_check.py checks
the evidence against the store: nothing acknowledged lost or stored twice, seqs 1, 2, 3, ...,
every client showed every message in order, no chat with two agents, no agent over max load, and
the assignment actor agreeing with the store and the log.

From the command line, with bigger numbers:

    python -m tools.chaos --chats 200 --messages 1000 --kills 50 --churn 100 --seed 7
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from bus import Lease, open_bus
from cluster import ARBITER_LEASE
from store import (
    Activity,
    ActivityFilter,
    AgentStatus,
    Chat,
    Message,
    Role,
    User,
    open_store,
    pages,
)
from tools.chaos_check import (
    AckRecord,
    AgentState,
    ClientView,
    Evidence,
    SupervisorState,
    Verdict,
    check,
)

Frame = dict[str, Any]

# Secrets of the server under test only.
STAFF_SECRET = "chaos-staff-secret-0123456789abcdef0123456789"
CUSTOMER_SECRET = "chaos-customer-secret-0123456789abcdef012345"
ADMIN_EMAIL = "admin@switchboard.example"
DEMO_AGENTS = ("ann@switchboard.example", "bob@switchboard.example", "cy@switchboard.example")
DEMO_PASSWORD = "switchboard-demo"
AGENT_PASSWORD = "chaos-agent-password"

START_SECONDS = 60.0  # a start, from exec to the "serving on" line
STOP_SECONDS = 10.0
CONNECT_SECONDS = 5.0  # one websocket handshake
REST_SECONDS = 10.0  # one REST call
REST_ATTEMPTS = 60
RECONNECT_ATTEMPTS = 100  # in a row, without a connection lasting
BACKOFF_FIRST, BACKOFF_CAP = 0.02, 0.5
ACK_SECONDS = 30.0  # an ack overdue this long on a live connection: reconnect
SETTLE_SECONDS = 30.0
SETTLE_ATTEMPTS = 5
WINDOW_RETRY_SECONDS = 0.05  # before resending a message the server could not take just then
_SERVING = re.compile(rb"serving on (http://\S+)")
_TITLE = re.compile(r"chaos (\d+)")
# Refusals that mean "not now": the message stays unacknowledged and is sent again.
_TRANSIENT = frozenset({"unavailable", "store_unavailable", "overloaded", "internal"})
# Refusals that mean the agent no longer has the chat (a chat not yours reads as not found).
_NOT_YOURS = frozenset({"chat_not_found", "not_a_participant", "chat_not_active", "chat_resolved"})


class ChaosError(Exception):
    """The run could not go on (a client gave up, the server would not start)."""


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    chats: int = 50
    messages: int = 400  # per chat: the customer sends the first half, the agents the rest
    kills: int = 10
    seed: int = 0
    churn: int = 0  # agents stepping away and back, admin reassigns and max-load changes
    agents: int = 0  # 0: one per 5 chats, at least 3
    window: int = 4  # messages a client has unacknowledged at once, per chat
    grace_seconds: float = 5.0
    store: str | None = None  # a store URL; default SQLite in the work directory
    # Whether the store writes a routing decision and its activity-log entries atomically
    # (SQLite, a MongoDB replica set). A standalone MongoDB does not: a kill between the two
    # leaves log entries for a decision that never took effect (README, MongoDB), so there the
    # kills wait until every chat is assigned (runs without churn make no decisions after that).
    atomic_routing: bool = True
    time_limit: float = 600.0
    # Cluster mode: this many nodes on one bus (a Valkey/Redis URL) and the store (MongoDB);
    # the clients spread over them, and every other kill is the arbiter's node.
    nodes: int = 1
    bus: str | None = None
    lease_seconds: float = 2.0

    @property
    def customer_messages(self) -> int:
        return (self.messages + 1) // 2

    @property
    def agent_messages(self) -> int:
        return self.messages // 2

    @property
    def agent_count(self) -> int:
        return self.agents or max(3, math.ceil(self.chats / 5))

    @property
    def max_load(self) -> int:
        """Each agent's: room for every chat with one agent away and every max load lowered by
        one (the churn does both)."""
        return min(100, math.ceil(self.chats / max(1, self.agent_count - 1)) + 1)


@dataclass(slots=True)
class Stats:
    acked: int = 0
    resends: int = 0
    abandoned: int = 0  # unacknowledged when the agent lost the chat
    reconnects: int = 0  # connections made again after one ended
    failed_connects: int = 0  # attempts the server refused or did not answer (it was down)
    ack_stalls: int = 0
    gaps: int = 0  # a message arrived ahead of one missing
    duplicates: int = 0  # a message shown already arrived again
    resumes: int = 0
    reloads: int = 0  # resume said the gap was too large: reloaded over REST
    restart_seconds: list[float] = field(default_factory=list)  # kill to serving again
    takeover_seconds: list[float] = field(default_factory=list)  # arbiter killed to a new one
    churn_ops: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)


@dataclass(slots=True)
class ChaosReport:
    plan: ChaosPlan
    store_url: str
    kills_survived: int
    seconds: float
    stats: Stats
    stored_messages: int
    stored_unacked: int
    verdict: Verdict

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.kills_survived == self.plan.kills

    def lines(self) -> list[str]:
        plan, stats = self.plan, self.stats
        store = self.store_url.partition("://")[0]
        return [
            f"chaos: seed {plan.seed}, {store} store, {plan.chats} chats x {plan.messages} "
            f"messages, {plan.agent_count} agents, {plan.kills} kills, {plan.churn} churn ops",
            f"kills survived: {self.kills_survived} in {self.seconds:.1f} s "
            f"(restarts took {_spread(stats.restart_seconds)} s)",
            *(
                [
                    f"cluster: {plan.nodes} nodes, lease {plan.lease_seconds} s; "
                    f"{len(stats.takeover_seconds)} arbiter kills, takeover "
                    f"{_spread(stats.takeover_seconds)} s (target: lease + 1 s)"
                ]
                if plan.nodes > 1
                else []
            ),
            f"messages: {stats.acked} acknowledged, {self.stored_messages} stored "
            f"({self.stored_unacked} stored but never acknowledged), {stats.resends} resent, "
            f"{stats.abandoned} abandoned with a lost chat",
            f"clients: {stats.reconnects} reconnects ({stats.failed_connects} attempts failed), "
            f"{stats.resumes} resumes, {stats.reloads} "
            f"REST reloads, {stats.gaps} gaps, {stats.duplicates} duplicates, "
            f"{stats.ack_stalls} ack stalls",
            f"closes: { {int(code): n for code, n in stats.closes.items()} }; "
            f"refusals: {dict(stats.refusals)}; "
            f"churn: {dict(stats.churn_ops)}",
            *self.verdict.lines(),
        ]


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.1f}-{max(values):.1f}, mean {sum(values) / len(values):.1f}"


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """`switchboard serve` in a subprocess, on a fixed port; its output goes to `log`."""

    def __init__(
        self,
        store_url: str,
        port: int,
        data_dir: Path,
        grace: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.store_url = store_url
        self._command = [
            sys.executable,
            "-m",
            "tools.cli",
            "serve",
            "--port",
            str(port),
            "--store",
            store_url,
            "--seed-if-empty",
        ]
        self._env = (
            os.environ
            | {
                "SWITCHBOARD_MODE": "development",
                "SWITCHBOARD_HOST": "127.0.0.1",
                "SWITCHBOARD_DATA_DIR": str(data_dir),
                "SWITCHBOARD_JWT_SECRET": STAFF_SECRET,
                "SWITCHBOARD_CUSTOMER_JWT_SECRET": CUSTOMER_SECRET,
                "SWITCHBOARD_GRACE_PERIOD_SECONDS": str(grace),
                # The clients are programs that send as fast as acks come back.
                "SWITCHBOARD_WS_MAX_FRAMES_PER_SECOND": "100000",
                "SWITCHBOARD_WS_FRAME_BURST": "100000",
            }
            | dict(env or {})
        )
        self.log_path = data_dir / "server.log"
        self._log: BinaryIO = self.log_path.open("ab")
        self._process: trio.Process | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        """Start and wait (bounded) for the "serving on" line."""
        self._log.write(b"\n--- start ---\n")
        process = await trio.lowlevel.open_process(
            self._command, stdout=subprocess.PIPE, stderr=self._log, env=self._env
        )
        self._process = process
        up = trio.Event()
        nursery.start_soon(self._read_output, process, up)
        with trio.move_on_after(START_SECONDS):
            await up.wait()
        if process.returncode is not None or not up.is_set() or not self._serving:
            await self.kill()
            raise ChaosError(f"the server did not start; see {self.log_path}")

    _serving = False

    async def _read_output(self, process: trio.Process, up: trio.Event) -> None:
        assert process.stdout is not None
        self._serving, pending = False, b""
        async with process.stdout:
            while chunk := await process.stdout.receive_some():
                self._log.write(chunk)
                pending += chunk
                if not up.is_set() and (found := _SERVING.search(pending)) is not None:
                    if found.group(1).decode() != self.url:
                        raise ChaosError(f"serving on {found.group(1)!r}, not {self.url}")
                    self._serving = True
                    up.set()
                pending = pending[-4096:]
        up.set()  # exited (or closed its output) without serving

    def send_signal(self, signum: int) -> None:
        """SIGSTOP and SIGCONT, to freeze a node and let it run again."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL, and wait (bounded) until it is gone."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        with trio.move_on_after(STOP_SECONDS) as waiting:
            waiting.shield = True
            await process.wait()
        self._process = None

    def close(self) -> None:
        self._log.close()


# --- REST ----------------------------------------------------------------------------------------


class Rest:
    """REST calls that ride out restarts: retried (bounded) while the server is down or 5xx;
    with several nodes, each retry goes to the next one."""

    def __init__(self, *nodes: httpx.AsyncClient) -> None:
        self.nodes = nodes
        self._turn = 0

    @property
    def http(self) -> httpx.AsyncClient:
        return self.nodes[self._turn % len(self.nodes)]

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        params: dict[str, Any] | None = None,
        attempts: int = REST_ATTEMPTS,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for attempt in range(attempts):
            try:
                with trio.fail_after(REST_SECONDS):
                    response = await self.http.request(
                        method, path, json=body, params=params, headers=headers
                    )
                if response.status_code < 500:
                    return response
            except (httpx.TransportError, trio.TooSlowError):
                pass
            self._turn += 1
            await trio.sleep(_backoff(attempt))
        raise ChaosError(f"{method} {path}: no answer after {attempts} attempts")

    async def ok(self, method: str, path: str, **how: Any) -> Any:
        response = await self.call(method, path, **how)
        if response.status_code >= 300:
            raise ChaosError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2.0**attempt) * random.uniform(0.5, 1.0)


# --- the run's shared state ----------------------------------------------------------------------


@dataclass(slots=True)
class ChatPlan:
    """One chat: the customer's half is theirs; the agents' half is shared by whoever has it."""

    index: int
    agent_total: int
    chat_id: str | None = None
    agent_next: int = 0  # the next agent message number to hand out
    agent_inflight: int = 0
    agent_acked: int = 0

    def take_agent_number(self) -> int | None:
        if self.agent_acked + self.agent_inflight >= self.agent_total:
            return None
        self.agent_inflight += 1
        self.agent_next += 1
        return self.agent_next - 1


class Run:
    """What every client shares: the plan, the progress towards the kills, the evidence."""

    def __init__(self, plan: ChaosPlan, servers: list[ServerProcess], rest: Rest) -> None:
        self.plan = plan
        self.servers = servers
        self.rest = rest
        self._homes = 0
        self.stats = Stats()
        self.acks: list[AckRecord] = []
        self.chats = [ChatPlan(i, plan.agent_messages) for i in range(plan.chats)]
        self._by_id: dict[str, ChatPlan] = {}
        self.stopping = False
        self.kills = 0
        self.outstanding = plan.chats * 2  # customers' halves and agents' halves still to finish
        self.all_acked = trio.Event()
        self.all_assigned = trio.Event()  # every chat has had an agent
        self._assigned: set[int] = set()
        self._waiters: list[tuple[int, trio.Event]] = []

    def home(self) -> int:
        """A node for a new client, in turn, so the clients spread over the nodes."""
        self._homes += 1
        return self._homes - 1

    def ws_url(self, turn: int) -> str:
        server = self.servers[turn % len(self.servers)]
        return server.url.replace("http://", "ws://", 1) + "/ws"

    def chat_opened(self, chat: ChatPlan, chat_id: str) -> None:
        chat.chat_id = chat_id
        self._by_id[chat_id] = chat

    def chat_of(self, chat: Frame) -> ChatPlan | None:
        """The plan of a chat as the wire shows it; by its title, since an agent can hear of a
        chat before its customer has heard back that it is open."""
        found = self._by_id.get(chat["id"])
        if found is None and (title := _TITLE.fullmatch(chat["title"])) is not None:
            found = self.chats[int(title.group(1))]
            self.chat_opened(found, chat["id"])
        return found

    def acked(self, record: AckRecord) -> None:
        self.acks.append(record)
        self.stats.acked += 1
        for count, reached in self._waiters:
            if self.stats.acked >= count:
                reached.set()

    async def wait_acked(self, count: int) -> None:
        """Until `count` messages have been acknowledged (the kills' and churn's moments)."""
        reached = trio.Event()
        waiter = (count, reached)
        self._waiters.append(waiter)
        try:
            if self.stats.acked < count:
                await reached.wait()
        finally:
            self._waiters.remove(waiter)

    def outstanding_work(self) -> str:
        """What is not acknowledged yet, for a run that ran out of time."""
        chats = [
            f"chat{chat.index} ({chat.chat_id}): agents {chat.agent_acked}/{chat.agent_total}"
            f" acked, {chat.agent_inflight} in flight"
            for chat in self.chats
            if chat.agent_acked < chat.agent_total
        ]
        return (
            f"{self.stats.acked} acked, {self.kills} kills, {self.outstanding} halves to go; "
            + "; ".join(chats[:10])
        )

    def assigned(self, chat: ChatPlan) -> None:
        self._assigned.add(chat.index)
        if len(self._assigned) == len(self.chats):
            self.all_assigned.set()

    def half_done(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.all_acked.set()


# --- clients -------------------------------------------------------------------------------------


class View:
    """One client's in-order picture of one chat: a message is shown once every earlier one is;
    ones that arrive ahead of a gap wait for it (live pushes can overtake a resume's answer)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []
        self.ahead: dict[int, str] = {}
        self.inflight = 0  # resumes sent on this connection, not answered yet
        self.answered = 0  # resumes answered
        self.last_answer = -1  # lastSeq of the latest answer
        self.changed = trio.Event()

    @property
    def last(self) -> int:
        return len(self.seen)

    def offer(self, seq: int, message_id: str, stats: Stats) -> bool:
        """Show a message if it is next; True if it reveals a gap."""
        if seq <= self.last:
            stats.duplicates += 1
            return False
        if seq > self.last + 1:
            stats.gaps += seq not in self.ahead
            self.ahead[seq] = message_id
            return True
        self.seen.append((seq, message_id))
        while (following := self.ahead.pop(self.last + 1, None)) is not None:
            self.seen.append((self.last + 1, following))
        return False

    def answer(self, last_seq: int) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.answered += 1
        self.last_answer = last_seq
        self.changed.set()
        self.changed = trio.Event()

    @property
    def caught_up(self) -> bool:
        return not self.ahead and self.last >= self.last_answer


class Outgoing:
    """One sender's messages into one chat. Unacknowledged ones are resent, in order, with the
    same clientMsgId after a reconnect; at most `window` are unacknowledged at once."""

    def __init__(self, peer: Peer, chat: ChatPlan) -> None:
        self.peer = peer
        self.chat = chat
        self.unacked: dict[str, str] = {}  # clientMsgId -> content, in send order
        self.retry: list[str] = []  # refused for now: send again
        self.changed = trio.Event()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def next_message(self) -> str | None:
        raise NotImplementedError

    def finished(self) -> bool:
        raise NotImplementedError

    def on_ack(self, client_msg_id: str) -> None:
        raise NotImplementedError

    def refused(self, client_msg_id: str) -> None:
        self.retry.append(client_msg_id)
        self._wake()

    def ack(self, frame: Frame) -> bool:
        client_msg_id = frame["clientMsgId"]
        content = self.unacked.pop(client_msg_id, None)
        if content is None:
            return False
        self.peer.run.acked(
            AckRecord(frame["chatId"], client_msg_id, content, frame["seq"], frame["messageId"])
        )
        self.on_ack(client_msg_id)
        self._wake()
        return True

    async def pump(self, link: Link) -> None:
        chat_id = self.chat.chat_id
        assert chat_id is not None
        stats, window = self.peer.run.stats, self.peer.run.plan.window
        self.retry.clear()
        for client_msg_id, content in list(self.unacked.items()):
            stats.resends += 1
            await link.send_message(chat_id, client_msg_id, content)
        while not self.finished():
            if self.retry:
                await trio.sleep(WINDOW_RETRY_SECONDS)
                again, self.retry = self.retry, []
                for refused in again:
                    if (text := self.unacked.get(refused)) is not None:
                        stats.resends += 1
                        await link.send_message(chat_id, refused, text)
                continue
            fresh = self.next_message() if len(self.unacked) < window else None
            if fresh is None:
                changed = self.changed
                with trio.move_on_after(ACK_SECONDS) as waiting:
                    await changed.wait()
                if waiting.cancelled_caught and self.unacked:
                    stats.ack_stalls += 1
                    link.drop()
                    return
                continue
            content = f"chat{self.chat.index} {fresh}"
            self.unacked[fresh] = content
            await link.send_message(chat_id, fresh, content)


class CustomerHalf(Outgoing):
    def __init__(self, peer: Peer, chat: ChatPlan, total: int) -> None:
        super().__init__(peer, chat)
        self.total = total
        self.sent = 0
        self.acked_count = 0

    def next_message(self) -> str | None:
        if self.sent >= self.total:
            return None
        self.sent += 1
        return f"c{self.sent}"

    def finished(self) -> bool:
        return self.acked_count >= self.total

    def on_ack(self, client_msg_id: str) -> None:
        self.acked_count += 1
        if self.acked_count == self.total:
            self.peer.run.half_done()


class AgentHalf(Outgoing):
    def next_message(self) -> str | None:
        number = self.chat.take_agent_number()
        return None if number is None else f"a{self.chat.index}-{self.peer.name}-{number}"

    def finished(self) -> bool:
        return self.chat.agent_acked >= self.chat.agent_total

    def on_ack(self, client_msg_id: str) -> None:
        self.chat.agent_inflight -= 1
        self.count_ack()

    def count_ack(self) -> None:
        self.chat.agent_acked += 1
        if self.chat.agent_acked == self.chat.agent_total:
            self.peer.run.half_done()

    def abandon(self) -> None:
        """The agent lost the chat: what they have not had acknowledged is not theirs to send."""
        self.peer.run.stats.abandoned += len(self.unacked)
        self.chat.agent_inflight -= len(self.unacked)
        self.peer.abandoned.update(self.unacked)
        self.unacked.clear()
        self._wake()


class Link:
    """One live connection of a peer."""

    def __init__(self, peer: Peer, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        self.peer = peer
        self.ws = ws
        self.nursery = nursery

    def drop(self) -> None:
        self.nursery.cancel_scope.cancel()

    async def send(self, frame: Frame) -> None:
        try:
            await self.ws.send_message(json.dumps(frame))
        except ConnectionClosed:
            self.drop()
            await trio.lowlevel.checkpoint()

    async def send_message(self, chat_id: str, client_msg_id: str, content: str) -> None:
        frame = {
            "type": "message.send",
            "chatId": chat_id,
            "clientMsgId": client_msg_id,
            "content": content,
        }
        await self.send(frame)

    def resume(self, chat_id: str) -> None:
        """Ask for what this client has not shown of the chat (counted in flight at once, so
        a burst of gaps asks once)."""
        view = self.peer.view(chat_id)
        view.inflight += 1
        self.peer.run.stats.resumes += 1
        self.start(lambda: self.send({"type": "resume", "chatId": chat_id, "afterSeq": view.last}))

    def start(self, work: Callable[[], Awaitable[None]]) -> None:
        self.nursery.start_soon(work)


class Peer:
    """A websocket client that stays connected until the run stops, reconnecting as needed."""

    role: Role

    def __init__(self, run: Run, name: str, token: str) -> None:
        self.run = run
        self.name = name
        self.token = token
        self.views: dict[str, View] = {}
        self.link: Link | None = None
        self.connected = trio.Event()
        self.sessions = 0
        self.abandoned: dict[str, str] = {}
        self.turn = run.home()  # the node it connects to; the next one after a failure

    def view(self, chat_id: str) -> View:
        if chat_id not in self.views:
            self.views[chat_id] = View()
        return self.views[chat_id]

    async def live(self) -> None:
        failures = 0
        while not self.run.stopping:
            lasted = False
            try:
                async with open_websocket_url(
                    self.run.ws_url(self.turn),
                    extra_headers=[(b"Authorization", f"Bearer {self.token}".encode())],
                    message_queue_size=4096,
                    max_message_size=1024 * 1024,
                    connect_timeout=CONNECT_SECONDS,
                    disconnect_timeout=1.0,
                ) as ws:
                    lasted = await self._session(ws)
            except (HandshakeError, OSError):
                self.run.stats.failed_connects += 1
            self.turn += 1  # its node is down, or the connection ended: try the next
            if self.run.stopping:
                return
            failures = 0 if lasted else failures + 1
            if failures > RECONNECT_ATTEMPTS:
                raise ChaosError(f"{self.name} could not reconnect {RECONNECT_ATTEMPTS} times")
            await trio.sleep(_backoff(failures))

    async def _session(self, ws: WebSocketConnection) -> bool:
        """Serve one connection until it closes; True if it got as far as an answer."""
        answered = False
        async with trio.open_nursery() as nursery:
            link = Link(self, ws, nursery)
            self.run.stats.reconnects += self.sessions > 0
            self.sessions += 1
            for view in self.views.values():
                view.inflight = 0
            self.link = link
            self.connected.set()
            nursery.start_soon(self._greet, link)
            try:
                while True:
                    frame = json.loads(await ws.get_message())
                    answered = True
                    self._on_frame(link, frame)
            except ConnectionClosed as closed:
                if closed.reason is not None:
                    self.run.stats.closes[closed.reason.code] += 1
            finally:
                self.link = None
                self.connected = trio.Event()
                nursery.cancel_scope.cancel()
        return answered

    async def _greet(self, link: Link) -> None:
        raise NotImplementedError

    def _on_frame(self, link: Link, frame: Frame) -> None:
        stats = self.run.stats
        match frame.get("type"):
            case "message":
                view = self.view(frame["chatId"])
                if view.offer(frame["seq"], frame["message"]["id"], stats) and not view.inflight:
                    link.resume(frame["chatId"])
            case "resumed":
                self._resumed(link, frame)
            case "ack":
                self._ack(frame)
            case "error":
                stats.refusals[frame["code"]] += 1
                self._refused(link, frame)
            case _:
                self._event(link, frame)

    def _resumed(self, link: Link, frame: Frame) -> None:
        chat_id = frame["chatId"]
        view = self.view(chat_id)
        if not frame["recovered"]:
            view.inflight = max(0, view.inflight - 1)
            link.start(lambda: self._reload(link, chat_id))
            return
        view.answer(frame["lastSeq"])
        if view.ahead and not view.inflight:
            link.resume(chat_id)

    async def _reload(self, link: Link, chat_id: str) -> None:
        """Too much to resume: page through the chat over REST, then resume the rest."""
        self.run.stats.reloads += 1
        view = self.view(chat_id)
        path = f"/messages/{self.role.value}/{chat_id}"
        while True:
            page = await self.run.rest.ok(
                "GET", path, token=self.token, params={"cursor": view.last, "limit": 100}
            )
            for message in page:
                view.offer(message["seq"], message["id"], self.run.stats)
            if len(page) < 100:
                break
        link.resume(chat_id)

    def _ack(self, frame: Frame) -> None:
        raise NotImplementedError

    def _refused(self, link: Link, frame: Frame) -> None:
        raise NotImplementedError

    def _event(self, link: Link, frame: Frame) -> None:
        pass

    def settle_chats(self) -> list[str]:
        raise NotImplementedError

    async def settle(self) -> None:
        """Catch up on every chat with a resume sent now that nothing is being sent any more."""
        for _ in range(SETTLE_ATTEMPTS):
            with trio.move_on_after(SETTLE_SECONDS):
                await self.connected.wait()
            link = self.link
            if link is None:
                continue
            chats = await self._settle_chats_now()
            targets = {}
            for chat_id in chats:
                view = self.view(chat_id)
                targets[chat_id] = view.answered + view.inflight + 1
                link.resume(chat_id)
            with trio.move_on_after(SETTLE_SECONDS):
                for chat_id, target in targets.items():
                    view = self.view(chat_id)
                    while view.answered < target:
                        await view.changed.wait()
                if all(self.view(chat_id).caught_up for chat_id in chats):
                    return
        raise ChaosError(f"{self.name} could not catch up")

    async def _settle_chats_now(self) -> list[str]:
        return self.settle_chats()


class CustomerPeer(Peer):
    role = Role.CUSTOMER

    def __init__(self, run: Run, name: str, token: str, chat: ChatPlan) -> None:
        super().__init__(run, name, token)
        self.chat = chat
        self.half = CustomerHalf(self, chat, run.plan.customer_messages)

    async def _greet(self, link: Link) -> None:
        await link.send({"type": "chat.open", "title": f"chaos {self.chat.index}"})

    def _event(self, link: Link, frame: Frame) -> None:
        if frame["type"] != "chat.opened":
            return
        chat_id = frame["chat"]["id"]
        if self.chat.chat_id not in (None, chat_id):
            raise ChaosError(f"{self.name} was given a second chat: {chat_id}")
        self.run.chat_opened(self.chat, chat_id)
        link.resume(chat_id)
        link.start(lambda: self.half.pump(link))

    def _ack(self, frame: Frame) -> None:
        self.half.ack(frame)

    def _refused(self, link: Link, frame: Frame) -> None:
        if frame["code"] in _TRANSIENT and frame["ref"] in self.half.unacked:
            self.half.refused(frame["ref"])
        elif frame["code"] in _TRANSIENT and frame["ref"] == "chat.open":
            link.drop()  # try again on a fresh connection
        else:
            raise ChaosError(f"{self.name} refused: {frame}")

    def settle_chats(self) -> list[str]:
        return [self.chat.chat_id] if self.chat.chat_id else []


class AgentPeer(Peer):
    role = Role.AGENT

    def __init__(self, run: Run, name: str, token: str, user_id: str) -> None:
        super().__init__(run, name, token)
        self.user_id = user_id
        self.halves: dict[str, AgentHalf] = {}  # chat id -> this agent's sender in it
        self._pumps: dict[str, trio.CancelScope] = {}
        self.available = trio.Event()
        self.away_until_back: trio.Event | None = None

    async def _greet(self, link: Link) -> None:
        for scope in self._pumps.values():  # the last connection's, cancelled with it
            scope.cancel()
        self._pumps.clear()
        await link.send({"type": "status.set", "status": "available"})
        await self._resync(link)

    async def _open_chats(self) -> list[Frame]:
        """The agent's open chats, from the store (what was assigned while offline counts)."""
        found: list[Frame] = []
        params: dict[str, Any] = {"status": "open", "limit": 100}
        while True:
            response = await self.run.rest.call(
                "GET", "/chats/agent", token=self.token, params=params
            )
            if response.status_code != 200:
                raise ChaosError(f"GET /chats/agent: {response.status_code} {response.text}")
            found += response.json()
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                return found
            params["cursor"] = cursor

    def _own(self, link: Link, frame: Frame) -> None:
        chat_id = frame["id"]
        chat = self.run.chat_of(frame)
        if chat is None or chat_id in self._pumps:
            return
        self.run.assigned(chat)
        half = self.halves.setdefault(chat_id, AgentHalf(self, chat))
        scope = self._pumps[chat_id] = trio.CancelScope()

        async def pump() -> None:
            try:
                with scope:
                    await half.pump(link)
            finally:
                if self._pumps.get(chat_id) is scope:
                    del self._pumps[chat_id]

        link.resume(chat_id)
        link.start(pump)

    def _disown(self, chat_id: str) -> None:
        scope = self._pumps.pop(chat_id, None)
        if scope is not None:
            scope.cancel()
        half = self.halves.get(chat_id)
        if half is not None:
            half.abandon()

    def _event(self, link: Link, frame: Frame) -> None:
        match frame["type"]:
            case "chat.assigned":
                self._own(link, frame["chat"])
            case "chat.unassigned":
                self._disown(frame["chatId"])
            case "agent.status":
                if frame["status"] != AgentStatus.AWAY:
                    self.available.set()
                elif self.away_until_back is not None:
                    self.away_until_back.set()

    def _ack(self, frame: Frame) -> None:
        half = self.halves.get(frame["chatId"])
        if half is not None and half.ack(frame):
            return
        content = self.abandoned.pop(frame["clientMsgId"], None)
        if content is not None:  # acknowledged after all: durable, so it counts
            self.run.acked(
                AckRecord(
                    frame["chatId"],
                    frame["clientMsgId"],
                    content,
                    frame["seq"],
                    frame["messageId"],
                )
            )
            if half is not None:
                half.count_ack()

    def _refused(self, link: Link, frame: Frame) -> None:
        code, ref = frame["code"], frame["ref"]
        owner = next((h for h in self.halves.values() if ref in h.unacked), None)
        if owner is not None and code in _TRANSIENT:
            owner.refused(ref)
        elif owner is not None and code in _NOT_YOURS:
            assert owner.chat.chat_id is not None
            self._disown(owner.chat.chat_id)
        elif ref == "resume" and code in _NOT_YOURS:
            self._lost_resume(link)
        elif ref == "status.set" and code in _TRANSIENT:
            link.drop()
        elif owner is None and code in _NOT_YOURS | _TRANSIENT:
            pass  # about a message already given up
        else:
            raise ChaosError(f"{self.name} refused: {frame}")

    def _resumed(self, link: Link, frame: Frame) -> None:
        if not frame["recovered"] and frame["reason"] in _NOT_YOURS:
            self._lost_resume(link)  # taken away: REST would answer 404 too
        else:
            super()._resumed(link, frame)

    def _lost_resume(self, link: Link) -> None:
        """A resume found the chat no longer ours: forget the resumes in flight, ask the store
        what is ours."""
        for view in self.views.values():
            view.inflight = 0
        link.start(lambda: self._resync(link))

    async def _resync(self, link: Link) -> None:
        """Have exactly the chats the store says are ours: those taken away while we were not
        listening (the unassignment was pushed to a dead connection) are given up."""
        open_now = await self._open_chats()
        ids = {chat["id"] for chat in open_now}
        for chat_id in list(self.halves):
            if chat_id not in ids:
                self._disown(chat_id)
        for chat in open_now:
            self._own(link, chat)

    async def _settle_chats_now(self) -> list[str]:
        return [chat["id"] for chat in await self._open_chats()]

    def settle_chats(self) -> list[str]:
        return list(self._pumps)

    async def step_away(self, rng: random.Random) -> bool:
        """Go away (the chats go to others) and come back after a moment."""
        link = self.link
        if link is None:
            return False
        self.away_until_back = trio.Event()
        await link.send({"type": "status.set", "status": "away"})
        with trio.move_on_after(REST_SECONDS):
            await self.away_until_back.wait()
        self.away_until_back = None
        await trio.sleep(rng.uniform(0.0, 0.3))
        link = self.link
        if link is not None:
            await link.send({"type": "status.set", "status": "available"})
        return True


# --- the run -------------------------------------------------------------------------------------


async def run_chaos(
    plan: ChaosPlan, workdir: Path, *, say: Callable[[str], None] = print
) -> ChaosReport:
    """Drive `plan` against a server in `workdir`, check what it kept, and report."""
    store_url = plan.store or f"sqlite:///{workdir / 'chaos.db'}"
    servers = _servers(plan, store_url, workdir)
    say(f"chaos: seed {plan.seed}; server log {servers[0].log_path}")
    started = time.monotonic()
    run: Run | None = None
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
                run = Run(plan, servers, Rest(*clients))
                admin, agents, customers = await _set_up(run)
                supervisor = await _drive(run, nursery, admin, agents, customers)
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
    evidence = await _evidence(store_url, run, agents, customers, supervisor)
    acked = {(ack.chat_id, ack.client_msg_id) for ack in run.acks}
    stored = [m for messages in evidence.transcripts.values() for m in messages]
    report = ChaosReport(
        plan=plan,
        store_url=store_url,
        kills_survived=run.kills,
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


async def _set_up(run: Run) -> tuple[str, list[AgentPeer], list[CustomerPeer]]:
    """Agents through the admin API (each at the plan's max load), tokens for the customers."""
    plan, rest = run.plan, run.rest
    admin = (
        await rest.ok(
            "POST", "/admin/auth/login", body={"email": ADMIN_EMAIL, "password": DEMO_PASSWORD}
        )
    )["token"]
    count = plan.agent_count
    logins = [(email, DEMO_PASSWORD) for email in DEMO_AGENTS[:count]] + [
        (f"chaos-agent-{i}@switchboard.example", AGENT_PASSWORD)
        for i in range(count - len(DEMO_AGENTS))
    ]
    agents: list[AgentPeer] = []
    customers: list[CustomerPeer] = []

    async def agent(number: int, email: str, password: str) -> None:
        if password == AGENT_PASSWORD:
            await rest.ok(
                "POST",
                "/admin/users",
                token=admin,
                body={
                    "name": f"Chaos Agent {number}",
                    "email": email,
                    "password": password,
                    "confirmPassword": password,
                    "maxLoad": plan.max_load,
                },
            )
        signed_in = await rest.ok(
            "POST", "/auth/login", body={"email": email, "password": password}
        )
        user_id = signed_in["user"]["id"]
        if password == DEMO_PASSWORD:
            await rest.ok(
                "PUT",
                f"/admin/agents/{user_id}/max-load",
                token=admin,
                body={"maxLoad": plan.max_load},
            )
        agents.append(AgentPeer(run, f"agent{number}", signed_in["token"], user_id))

    async def customer(chat: ChatPlan) -> None:
        minted = await rest.ok(
            "POST", "/dev/customer-token", body={"customerId": f"chaos-{plan.seed}-{chat.index}"}
        )
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
    run: Run,
    server_nursery: trio.Nursery,
    admin: str,
    agents: list[AgentPeer],
    customers: list[CustomerPeer],
) -> SupervisorState:
    plan = run.plan
    rng = random.Random(plan.seed)
    total = plan.chats * plan.messages
    kill_at = _moments(rng, plan.kills, total)
    churn_at = _moments(rng, plan.churn, total) if plan.churn else []

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
            await run.all_acked.wait()
        async with trio.open_nursery() as settling:
            for anyone in [*agents, *customers]:
                settling.start_soon(anyone.settle)
        state = await _supervisor_state(run, admin)
        run.stopping = True
        for server in run.servers:
            await server.kill()
        clients.cancel_scope.cancel()
    return state


async def _churn_once(run: Run, rng: random.Random, admin: str, agents: list[AgentPeer]) -> None:
    op = rng.choice(["away", "reassign", "reassign", "max_load"])
    agent = rng.choice(agents)
    outcome = "done"
    try:
        match op:
            case "away":
                outcome = "done" if await agent.step_away(rng) else "offline"
            case "reassign":
                chats = [chat.chat_id for chat in run.chats if chat.chat_id is not None]
                response = await run.rest.call(
                    "POST",
                    f"/admin/chats/{rng.choice(chats)}/reassign",
                    token=admin,
                    body={"agentId": agent.user_id},
                    attempts=3,
                )
                outcome = str(response.status_code)
            case _:
                response = await run.rest.call(
                    "PUT",
                    f"/admin/agents/{agent.user_id}/max-load",
                    token=admin,
                    body={"maxLoad": rng.choice([run.plan.max_load - 1, run.plan.max_load])},
                    attempts=3,
                )
                outcome = str(response.status_code)
    except ChaosError:
        outcome = "server down"
    run.stats.churn_ops[f"{op} {outcome}"] += 1


async def _supervisor_state(run: Run, admin: str) -> SupervisorState:
    system = await run.rest.ok("GET", "/admin/system", token=admin)
    return SupervisorState(
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


# --- the evidence --------------------------------------------------------------------------------


async def _evidence(
    store_url: str,
    run: Run,
    agents: list[AgentPeer],
    customers: list[CustomerPeer],
    supervisor: SupervisorState,
) -> Evidence:
    """What the clients recorded, and what the store holds now the server is gone."""
    async with open_store(store_url) as store:
        chats: list[Chat] = []
        transcripts: dict[str, list[Message]] = {}
        for plan in run.chats:
            if plan.chat_id is None:
                raise ChaosError(f"chat {plan.index} was never opened")
            chat = await store.get_chat(plan.chat_id)
            if chat is None:
                raise ChaosError(f"chat {plan.chat_id} is not stored")
            chats.append(chat)
            messages: list[Message] = []
            transcripts[chat.id] = messages
            while batch := await store.list_messages(chat.id, after_seq=_last(messages), limit=500):
                messages += batch
        activity: list[Activity] = [
            entry
            async for entries in pages(
                lambda c: store.list_activity(ActivityFilter(), limit=500, cursor=c)
            )
            for entry in entries
        ]
        stored_agents: list[User] = [
            user
            async for users in pages(
                lambda c: store.list_users(role=Role.AGENT, limit=500, cursor=c)
            )
            for user in users
        ]
    owner = {chat.id: chat.agent_id for chat in chats}
    views = [
        ClientView(customer.name, chat_id, tuple(view.seen), complete=True)
        for customer in customers
        for chat_id, view in customer.views.items()
    ] + [
        ClientView(
            agent.name, chat_id, tuple(view.seen), complete=owner.get(chat_id) == agent.user_id
        )
        for agent in agents
        for chat_id, view in agent.views.items()
    ]
    return Evidence(
        acks=run.acks,
        transcripts=transcripts,
        views=views,
        activity=activity,
        agents=stored_agents,
        chats=chats,
        supervisor=supervisor,
    )


def _last(messages: list[Message]) -> int:
    return messages[-1].seq if messages else 0


# --- the command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description="Kill a Switchboard server under websocket traffic, restart it, check what "
        "it kept.",
    )
    defaults = ChaosPlan()
    parser.add_argument("--chats", type=int, default=defaults.chats)
    parser.add_argument("--messages", type=int, default=defaults.messages, help="per chat")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument(
        "--churn", type=int, default=defaults.churn, help="agents away and back, reassigns"
    )
    parser.add_argument("--agents", type=int, default=0, help="default: one per 5 chats")
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--grace", type=float, default=defaults.grace_seconds)
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--store", help="store URL (default: SQLite in the work directory)")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="the store is a standalone MongoDB (no transactions): kill only once every chat "
        "is assigned, and use no churn",
    )
    parser.add_argument(
        "--nodes", type=int, default=1, help="cluster mode: this many nodes (needs --bus)"
    )
    parser.add_argument("--bus", help="cluster mode: the Valkey/Redis URL (redis://host:6379/0)")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--time-limit", type=float, default=defaults.time_limit)
    args = parser.parse_args(argv)
    if args.standalone and args.churn:
        parser.error("--standalone runs without churn: its decisions could be cut in half")
    plan = ChaosPlan(
        chats=args.chats,
        messages=args.messages,
        kills=args.kills,
        seed=args.seed if args.seed is not None else random.randrange(2**31),
        churn=args.churn,
        agents=args.agents,
        window=args.window,
        grace_seconds=args.grace,
        store=args.store,
        atomic_routing=not args.standalone,
        time_limit=args.time_limit,
        nodes=args.nodes,
        bus=args.bus,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="switchboard-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = trio.run(run_chaos, plan, workdir)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
