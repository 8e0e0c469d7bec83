"""The run's shared state: each chat's plan, the acknowledgements, and the servers."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from tools._remote import Server
from tools.chaos._plan import _TITLE, ChaosPlan, Frame, Stats
from tools.chaos._server import ServerProcess
from tools.chaos_check import (
    AckRecord,
)

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


class ChaosRun:
    """What every client shares: the plan, the progress towards the kills, the evidence."""

    def __init__(self, plan: ChaosPlan, servers: list[ServerProcess], rest: Server) -> None:
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
        self.writer_kills = 0
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
