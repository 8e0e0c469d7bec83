"""The websocket clients: each reconnects, resends what was not acknowledged, resumes each chat
from what it showed, and records what it showed.
"""

from __future__ import annotations

import json
import random
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
)
from wsproto.utilities import LocalProtocolError

from store import (
    AgentStatus,
    Role,
)
from tools._ws_client import Attempt, Redial, stay_connected
from tools.chaos._plan import (
    _NOT_YOURS,
    _TRANSIENT,
    CONNECT_SECONDS,
    RECONNECT_ATTEMPTS,
    REST_SECONDS,
    RIDE_OUT,
    SETTLE_ATTEMPTS,
    SETTLE_SECONDS,
    ChaosError,
    Frame,
)
from tools.chaos._run import ChaosRun, ChatPlan
from tools.chaos._sending import AgentHalf, CustomerHalf, Link, ShownChat
from tools.chaos_check import (
    AckRecord,
)

REDIAL = Redial(
    message_queue_size=4096,
    connect_seconds=CONNECT_SECONDS,
    disconnect_seconds=1.0,
    attempts=RECONNECT_ATTEMPTS,
)


class ReconnectingClient:
    """A websocket client that stays connected until the run stops, reconnecting as needed."""

    role: Role

    def __init__(self, run: ChaosRun, name: str, token: str) -> None:
        self.run = run
        self.name = name
        self.token = token
        self.views: dict[str, ShownChat] = {}
        self.link: Link | None = None
        self.connected = trio.Event()
        self.sessions = 0
        self.abandoned: dict[str, str] = {}
        self.turn = run.home()  # the node it connects to; the next one after a failure

    def view(self, chat_id: str) -> ShownChat:
        if chat_id not in self.views:
            self.views[chat_id] = ShownChat()
        return self.views[chat_id]

    async def live(self) -> None:
        await stay_connected(self, REDIAL)

    # --- what the reconnect loop asks (tools/_ws_client.stay_connected) ----------------------

    @property
    def stopping(self) -> bool:
        return self.run.stopping

    def url(self) -> str:
        url = self.run.ws_url(self.turn)
        self.turn += 1  # its node is down, or the connection ended: next time, try the next
        return url

    async def session(self, ws: WebSocketConnection) -> Attempt:
        # A connection that never got an answer counts as a failure, like no connection.
        return Attempt.LASTED if await self._session(ws) else Attempt.FAILED

    def refused(self, error: HandshakeError | OSError) -> None:
        self.run.stats.failed_connects += 1

    def crossed(self, error: LocalProtocolError) -> Attempt:
        raise error

    def backoff(self, failures: int) -> float:
        return RIDE_OUT.backoff(failures)

    def give_up(self) -> None:
        raise ChaosError(f"{self.name} could not reconnect {RECONNECT_ATTEMPTS} times")

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
            params = {"cursor": view.last, "limit": 100}
            page = (await self.run.rest.call("GET", path, token=self.token, params=params)).json()
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


class CustomerPeer(ReconnectingClient):
    role = Role.CUSTOMER

    def __init__(self, run: ChaosRun, name: str, token: str, chat: ChatPlan) -> None:
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


class AgentPeer(ReconnectingClient):
    role = Role.AGENT

    def __init__(self, run: ChaosRun, name: str, token: str, user_id: str) -> None:
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
            response = await self.run.rest.send(
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
