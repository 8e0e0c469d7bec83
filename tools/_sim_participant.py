"""One simulated participant's websocket, speaking the /ws protocol, and what all of them share.

A participant keeps one connection up: it reconnects after a drop, resumes every chat it is in
from the last seq it holds without a gap (and any chat where a live message shows a gap below
it), resends what was not acknowledged under the same client message id, and hands every frame
to the ledger. Messages carry their client message id as the first word, so whoever receives
one can tell which send it was.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
)
from wsproto.utilities import LocalProtocolError

from tools._sim_ledger import Ledger
from tools._sim_scenario import Scenario
from tools._ws_client import Attempt, Redial, message_send, stay_connected

CONNECT_SECONDS = 15.0
CONNECTS_AT_ONCE = 64
RECONNECT_ATTEMPTS = 5
MESSAGE_QUEUE = 256
# A sender this far behind its schedule (paused while disconnected or waiting) starts afresh.
SCHEDULE_RESET_SECONDS = 1.0
CLOSE_UNAUTHORIZED = 4401
Frame = dict[str, Any]

_connection_ids = itertools.count(1)


class Run:
    """What every participant of one simulation shares."""

    def __init__(
        self,
        scenario: Scenario,
        ws_urls: Sequence[str],
        http: httpx.AsyncClient,
        ledger: Ledger,
    ) -> None:
        assert ws_urls
        self.scenario = scenario
        # Several: the nodes of one cluster, each participant on one, in turn.
        self.ws_urls = tuple(ws_urls)
        self._placed = itertools.count()
        self.http = http
        self.ledger = ledger
        self.rng = random.Random(scenario.seed)
        self.stopping = trio.Event()
        self.acked_all = trio.Event()
        self.connects = trio.CapacityLimiter(CONNECTS_AT_ONCE)
        self._budget = scenario.max_messages
        self._customers_left = scenario.customers
        self.padding = "x" * max(scenario.message_bytes - 24, 0)

    @property
    def stopped(self) -> bool:
        return self.stopping.is_set()

    def stop(self) -> None:
        self.stopping.set()
        self.check_acked()

    def take_message(self) -> bool:
        """One more message may be sent; the last one stops the load."""
        if self.stopped or self._budget <= 0:
            return False
        self._budget -= 1
        if self._budget == 0:
            self.stop()
        return True

    def customer_finished(self) -> None:
        """A customer had all their chats; when the last one has, a run of a fixed number of
        chats is over (customers who open none are only there to be connected)."""
        self._customers_left -= 1
        if self._customers_left == 0 and self.scenario.chats_per_customer:
            self.stop()

    def check_acked(self) -> None:
        if self.stopped and self.ledger.outstanding == 0:
            self.acked_all.set()

    async def idle(self, seconds: float) -> None:
        """Wait that long, or until the load stops."""
        with trio.move_on_after(seconds):
            await self.stopping.wait()

    def think(self) -> float:
        return self.rng.expovariate(1 / self.scenario.think)

    def place(self) -> str:
        """The websocket URL of the next participant: the nodes in turn."""
        return self.ws_urls[next(self._placed) % len(self.ws_urls)]


async def first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of the waits returns."""
    async with trio.open_nursery() as nursery:

        async def then_stop(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(then_stop, wait)


class Participant:
    """One simulated user's connection: frames in to the ledger, frames out on demand."""

    role: ClassVar[str]

    def __init__(self, run: Run, who: str, token: str) -> None:
        self.run = run
        self.who = who
        self.token = token
        self.ws_url = run.place()
        self.connected = trio.Event()
        """Set once the first connection is up."""
        self.gave_up = False
        self._up = trio.Event()
        self._conn: WebSocketConnection | None = None
        self._connection = 0
        self._resumes: list[str] = []
        """Chats with a resume in flight on this connection, oldest first: their messages may
        repeat what arrived live, and answers come back in this order."""
        self._unacked: dict[str, tuple[str, str]] = {}
        self._sent = 0
        self._pong = trio.Event()
        self._caught_up = trio.Event()
        """Set once this connection has resumed and resent what the last one left behind."""
        self._tasks: trio.Nursery | None = None
        """The current connection's own tasks."""
        self._dropping = False
        self._redial = Redial(
            message_queue_size=MESSAGE_QUEUE,
            connect_seconds=CONNECT_SECONDS,
            disconnect_seconds=CONNECT_SECONDS,
            attempts=RECONNECT_ATTEMPTS,
            handshakes=run.connects,
        )

    # --- the connection ------------------------------------------------------------------------

    async def live(self) -> None:
        """Stay connected until cancelled; reconnect after a drop and catch up."""
        await stay_connected(self, self._redial)

    # --- what the reconnect loop asks (tools/_ws_client.stay_connected) ------------------------

    @property
    def stopping(self) -> bool:
        return False  # connected until cancelled: the load stopping still wants the acks

    def url(self) -> str:
        return self.ws_url

    async def session(self, ws: WebSocketConnection) -> Attempt:
        async with trio.open_nursery() as nursery:
            code = await self._session(ws, nursery)
            nursery.cancel_scope.cancel()
        # The token no longer works: nothing to reconnect with.
        return Attempt.STOP if code == CLOSE_UNAUTHORIZED else Attempt.LASTED

    def refused(self, error: HandshakeError | OSError) -> None:
        self.run.ledger.error(f"connect failed: {type(error).__name__}")

    def crossed(self, error: LocalProtocolError) -> Attempt:
        # The connection is gone either way.
        self.run.ledger.error("trio-websocket: a ping crossed our close")
        return Attempt.NEITHER

    def backoff(self, failures: int) -> float:
        if self.connected.is_set() or failures:
            return self.run.scenario.reconnect_delay * (1 + failures)
        return 0.0

    def give_up(self) -> None:
        self.gave_up = True
        self.run.ledger.error(f"{self.role} gave up reconnecting")

    async def _session(self, conn: WebSocketConnection, nursery: trio.Nursery) -> int | None:
        """Read frames until the connection closes; its close code."""
        first = not self.connected.is_set()
        self._conn, self._connection, self._dropping = conn, next(_connection_ids), False
        self._resumes = []
        self._caught_up = trio.Event()
        self.connected.set()
        self._up.set()
        if not first:
            self.run.ledger.counts["reconnects"] += 1
        self._tasks = nursery
        nursery.start_soon(self._catch_up, first)
        try:
            while True:
                self._dispatch(json.loads(await conn.get_message()))
        except ConnectionClosed as closed:
            code = closed.reason.code if closed.reason is not None else None
        finally:
            self._conn = None
            self._up = trio.Event()
        if not self._dropping:
            self.run.ledger.error(f"{self.role} connection closed by the server: {code}")
        return code

    async def drop(self) -> None:
        """Close the connection as a flaky network would end it; `live` reconnects."""
        conn = self._conn
        if conn is not None:
            self._dropping = True
            self.run.ledger.counts["drops"] += 1
            await conn.aclose(code=1001, reason="loadsim: dropped on purpose")

    async def send(self, frame: Frame) -> bool:
        """False when not connected: the caller decides whether that matters.

        Shielded: a frame is sent whole or not at all, even when the task sending it is being
        cancelled (a message recorded as sent must really leave, or the ledger waits for an
        answer that never comes). Bounded by the handshake limit, for a peer that stops reading.
        """
        conn = self._conn
        if conn is None:
            return False
        with trio.move_on_after(CONNECT_SECONDS, shield=True) as bound:
            try:
                await conn.send_message(json.dumps(frame))
            except ConnectionClosed:
                return False
        return not bound.cancelled_caught

    async def send_when_up(self, frame: Frame) -> None:
        while not await self.send(frame):
            await self._up.wait()

    async def round_trip(self) -> None:
        """Until a pong on a caught-up connection: every frame the server queued for us before
        it, resumes included, has been read."""
        while True:
            await self._up.wait()
            await self._caught_up.wait()
            self._pong = trio.Event()
            if await self.send({"type": "ping"}):
                await self._pong.wait()
                if not self._resumes:  # else a repair began meanwhile: wait for it too
                    return

    async def _catch_up(self, first: bool) -> None:
        caught_up = self._caught_up
        await self.on_connected(first)
        caught_up.set()

    async def on_connected(self, first: bool) -> None:
        """Catch up after a reconnect; subclasses add what they hold."""
        for client_msg_id, (chat_id, content) in list(self._unacked.items()):
            await self._send_message(chat_id, client_msg_id, content)

    # --- messages ------------------------------------------------------------------------------

    async def resume(self, chat_id: str) -> None:
        """Ask for what we miss of the chat after the last seq we hold without a gap."""
        pending = self._resumes
        pending.append(chat_id)
        await self._send_resume(chat_id, pending)

    async def _send_resume(self, chat_id: str, pending: list[str]) -> None:
        after = self.run.ledger.views[(self.who, chat_id)].contiguous
        if not await self.send({"type": "resume", "chatId": chat_id, "afterSeq": after}):
            pending.remove(chat_id)

    def _repair(self, chat_id: str, seq: int) -> None:
        """A live message above a gap (events lost with an old connection can hide that we
        were given the chat): resume it, as a client that numbers messages would."""
        if chat_id in self._resumes or self._tasks is None:
            return
        if self.run.ledger.views[(self.who, chat_id)].contiguous >= seq - 1:
            return
        self.run.ledger.counts["gaps repaired"] += 1
        self._resumes.append(chat_id)
        self._tasks.start_soon(self._send_resume, chat_id, self._resumes)

    async def chatter(self, chat_id: str) -> None:
        """Send in the chat on a Poisson schedule until cancelled or the load stops."""
        run = self.run
        next_at = trio.current_time() + run.think()
        while not run.stopped:
            await trio.sleep_until(next_at)
            now = trio.current_time()
            if self._conn is not None and run.take_message():
                await self._say(chat_id, lag=now - next_at)
            next_at = max(next_at, now - SCHEDULE_RESET_SECONDS) + run.think()

    async def _say(self, chat_id: str, lag: float) -> None:
        self._sent += 1
        client_msg_id = f"{self.who}.{self._sent}"
        content = f"{client_msg_id} {self.run.padding}".rstrip()
        self._unacked[client_msg_id] = (chat_id, content)
        self.run.ledger.sent(client_msg_id, chat_id, self.role, trio.current_time(), lag)
        # Not sent (the connection just went)? It is resent, same id, once reconnected.
        await self._send_message(chat_id, client_msg_id, content)

    async def _send_message(self, chat_id: str, client_msg_id: str, content: str) -> None:
        await self.send(message_send(chat_id, client_msg_id, content))

    # --- frames --------------------------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        now = trio.current_time()
        ledger = self.run.ledger
        ledger.frames[frame["type"]] += 1
        match frame["type"]:
            case "ack":
                self._unacked.pop(frame["clientMsgId"], None)
                ledger.acked(frame["clientMsgId"], frame["chatId"], frame["seq"], now)
                self.run.check_acked()
            case "message":
                chat_id, seq = frame["chatId"], frame["seq"]
                replay = chat_id in self._resumes
                ledger.received(
                    self.who,
                    self._connection,
                    chat_id,
                    seq,
                    frame["message"]["content"].split(" ", 1)[0],
                    now,
                    replay=replay,
                    by_agent=self.role == "agent",
                )
                if not replay:
                    self._repair(chat_id, seq)
            case "resumed":
                chat_id = frame["chatId"]
                if chat_id in self._resumes:
                    self._resumes.remove(chat_id)
                if not frame["recovered"]:
                    ledger.incomplete(self.who, chat_id, f"resume not recovered: {frame['reason']}")
            case "error":
                ref = frame.get("ref")
                if ref == "resume" and self._resumes:
                    # Refused (the chat went to another agent meanwhile): nothing more comes.
                    chat_id = self._resumes.pop(0)
                    ledger.incomplete(self.who, chat_id, f"resume refused: {frame['code']}")
                elif ref in self._unacked:
                    del self._unacked[ref]
                    ledger.refused(ref, frame["code"])
                    self.run.check_acked()
                else:
                    ledger.error(f"error frame: {frame['code']}")
            case "pong":
                self._pong.set()
            case _:
                self.on_event(frame, now)

    def on_event(self, frame: Frame, now: float) -> None:
        """A pushed event (chat.assigned, chat.status, ...); subclasses react to theirs."""
