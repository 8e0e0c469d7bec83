"""The floor feed: what admins watching the floor see change, live.

A `FloorActor` keeps the floor as last published (every agent with their presence, load and
chats; the head of the queue) and the admin sessions watching it. The assignment actor, after each
message it handles, calls `FloorSignal.changed()`: a flag test while nobody watches, else one
`tell_nowait` per refresh period. The actor then asks the assignment actor for a snapshot, compares
it with what it published, and pushes only the difference (`FloorUpdate`, `full=False`) to every
watcher; a new watcher first gets the whole floor (`full=True`). Updates are coalesced to one per
`REFRESH_SECONDS`, so a busy floor costs one snapshot per period however many watch. The queue's
order also changes with time alone (the starvation guard promotes waiting chats), so while a
queue is watched a timer refreshes at the next promotion.

Ages (idle, waiting) are sent as of the update; pages count on from there, so they tick without
traffic and without trusting the client's clock.

Names and titles are read from the store once per agent and chat and kept while they are on
the floor (a chat's title never changes; an agent renamed shows the new name to the next
watcher).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias, assert_never

import trio

from actors.assignment import AgentView, CoreSnapshot, QueueEntry
from actors.events import FloorAgent, FloorChat, FloorQueueEntry, FloorUpdate
from actors.messages import AssignmentMessage, GetSnapshot
from actors.presence import Presence
from router import Actor, ActorDead, ActorRef, MailboxFull, Refused, Reply, RouterError, Timer
from store import Priority, Store, StoreUnavailable

log = logging.getLogger("actors")

# Watchers hear of changes at most this often.
REFRESH_SECONDS = 0.25
# The queue's first entries in each update; its length is always given.
QUEUE_HEAD = 100
# A refresh that could not reach the assignment actor or the store is tried again after this.
RETRY_SECONDS = 1.0
# Bound on each ask to the assignment actor.
ASK_SECONDS = 10.0

# --- the actor's messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchFloor:
    """Send the session the whole floor, then every change until it unwatches or goes."""

    user_id: str
    session_id: str
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class UnwatchFloor:
    session_id: str
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class FloorChanged:
    """From the signal: refresh within REFRESH_SECONDS."""


@dataclass(frozen=True, slots=True)
class RefreshFloor:
    """A timer: compare and push now."""


FloorMessage: TypeAlias = WatchFloor | UnwatchFloor | FloorChanged | RefreshFloor


class FloorSignal:
    """The assignment actor's side of the feed: `changed()` after anything that may change the
    floor.

    Costs a flag test while nobody watches, and one `tell_nowait` per refresh period otherwise.
    """

    def __init__(self) -> None:
        self._ref: ActorRef[FloorMessage] | None = None
        self.watched = False
        self.due = False

    def bind(self, ref: ActorRef[FloorMessage]) -> None:
        self._ref = ref

    def changed(self) -> None:
        if not self.watched or self.due or self._ref is None:
            return
        try:
            self._ref.tell_nowait(FloorChanged())
        except (MailboxFull, ActorDead):
            return  # a full mailbox holds a refresh already; a dead feed has no watchers
        self.due = True


# --- the actor -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Floor:
    """What was published, with the clock it was taken at (for ages)."""

    agents: dict[str, tuple[AgentView, str, str]]  # agent id -> (view, name, email)
    queue: tuple[QueueEntry, ...]  # the head
    queue_length: int
    now: float


_EMPTY = _Floor({}, (), 0, 0.0)


class FloorActor(Actor[FloorMessage]):
    def __init__(
        self,
        store: Store,
        presence: Presence,
        assignment_actor: ActorRef[AssignmentMessage],
        signal: FloorSignal,
        *,
        starvation_after_seconds: float,
    ) -> None:
        self._store = store
        self._presence = presence
        self._assignment_actor = assignment_actor
        self._signal = signal
        self._starvation_after = starvation_after_seconds
        self._watchers: dict[str, str] = {}  # session id -> user id
        self._published = _EMPTY
        self._names: dict[str, tuple[str, str]] = {}
        self._chats: dict[str, FloorChat] = {}
        self._refresh: Timer | None = None
        self._promotion: Timer | None = None

    async def on_start(self) -> None:
        # A restart forgets the watchers; their pages see no more updates until they watch
        # again, which they do on reconnecting. Nothing to reload: the floor is the assignment
        # actor's.
        self._signal.watched = False
        self._signal.due = False

    async def on_stop(self) -> None:
        self._signal.watched = False

    async def handle(self, message: FloorMessage) -> None:
        match message:
            case WatchFloor(user_id, session_id, reply):
                try:
                    floor = await self._refresh_now()
                except (RouterError, StoreUnavailable, trio.TooSlowError) as error:
                    raise Refused("unavailable", f"the floor cannot be read now: {error}") from None
                self._watchers[session_id] = user_id
                self._signal.watched = True
                self._offer(session_id, user_id, self._update(floor, _EMPTY, full=True))
                self._schedule_promotion(floor)
                reply.send(None)
            case UnwatchFloor(session_id, reply):
                self._watchers.pop(session_id, None)
                self._signal.watched = bool(self._watchers)
                reply.send(None)
            case FloorChanged():
                if self._refresh is None:
                    self._refresh = self.context.send_after(REFRESH_SECONDS, RefreshFloor())
            case RefreshFloor():
                self._refresh = None
                try:
                    floor = await self._refresh_now()
                except (RouterError, StoreUnavailable, trio.TooSlowError) as error:
                    log.info("floor refresh postponed: %s", error)
                    self._refresh = self.context.send_after(RETRY_SECONDS, RefreshFloor())
                    return
                self._schedule_promotion(floor)
            case _ as unreachable:
                assert_never(unreachable)

    async def _refresh_now(self) -> _Floor:
        """Take the floor now, push its difference to the watchers, and publish it."""
        self._signal.due = False
        with trio.fail_after(ASK_SECONDS):
            snapshot: CoreSnapshot = await self._assignment_actor.ask(GetSnapshot)
        now = trio.current_time()
        floor = await self._floor(snapshot, now)
        if self._watchers:
            update = self._update(floor, self._published, full=False)
            if update.agents or update.removed or update.queue is not None:
                for session_id, user_id in tuple(self._watchers.items()):
                    self._offer(session_id, user_id, update)
        self._published = floor
        self._signal.watched = bool(self._watchers)
        return floor

    async def _floor(self, snapshot: CoreSnapshot, now: float) -> _Floor:
        agents: dict[str, tuple[AgentView, str, str]] = {}
        for view in snapshot.agents:
            name, email = await self._name(view.agent_id)
            agents[view.agent_id] = (view, name, email)
        head = snapshot.queue[:QUEUE_HEAD]
        on_floor = {entry.chat_id for entry in head}
        on_floor.update(chat_id for view in snapshot.agents for chat_id in view.chat_ids)
        for chat_id in on_floor - self._chats.keys():
            self._chats[chat_id] = await self._chat(chat_id)
        # Keep only what is on the floor now: both caches stay as small as the floor.
        self._chats = {chat_id: self._chats[chat_id] for chat_id in on_floor}
        self._names = {agent_id: self._names[agent_id] for agent_id in agents}
        return _Floor(agents, head, len(snapshot.queue), now)

    async def _name(self, agent_id: str) -> tuple[str, str]:
        known = self._names.get(agent_id)
        if known is None:
            user = await self._store.get_user(agent_id)
            known = (user.name, user.email) if user is not None else ("(deleted)", "")
            self._names[agent_id] = known
        return known

    async def _chat(self, chat_id: str) -> FloorChat:
        chat = await self._store.get_chat(chat_id)
        if chat is None:
            return FloorChat(chat_id, "(deleted)", Priority.MEDIUM)
        return FloorChat(chat_id, chat.title, chat.priority)

    def _update(self, floor: _Floor, before: _Floor, *, full: bool) -> FloorUpdate:
        agents = tuple(
            self._agent(view, name, email, floor.now)
            for agent_id, (view, name, email) in floor.agents.items()
            if full or before.agents.get(agent_id) != (view, name, email)
        )
        removed = () if full else tuple(sorted(before.agents.keys() - floor.agents.keys()))
        queue_changed = full or (floor.queue, floor.queue_length) != (
            before.queue,
            before.queue_length,
        )
        queue = (
            tuple(self._entry(entry, floor.now) for entry in floor.queue) if queue_changed else None
        )
        return FloorUpdate(full, agents, removed, queue, floor.queue_length)

    def _agent(self, view: AgentView, name: str, email: str, now: float) -> FloorAgent:
        return FloorAgent(
            agent_id=view.agent_id,
            name=name,
            email=email,
            status=view.status,
            connections=view.connections,
            load=view.load,
            max_load=view.max_load,
            idle_seconds=round(max(now - view.idle_since, 0.0), 1),
            chats=tuple(self._chats[chat_id] for chat_id in view.chat_ids),
        )

    def _entry(self, entry: QueueEntry, now: float) -> FloorQueueEntry:
        return FloorQueueEntry(
            chat_id=entry.chat_id,
            title=self._chats[entry.chat_id].title,
            position=entry.position,
            priority=entry.priority,
            effective_priority=entry.effective_priority,
            status=entry.status,
            requeued=entry.requeued,
            waiting_seconds=round(max(now - entry.waiting_since, 0.0), 1),
        )

    def _offer(self, session_id: str, user_id: str, update: FloorUpdate) -> None:
        if not self._presence.offer_to(user_id, session_id, update):
            self._watchers.pop(session_id, None)  # gone (or cut off for reading too slowly)

    def _schedule_promotion(self, floor: _Floor) -> None:
        """While the queue is watched, refresh when the next waiting chat is promoted."""
        if self._promotion is not None:
            self._promotion.cancel()
            self._promotion = None
        if not self._watchers:
            return
        wait = next_promotion(floor.queue, floor.now, self._starvation_after)
        if wait is not None:
            self._promotion = self.context.send_after(wait, RefreshFloor())


def next_promotion(
    queue: Iterable[QueueEntry], now: float, starvation_after: float
) -> float | None:
    """Seconds until the starvation guard next raises a waiting chat's priority, if it will."""
    waits = [
        starvation_after - (now - entry.waiting_since) % starvation_after
        for entry in queue
        if not entry.requeued and entry.effective_priority != Priority.URGENT
    ]
    return min(waits) + 0.001 if waits else None
