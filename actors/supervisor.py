"""The SupervisorActor: the assignment state's single writer, a thin shell around AssignmentCore.

For each message it asks the core for the decision, makes the decision durable (one
`record_routing` transaction: routing fields and the activity log), and only then publishes the
routes, pushes events to the sessions concerned and starts timers. If the store fails after the
core decided, the actor crashes on purpose: the restart reloads the state from the store, which
never saw the decision, so state and store agree again.

On (re)start it rebuilds the core from the store: every agent, every active chat, and the
connections the presence registry still holds (a crash of this actor does not drop sockets).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import assert_never

import trio

from actors.assignment import (
    AgentStatusChanged,
    AgentView,
    Assigned,
    AssignmentCore,
    ChatStatusChanged,
    Effect,
    MaxLoadChanged,
    QueueChanged,
    StartGrace,
    Unassigned,
)
from actors.events import (
    AgentStatusEvent,
    ChatAssigned,
    ChatStatusEvent,
    ChatUnassigned,
    QueuePosition,
)
from actors.floor import FloorSignal
from actors.messages import (
    AddAgent,
    CustomerWrote,
    GetSnapshot,
    GraceExpired,
    OpenChat,
    OpenedChat,
    ParkChat,
    PresenceChanged,
    ReassignChat,
    RefreshQueuePositions,
    RemoveAgent,
    ResolveChat,
    SetAgentStatus,
    SetMaxLoad,
    SupervisorMessage,
)
from actors.presence import Presence, Route, Routes
from actors.reporting import report_decisions
from router import Actor, Refused
from store import (
    ACTIVE_CHAT_STATUSES,
    Activity,
    ActivityKind,
    AgentRouting,
    AgentStatus,
    Chat,
    ChatFilter,
    ChatRouting,
    ChatStatus,
    Role,
    Store,
    new_id,
    pages,
    utcnow,
)
from store import Actor as By

ACTIVE_CHATS = ChatFilter(statuses=ACTIVE_CHAT_STATUSES)
CUSTOMER_ASSIGNED_REASON = "an agent has joined the chat"
# Until chats have been handled here, the queue's ETA assumes this handling time per chat.
DEFAULT_HANDLING_SECONDS = 180.0
HANDLING_SAMPLES = 100
# Queue positions are pushed at most this often: every position is recomputed on a refresh, and
# under a burst the queue changes far more often than a waiting customer needs to hear of it.
QUEUE_REFRESH_SECONDS = 0.2
_PAGE = 500


class SupervisorActor(Actor[SupervisorMessage]):
    def __init__(
        self,
        store: Store,
        presence: Presence,
        routes: Routes,
        *,
        grace_period_seconds: float,
        starvation_after_seconds: float,
        floor: FloorSignal | None = None,
    ) -> None:
        self._store = store
        self._floor = floor if floor is not None else FloorSignal()
        self._presence = presence
        self._routes = routes
        self._grace = grace_period_seconds
        self._core = AssignmentCore(starvation_after=starvation_after_seconds)
        self._customers: dict[str, str] = {}  # active chat -> its customer
        self._active_chat_of: dict[str, str] = {}  # customer -> their active chat
        self._assigned_at: dict[str, float] = {}  # open chat -> when its agent got it
        self._handling: deque[float] = deque(maxlen=HANDLING_SAMPLES)
        self._positions: dict[str, int] = {}  # last queue position pushed per waiting chat
        self._refresh_pending = False

    # --- start: rebuild from the store ---------------------------------------------------------

    async def on_start(self) -> None:
        now, wall = trio.current_time(), utcnow()
        self._routes.clear()
        store = self._store
        agent_pages = pages(lambda c: store.list_users(role=Role.AGENT, limit=_PAGE, cursor=c))
        async for agents in agent_pages:
            for agent in agents:
                self._core.load_agent(
                    agent.id, status=agent.status, max_load=agent.max_load, idle_since=now
                )
        async for chats in pages(lambda c: store.list_chats(ACTIVE_CHATS, limit=_PAGE, cursor=c)):
            for chat in chats:
                self._track(chat)
                waiting_since = (
                    None
                    if chat.queued_at is None
                    else now - (wall - chat.queued_at).total_seconds()
                )
                self._core.load_chat(
                    chat.id,
                    status=chat.status,
                    priority=chat.priority,
                    agent_id=chat.agent_id,
                    waiting_since=waiting_since,
                )
        effects: list[Effect] = []
        for user_id in self._presence.connected_users():
            effects += self._sync_presence(user_id, now)
        effects += self._core.drain(now)
        await self._perform(effects, None, chats=self._customers)
        self._floor.changed()

    # --- messages ------------------------------------------------------------------------------

    async def handle(self, message: SupervisorMessage) -> None:
        now = trio.current_time()
        core = self._core
        match message:
            case OpenChat():
                message.reply.send(await self._open_chat(message, now))
            case PresenceChanged(agent_id):
                await self._perform(self._sync_presence(agent_id, now), None)
            case SetAgentStatus(agent_id, status, by, actor_id, reply):
                effects = core.set_status(agent_id, status, by=by, now=now)
                await self._perform(effects, actor_id)
                reply.send(self._agent(agent_id))
            case SetMaxLoad(agent_id, max_load, actor_id, reply):
                effects = core.set_max_load(agent_id, max_load, by=By.ADMIN, now=now)
                await self._perform(effects, actor_id)
                reply.send(self._agent(agent_id))
            case ParkChat(chat_id, by, actor_id, reply):
                self._check_may_act(chat_id, by, actor_id, customer_may=False)
                effects = core.chat_parked(chat_id, by=by, now=now)
                await self._perform(effects, actor_id, chats=(chat_id,))
                reply.send(await self._chat(chat_id))
            case ResolveChat(chat_id, by, actor_id, reply):
                self._check_may_act(chat_id, by, actor_id, customer_may=True)
                effects = core.chat_resolved(chat_id, by=by, now=now)
                await self._perform(effects, actor_id, chats=(chat_id,))
                reply.send(await self._chat(chat_id))
            case ReassignChat(chat_id, agent_id, actor_id, reply):
                effects = core.reassign(chat_id, agent_id, by=By.ADMIN, now=now)
                await self._perform(effects, actor_id, chats=(chat_id,))
                reply.send(await self._chat(chat_id))
            case CustomerWrote(chat_id):
                await self._perform(core.customer_wrote(chat_id, now), None, chats=(chat_id,))
            case AddAgent(agent_id, max_load, reply):
                # The role is written with the agent's routing, in the decision's transaction:
                # the store and the core cannot disagree on who is an agent. Known already (two
                # approvals raced), it is written again and nothing else changes.
                known = core.agent_view(agent_id) is not None
                effects = [] if known else core.agent_added(agent_id, max_load=max_load, now=now)
                await self._perform(effects, None, enrolled=(self._agent(agent_id), Role.AGENT))
                reply.send(None)
            case RemoveAgent(agent_id, reply):
                # Before the core forgets the agent: their record is stored a user and away, in
                # the transaction that re-queues their chats.
                departed = core.agent_view(agent_id)
                effects = core.agent_removed(agent_id, now)
                if departed is not None:
                    away = replace(departed, status=AgentStatus.AWAY)
                    await self._perform(effects, None, enrolled=(away, Role.USER))
                reply.send(None)
            case GraceExpired(agent_id, token):
                await self._perform(core.grace_expired(agent_id, token, now), None)
            case RefreshQueuePositions():
                self._refresh_pending = False
                self._push_queue_positions(now)
                return
            case GetSnapshot(reply):
                reply.send(core.snapshot(now))
                return  # changes nothing: the floor feed's own question
            case _ as unreachable:
                assert_never(unreachable)
        self._floor.changed()

    async def _open_chat(self, message: OpenChat, now: float) -> OpenedChat:
        active_id = self._active_chat_of.get(message.customer_id)
        if active_id is not None:
            return OpenedChat(await self._chat(active_id), created=False)
        wall = utcnow()
        chat = await self._store.create_chat(
            Chat(
                id=new_id(),
                customer_id=message.customer_id,
                title=message.title,
                description=message.description,
                priority=message.priority,
                status=ChatStatus.NEW,
                created_at=wall,
                updated_at=wall,
                queued_at=wall,
            )
        )
        self._track(chat)
        effects = self._core.chat_opened(chat.id, priority=chat.priority, now=now)
        routing = await self._perform(effects, None, chats=(chat.id,))
        # Nobody else writes a chat before its creator hears of it: the record plus the
        # routing just stored is what the store holds, without reading it back.
        change = routing[chat.id]
        opened = replace(
            chat,
            status=change.status,
            agent_id=change.agent_id,
            queued_at=change.queued_at,
            updated_at=change.updated_at,
        )
        return OpenedChat(opened, created=True)

    def _track(self, chat: Chat) -> None:
        self._customers[chat.id] = chat.customer_id
        self._active_chat_of[chat.customer_id] = chat.id

    def _forget(self, chat_id: str) -> None:
        customer_id = self._customers.pop(chat_id, None)
        if customer_id is not None and self._active_chat_of.get(customer_id) == chat_id:
            del self._active_chat_of[customer_id]

    def _sync_presence(self, agent_id: str, now: float) -> list[Effect]:
        """Bring the core's connection count to what the presence registry holds."""
        view = self._core.agent_view(agent_id)
        if view is None:
            return []
        effects: list[Effect] = []
        wanted = self._presence.connections(agent_id)
        for _ in range(wanted - view.connections):
            effects += self._core.agent_connected(agent_id, now)
        for _ in range(view.connections - wanted):
            effects += self._core.agent_disconnected(agent_id, now)
        return effects

    def _check_may_act(
        self, chat_id: str, by: By, actor_id: str | None, *, customer_may: bool
    ) -> None:
        """An agent acts only on a chat they own (a customer, where allowed, on their own)."""
        if by != By.SELF:
            return
        view = self._core.chat_view(chat_id)
        if view is None:
            raise Refused("chat_not_active", f"chat {chat_id} is unknown or resolved")
        if actor_id is not None and actor_id == view.agent_id:
            return
        if customer_may and actor_id == self._customers.get(chat_id):
            return
        raise Refused("not_your_chat", f"chat {chat_id} is not assigned to you")

    def _agent(self, agent_id: str) -> AgentView:
        view = self._core.agent_view(agent_id)
        assert view is not None  # the core refused unknown agents before any effect
        return view

    async def _chat(self, chat_id: str) -> Chat:
        chat = await self._store.get_chat(chat_id)
        if chat is None:
            raise Refused("chat_not_found", f"chat {chat_id} does not exist")
        return chat

    # --- effects -------------------------------------------------------------------------------

    async def _perform(
        self,
        effects: list[Effect],
        actor_id: str | None,
        *,
        chats: Iterable[str] = (),
        agents: Iterable[str] = (),
        enrolled: tuple[AgentView, Role] | None = None,
    ) -> dict[str, ChatRouting]:
        """Persist the decision, then publish routes, push events and start timers; returns the
        routing fields written per chat. `enrolled` is an agent whose role changes with it
        (approved: agent; demoted or deleted: user), written as the view says."""
        now, wall = trio.current_time(), utcnow()
        chat_ids: dict[str, None] = dict.fromkeys(chats)
        agent_ids: dict[str, None] = dict.fromkeys(agents)
        activity: list[Activity] = []
        for effect in effects:
            entry = self._activity(effect, actor_id, wall)
            if entry is not None:
                activity.append(entry)
            match effect:
                case Assigned() | Unassigned() | ChatStatusChanged():
                    chat_ids[effect.chat_id] = None
                case AgentStatusChanged() | MaxLoadChanged():
                    agent_ids[effect.agent_id] = None
        # Owners as each effect happened, for the status events of intermediate steps (and of a
        # resolved chat, which has no route afterwards but whose agent still hears of it).
        owners = {chat_id: _owner(self._routes.get(chat_id)) for chat_id in chat_ids}
        routing = {
            chat_id: self._chat_routing(chat_id, owners[chat_id], now, wall) for chat_id in chat_ids
        }
        agent_routing = [
            AgentRouting(agent_id, view.status, view.max_load, wall)
            for agent_id in agent_ids
            if (view := self._core.agent_view(agent_id)) is not None
        ]
        if enrolled is not None:
            view, role = enrolled
            agent_routing = [a for a in agent_routing if a.agent_id != view.agent_id]
            agent_routing.append(
                AgentRouting(view.agent_id, view.status, view.max_load, wall, role=role)
            )
        if chat_ids or agent_routing or activity:
            await self._store.record_routing(list(routing.values()), agent_routing, activity)
        report_decisions(effects)
        for chat_id in chat_ids:
            self._publish_route(chat_id)
        for effect in effects:
            await self._push(effect, now, owners)
        for chat_id in chat_ids:
            if self._routes.get(chat_id) is None:
                self._forget(chat_id)
        return routing

    def _chat_routing(
        self, chat_id: str, owner: str | None, now: float, wall: datetime
    ) -> ChatRouting:
        """The chat's routing fields after the decision; `owner` is its agent before it."""
        view = self._core.chat_view(chat_id)
        if view is None:  # resolved: it keeps the agent who had it, for history and dashboards
            return ChatRouting(chat_id, ChatStatus.RESOLVED, owner, None, wall, wall)
        queued_at = (
            None
            if view.waiting_since is None
            else wall - timedelta(seconds=now - view.waiting_since)
        )
        return ChatRouting(chat_id, view.status, view.agent_id, queued_at, None, wall)

    def _publish_route(self, chat_id: str) -> None:
        view = self._core.chat_view(chat_id)
        if view is None:
            self._routes.withdraw(chat_id)
            return
        customer_id = self._customers[chat_id]
        self._routes.publish(Route(chat_id, customer_id, view.agent_id, view.status))

    def _activity(self, effect: Effect, actor_id: str | None, wall: datetime) -> Activity | None:
        def entry(kind: ActivityKind, by: By, reason: str, **fields: str | None) -> Activity:
            who = None if by == By.SYSTEM else actor_id
            return Activity(new_id(), kind, by, reason, wall, actor_id=who, **fields)

        match effect:
            case Assigned(chat_id, agent_id, previous_id, reason, by):
                return entry(
                    ActivityKind.ASSIGNMENT, by, reason, agent_id=agent_id, chat_id=chat_id,
                    from_value=previous_id, to_value=agent_id,
                )  # fmt: skip
            case Unassigned(chat_id, agent_id, reason, by):
                return entry(
                    ActivityKind.ASSIGNMENT, by, reason, agent_id=agent_id, chat_id=chat_id,
                    from_value=agent_id, to_value=None,
                )  # fmt: skip
            case ChatStatusChanged(chat_id, old, new, by, reason):
                # The agent who had the chat when its status changed: after a resolve the core
                # has forgotten the chat, while the published route still names them.
                view = self._core.chat_view(chat_id)
                owner = view.agent_id if view is not None else _owner(self._routes.get(chat_id))
                return entry(
                    ActivityKind.CHAT_STATUS, by, reason, chat_id=chat_id, from_value=old,
                    to_value=new, agent_id=owner,
                )  # fmt: skip
            case AgentStatusChanged(agent_id, old, new, by, reason):
                return entry(
                    ActivityKind.AGENT_STATUS, by, reason, agent_id=agent_id, from_value=old,
                    to_value=new,
                )  # fmt: skip
            case MaxLoadChanged(agent_id, old, new, by):
                return entry(
                    ActivityKind.AGENT_STATUS, by, f"max load {old} -> {new}", agent_id=agent_id
                )
            case StartGrace() | QueueChanged():
                return None
            case _ as unreachable:
                assert_never(unreachable)

    async def _push(self, effect: Effect, now: float, owners: dict[str, str | None]) -> None:
        """Tell the sessions concerned; `owners` follows each chat's owner effect by effect."""
        deliver = self._presence.deliver
        match effect:
            case Assigned(chat_id, agent_id, previous_id, reason, _):
                self._finish_handling(chat_id, now)
                self._assigned_at[chat_id] = now
                owners[chat_id] = agent_id
                chat = await self._chat(chat_id)
                deliver(agent_id, ChatAssigned(chat, reason))
                # The reason names other agents and their loads: that stays with the staff.
                deliver(chat.customer_id, ChatAssigned(chat, CUSTOMER_ASSIGNED_REASON))
                if previous_id is not None:
                    deliver(previous_id, ChatUnassigned(chat_id, reason))
            case Unassigned(chat_id, agent_id, reason, _):
                self._finish_handling(chat_id, now)
                owners[chat_id] = None
                deliver(agent_id, ChatUnassigned(chat_id, reason))
            case ChatStatusChanged(chat_id, _, new, _, _):
                if new == ChatStatus.RESOLVED:
                    self._finish_handling(chat_id, now)
                owner = owners.get(chat_id)
                event = ChatStatusEvent(chat_id, new, owner)
                deliver(self._customers.get(chat_id), event)
                deliver(owner, event)
            case AgentStatusChanged(agent_id, _, new, _, reason):
                deliver(agent_id, AgentStatusEvent(agent_id, new, reason))
            case StartGrace(agent_id, token):
                self.context.send_after(self._grace, GraceExpired(agent_id, token))
            case QueueChanged():
                if not self._refresh_pending:
                    self._refresh_pending = True
                    self.context.send_after(QUEUE_REFRESH_SECONDS, RefreshQueuePositions())
            case MaxLoadChanged():
                pass
            case _ as unreachable:
                assert_never(unreachable)

    def _finish_handling(self, chat_id: str, now: float) -> None:
        started = self._assigned_at.pop(chat_id, None)
        if started is not None:
            self._handling.append(now - started)

    def _push_queue_positions(self, now: float) -> None:
        snapshot = self._core.snapshot(now)
        capacity = sum(
            agent.max_load
            for agent in snapshot.agents
            if agent.status != AgentStatus.AWAY and agent.connections
        )
        handling = (
            sum(self._handling) / len(self._handling)
            if self._handling
            else DEFAULT_HANDLING_SECONDS
        )
        positions: dict[str, int] = {}
        for entry in snapshot.queue:
            positions[entry.chat_id] = entry.position
            if self._positions.get(entry.chat_id) == entry.position:
                continue
            eta = math.ceil(entry.position * handling / max(capacity, 1))
            customer_id = self._customers.get(entry.chat_id)
            self._presence.deliver(customer_id, QueuePosition(entry.chat_id, entry.position, eta))
        self._positions = positions


def _owner(route: Route | None) -> str | None:
    return None if route is None else route.agent_id
