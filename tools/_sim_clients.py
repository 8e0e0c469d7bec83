"""The simulated customers and agents.

Customers open a chat, talk while it has an agent, and open the next one after it is resolved.
Agents take what they are assigned, answer, resolve each chat after a handling time over REST,
go away and come back, and drop their connection now and then; after a reconnect they ask the
server which chats they hold (events sent to the old connection may have been lost with it).
"""

from __future__ import annotations

import httpx
import trio

from tools._sim_participant import Frame, Participant, Run, first_of


class Customer(Participant):
    role = "customer"

    def __init__(self, run: Run, who: str, token: str) -> None:
        super().__init__(run, who, token)
        self.chat_id: str | None = None
        self._requested_at = 0.0
        self._done = trio.Event()
        self._talk: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    async def life(self) -> None:
        """Arrive, then open chats one after another while the load lasts."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.live)
            await self.connected.wait()
            await self._chats()
            self.run.customer_finished()
            await trio.sleep_forever()  # stay connected, as a customer with the page open

    async def _chats(self) -> None:
        run = self.run
        left = run.scenario.chats_per_customer
        while (left is None or left > 0) and not run.stopped:
            self.chat_id, self._done = None, trio.Event()
            self._requested_at = trio.current_time()
            run.ledger.counts["chats_requested"] += 1
            await self.send_when_up({"type": "chat.open", "title": f"loadsim {self.who}"})
            await first_of(self._done.wait, run.stopping.wait)
            self._quiet()
            if left is not None:
                left -= 1
            await run.idle(run.scenario.pause)

    async def on_connected(self, first: bool) -> None:
        if not first and self.chat_id is not None:
            await self.resume(self.chat_id)
        await super().on_connected(first)

    def on_event(self, frame: Frame, now: float) -> None:
        ledger = self.run.ledger
        match frame["type"]:
            case "chat.opened" | "chat.assigned":
                chat = frame["chat"]
                if not self._know(chat["id"], now, queued=chat["agent"] is None):
                    return
                if chat["agent"] is not None:
                    ledger.customer_assigned(chat["id"], chat["agent"]["_id"], now)
                    self._chat_with_agent()
            case "chat.status" if frame["chatId"] == self.chat_id:
                match frame["status"]:
                    case "open" if frame["agentId"]:
                        ledger.customer_assigned(frame["chatId"], frame["agentId"], now)
                        self._chat_with_agent()
                    case "new" | "pending":
                        ledger.customer_lost_agent(frame["chatId"], now)
                        self._quiet()
                    case "resolved":
                        ledger.chat_resolved(frame["chatId"], now)
                        self._quiet()
                        self._done.set()

    def _know(self, chat_id: str, now: float, *, queued: bool) -> bool:
        """Whether the frame is about this customer's current chat (learning of it if new:
        chat.assigned can come before the chat.opened answer)."""
        if self.chat_id is None and not self._done.is_set():
            self.chat_id = chat_id
            self.run.ledger.chat_opened(self.who, chat_id, self._requested_at, now, queued=queued)
        return chat_id == self.chat_id

    def _chat_with_agent(self) -> None:
        if self._talk is not None or self._nursery is None or self.chat_id is None:
            return
        scope = self._talk = trio.CancelScope()
        chat_id = self.chat_id

        async def talk() -> None:
            with scope:
                await self.chatter(chat_id)

        self._nursery.start_soon(talk)

    def _quiet(self) -> None:
        if self._talk is not None:
            self._talk.cancel()
            self._talk = None


class Agent(Participant):
    role = "agent"

    def __init__(self, run: Run, agent_id: str, token: str) -> None:
        super().__init__(run, agent_id, token)
        self._work: dict[str, trio.CancelScope] = {}
        self._away = False
        self._syncing: list[tuple[bool, str]] | None = None
        self._nursery: trio.Nursery | None = None
        self._auth = {"Authorization": f"Bearer {token}"}

    async def life(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.live)
            await self.connected.wait()
            await self._flap()

    async def on_connected(self, first: bool) -> None:
        if not first:
            await self._resync()
        if not self._away:
            # Also after a reconnect: a grace period that ran out has made the agent away.
            await self.send({"type": "status.set", "status": "available"})
        await super().on_connected(first)

    # --- what the agent holds ------------------------------------------------------------------

    def on_event(self, frame: Frame, now: float) -> None:
        match frame["type"]:
            case "chat.assigned":
                self._change(True, frame["chat"]["id"], now)
            case "chat.unassigned":
                self._change(False, frame["chatId"], now)
            case "chat.status" if frame["status"] in ("resolved", "pending", "new"):
                self._change(False, frame["chatId"], now)

    def _change(self, took: bool, chat_id: str, now: float) -> None:
        if self._syncing is not None:
            self._syncing.append((took, chat_id))
            return
        ledger = self.run.ledger
        if took:
            ledger.agent_took(self.who, chat_id, now)
            self._start(chat_id)
        else:
            ledger.agent_released(self.who, chat_id, now)
            self._stop(chat_id)

    async def _resync(self) -> None:
        """The chats held now: the server's list, then the events that came while asking. Every
        chat held before or after the drop is resumed: what was missed meanwhile is fetched
        even for a chat that has since been resolved (its last agent may still read it)."""
        before = set(self.run.ledger.holding[self.who])
        self._syncing = []
        try:
            response = await self.run.http.get(
                "/chats/agent", params={"status": "open", "limit": 100}, headers=self._auth
            )
            response.raise_for_status()
            held = {chat["id"] for chat in response.json()}
        except httpx.HTTPError as error:
            self.run.ledger.error(f"agent resync failed: {type(error).__name__}")
            held = set(self.run.ledger.holding[self.who])
        events, self._syncing = self._syncing, None
        for took, chat_id in events:
            (held.add if took else held.discard)(chat_id)
        self.run.ledger.agent_resynced(self.who, held, trio.current_time())
        for chat_id in set(self._work) - held:
            self._stop(chat_id)
        for chat_id in before | held:
            if chat_id not in held or not self._start(chat_id):
                await self.resume(chat_id)

    def _start(self, chat_id: str) -> bool:
        """Start working on the chat; False if already working on it."""
        if chat_id in self._work or self._nursery is None:
            return False
        scope = self._work[chat_id] = trio.CancelScope()
        self._nursery.start_soon(self._handle, chat_id, scope)
        return True

    def _stop(self, chat_id: str) -> None:
        scope = self._work.pop(chat_id, None)
        if scope is not None:
            scope.cancel()

    async def _handle(self, chat_id: str, scope: trio.CancelScope) -> None:
        """Read the chat so far, answer for the handling time, then resolve it."""
        run = self.run
        with scope:
            await self.resume(chat_id)
            handling = run.rng.expovariate(1 / run.scenario.handling)
            with trio.move_on_after(handling):
                if run.scenario.agent_replies:
                    await self.chatter(chat_id)
                else:
                    await run.stopping.wait()
            if run.stopped:
                return
            run.ledger.resolve_asked(self.who, trio.current_time())
            try:
                response = await run.http.put(
                    f"/chats/agent/{chat_id}/resolved", headers=self._auth
                )
            except httpx.HTTPError as error:
                run.ledger.error(f"resolve failed: {type(error).__name__}")
                return
            if response.status_code == 404:
                run.ledger.error("resolve after the chat moved on (404)")
            elif response.is_error:
                run.ledger.error(f"resolve refused: {response.status_code}")

    # --- flapping ------------------------------------------------------------------------------

    async def _flap(self) -> None:
        """Go away and come back, or drop the connection, at the scenario's rates."""
        scenario, rng, ledger = self.run.scenario, self.run.rng, self.run.ledger
        per_minute = scenario.away_rate + scenario.drop_rate
        if per_minute <= 0:
            return
        while True:
            await self.run.idle(rng.expovariate(per_minute / 60))
            if self.run.stopped:
                return
            if rng.random() < scenario.away_rate / per_minute:
                ledger.counts["aways"] += 1
                self._away = True
                await self.send({"type": "status.set", "status": "away"})
                await trio.sleep(scenario.away_seconds)
                self._away = False
                await self.send_when_up({"type": "status.set", "status": "available"})
            else:
                await self.drop()
