"""The AssignmentActor: the assignment state's single writer, a thin shell around AssignmentCore.

Decide, commit, apply, in batches: it takes every message waiting in its mailbox (up to
MAX_BATCH), runs the core on each in order, and makes all their decisions durable in one
`record_routing` write (new chats, routing fields, role changes and the activity log). Only then
does it answer the asks, publish the routes, push events and start timers. When the write fails
the core rolls back to before the batch (its undo log), every ask of the batch answers
`StoreUnavailable` (503) and the tells in it are decided again after RETRY_SECONDS (with a
write even if there is nothing to redo, until one succeeds; `RoutingHealth` says meanwhile
that decisions cannot be stored): a store blip is not a crash, and the actor goes on with the
state the store has.

On (re)start it rebuilds the core from the store: every agent, every active chat, and the
connections the presence registry still holds (a crash of this actor does not drop sockets),
then publishes every route over the old ones, which the edge kept using meanwhile.

Over 500 lines: the shell's decide, commit and apply of a batch, and the pushes and answers that
follow; the decisions themselves are in assignment.py and policy.py.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeAlias, assert_never

import trio

from actors.agent import Agents
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
    AgentCard,
    AgentStatusEvent,
    ChatAssigned,
    ChatStatusEvent,
    ChatUnassigned,
    QueuePosition,
)
from actors.floor import FloorSignal
from actors.messages import (
    AddAgent,
    AgentProfileChanged,
    AssignmentMessage,
    ChatDetailsChanged,
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
    RetryDecisions,
    SetAgentStatus,
    SetMaxLoad,
)
from actors.presence import Presence, Route, Routes
from actors.reporting import report_decisions
from actors.transcripts import Transcripts
from router import ActorDead, BatchActor, Refused, Reply
from store import (
    ACTIVE_CHAT_STATUSES,
    ActedBy,
    Activity,
    ActivityKind,
    AgentRouting,
    AgentStatus,
    Backend,
    Chat,
    ChatFilter,
    ChatRouting,
    ChatStatus,
    Message,
    Role,
    StoreError,
    StoreUnavailable,
    new_id,
    pages,
    utcnow,
)

ACTIVE_CHATS = ChatFilter(statuses=ACTIVE_CHAT_STATUSES)
CUSTOMER_ASSIGNED_REASON = "an agent has joined the chat"
# Until chats have been handled here, the queue's ETA assumes this handling time per chat.
DEFAULT_HANDLING_SECONDS = 180.0
HANDLING_SAMPLES = 100
# Queue positions are pushed at most this often: every position is recomputed on a refresh, and
# under a burst the queue changes far more often than a waiting customer needs to hear of it.
QUEUE_REFRESH_SECONDS = 0.2
_PAGE = 500
# Messages decided together and stored in one write: enough to take a burst's whole mailbox in a
# few writes, few enough that one write stays short.
MAX_BATCH = 256
# A batch that could not be stored has its tells decided again after this long.
RETRY_SECONDS = 1.0

log = logging.getLogger("actors.supervisor")

_EPOCHS = itertools.count(1)


@dataclass(slots=True)
class RoutingHealth:
    """Whether the assignment actor's decisions reach the store, for the readiness check."""

    problem: str | None = None


class AssignmentActor(BatchActor[AssignmentMessage]):
    max_batch = MAX_BATCH

    def __init__(
        self,
        store: Backend,
        presence: Presence,
        routes: Routes,
        transcripts: Transcripts,
        agents: Agents,
        *,
        starvation_after_seconds: float,
        floor: FloorSignal | None = None,
        health: RoutingHealth | None = None,
        chat_closed: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._health = health if health is not None else RoutingHealth()
        self._floor = floor if floor is not None else FloorSignal()
        self._presence = presence
        self._routes = routes
        self._transcripts = transcripts
        self._agents = agents
        # Told each chat that leaves the active set, once its route is withdrawn: its
        # conversation passivates soon instead of after the idle time.
        self._chat_closed = chat_closed if chat_closed is not None else _ignore
        self._epoch = next(_EPOCHS)  # names this incarnation's grace periods
        self._core = AssignmentCore(starvation_after=starvation_after_seconds)
        self._customers: dict[str, str] = {}  # active chat -> its customer
        # What a pushed chat shows, kept so that pushing reads nothing: each active chat as
        # loaded or opened (the routing fields are the core's, the transcript's are its
        # conversation's `Transcripts` entry) and the public fields of each agent pushed to.
        self._records: dict[str, Chat] = {}
        self._cards: dict[str, AgentCard] = {}
        self._active_chat_of: dict[str, str] = {}  # customer -> their active chat
        self._assigned_at: dict[str, float] = {}  # open chat -> when its agent got it
        self._handling: deque[float] = deque(maxlen=HANDLING_SAMPLES)
        self._positions: dict[str, int] = {}  # last queue position pushed per waiting chat
        self._refresh_pending = False
        self._redo: dict[AssignmentMessage, None] = {}  # tells of batches that were not stored
        self._retry_pending = False

    # --- start: rebuild from the store ---------------------------------------------------------

    async def on_start(self) -> None:
        """Rebuild the core from the store, store what the rebuild corrected, then publish every
        route over the old ones: during a restart the edge keeps routing messages by the last
        published routes instead of refusing them as resolved."""
        now, wall = trio.current_time(), utcnow()
        store = self._store
        agent_pages = pages(lambda c: store.list_users(role=Role.AGENT, limit=_PAGE, cursor=c))
        async for agents in agent_pages:
            for agent in agents:
                self._cards[agent.id] = AgentCard(agent.id, agent.name, agent.email)
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
        batch = _Batch(now, wall)
        batch.chats.update(dict.fromkeys(self._customers))
        for user_id in self._presence.connected_users():
            self._sync_presence(user_id, batch)
        self._decided(batch, self._core.drain(now), None)
        await self._commit(batch)  # a failure here fails the start: the restart policy retries
        for chat_id in self._routes.chat_ids():
            if chat_id not in self._customers:
                self._routes.withdraw(chat_id)  # resolved while no arbiter ran
                self._chat_closed(chat_id)
        await self._apply(batch)

    # --- messages: decide them all, store the decisions in one write, then apply them -----------

    async def handle_batch(self, messages: list[AssignmentMessage]) -> None:
        batch = _Batch(trio.current_time(), utcnow())
        self._core.checkpoint()
        for message in messages:
            try:
                self._decide(message, batch)
            except Refused as refusal:
                reply = getattr(message, "reply", None)
                if reply is not None:
                    reply.fail(refusal)
                else:
                    log.warning("assignment actor refused %s: %s", type(message).__name__, refusal)
        try:
            await self._commit(batch)
        except StoreError as error:
            self._roll_back(batch, error)
        else:
            self._core.commit()
            await self._apply(batch)
        for then in batch.after:
            then()

    def _decide(self, message: AssignmentMessage, batch: _Batch) -> None:
        """Run the core on one message, adding its decisions and its answer to `batch`."""
        now, core = batch.now, self._core
        match message:
            case OpenChat():
                self._open_chat(message, batch)
            case PresenceChanged(agent_id):
                batch.redo.append(message)
                self._sync_presence(agent_id, batch)
            case SetAgentStatus(agent_id, status, by, actor_id, reply):
                effects = core.set_status(agent_id, status, by=by, now=now)
                self._decided(batch, effects, actor_id)
                batch.answer(reply, _value(self._agent(agent_id)))
            case SetMaxLoad(agent_id, max_load, actor_id, reply):
                effects = core.set_max_load(agent_id, max_load, by=ActedBy.ADMIN, now=now)
                self._decided(batch, effects, actor_id)
                batch.answer(reply, _value(self._agent(agent_id)))
            case ParkChat(chat_id, by, actor_id, reply):
                self._check_may_act(chat_id, by, actor_id, customer_may=False)
                effects = core.chat_parked(chat_id, by=by, now=now)
                self._decided(batch, effects, actor_id, chats=(chat_id,))
                batch.answer(reply, partial(self._answer, chat_id=chat_id))
            case ResolveChat(chat_id, by, actor_id, reply):
                self._check_may_act(chat_id, by, actor_id, customer_may=True)
                effects = core.chat_resolved(chat_id, by=by, now=now)
                self._decided(batch, effects, actor_id, chats=(chat_id,))
                batch.answer(reply, partial(self._answer, chat_id=chat_id))
            case ReassignChat(chat_id, agent_id, actor_id, reply):
                effects = core.reassign(chat_id, agent_id, by=ActedBy.ADMIN, now=now)
                self._decided(batch, effects, actor_id, chats=(chat_id,))
                batch.answer(reply, partial(self._answer, chat_id=chat_id))
            case CustomerWrote(chat_id):
                batch.redo.append(message)
                self._decided(batch, core.customer_wrote(chat_id, now), None, chats=(chat_id,))
            case AddAgent(agent_id, max_load, reply):
                # The role is written with the agent's routing, in the decision's transaction:
                # the store and the core cannot disagree on who is an agent. Known already (two
                # approvals raced), it is written again and nothing else changes.
                known = core.agent_view(agent_id) is not None
                effects = [] if known else core.agent_added(agent_id, max_load=max_load, now=now)
                self._decided(batch, effects, None)
                batch.enrolled[agent_id] = (self._agent(agent_id), Role.AGENT)
                batch.answer(reply, _value(None))
            case AgentProfileChanged(card):
                if core.agent_view(card.id) is not None:
                    self._cards[card.id] = card
                else:  # removed meanwhile: read again if approved again
                    self._cards.pop(card.id, None)
            case ChatDetailsChanged(chat_id, title, description, reply):
                record = self._records.get(chat_id)
                if record is not None:  # else resolved meanwhile: nothing shown of it again
                    self._records[chat_id] = replace(record, title=title, description=description)
                batch.answer(reply, _value(None))
            case RemoveAgent(agent_id, reply):
                # Before the core forgets the agent: their record is stored a user and away, in
                # the transaction that re-queues their chats.
                departed = core.agent_view(agent_id)
                self._decided(batch, core.agent_removed(agent_id, now), None)
                if departed is not None:
                    away = replace(departed, status=AgentStatus.AWAY)
                    batch.enrolled[agent_id] = (away, Role.USER)
                self._cards.pop(agent_id, None)
                batch.answer(reply, _value(None))
            case GraceExpired(agent_id, token, epoch):
                if epoch == self._epoch:  # else started by an earlier incarnation: stale
                    batch.redo.append(message)
                    self._decided(batch, core.grace_expired(agent_id, token, now), None)
            case RetryDecisions():
                self._retry_pending = False
                batch.probe = True  # a write even with nothing to redo: is the store back?
                redo, self._redo = list(self._redo), {}
                for again in redo:
                    self._decide(again, batch)
            case RefreshQueuePositions():
                batch.after.append(self._refresh_queue_positions)
            case GetSnapshot(reply):
                # Answered once the batch is stored or taken back: the state as it then stands.
                batch.after.append(lambda: reply.send(core.snapshot(trio.current_time())))
            case _ as unreachable:
                assert_never(unreachable)

    def _open_chat(self, message: OpenChat, batch: _Batch) -> None:
        active_id = self._active_chat_of.get(message.customer_id)
        if active_id is not None:
            found = partial(self._opened, chat_id=active_id, created=False)
            batch.answer(message.reply, found)
            return
        chat = Chat(
            id=new_id(),
            customer_id=message.customer_id,
            title=message.title,
            description=message.description,
            priority=message.priority,
            status=ChatStatus.NEW,
            created_at=batch.wall,
            updated_at=batch.wall,
            queued_at=batch.wall,
        )
        effects = self._core.chat_opened(chat.id, priority=chat.priority, now=batch.now)
        self._track(chat)
        batch.created[chat.id] = chat
        self._decided(batch, effects, None, chats=(chat.id,))
        batch.answer(message.reply, partial(self._opened, chat_id=chat.id, created=True))

    async def _opened(self, batch: _Batch, chat_id: str, *, created: bool) -> OpenedChat:
        # Nobody else writes a chat before its creator hears of it: a chat created in this batch
        # is the record just stored, without reading it back.
        stored = batch.stored.get(chat_id)
        chat = stored if stored is not None else self._shown(chat_id, batch)
        agent = None if chat.agent_id is None else await self._card(chat.agent_id)
        return OpenedChat(chat, created, agent, await self._last_message(chat))

    def _decided(
        self,
        batch: _Batch,
        effects: list[Effect],
        actor_id: str | None,
        *,
        chats: Iterable[str] = (),
    ) -> None:
        """Add one message's effects to the batch: its activity entries (with the owners as
        they were before the message), the chats and agents whose routing to write, and what
        to push with the owner each chat has at that effect."""
        batch.chats.update(dict.fromkeys(chats))
        owners = batch.owners
        for chat_id in _chats_of(effects):
            if chat_id not in owners:
                owners[chat_id] = _owner(self._routes.get(chat_id))
        for effect in effects:
            entry = self._activity(effect, actor_id, batch.wall, owners)
            if entry is not None:
                batch.activity.append(entry)
            if isinstance(effect, ChatStatusChanged) and effect.new == ChatStatus.RESOLVED:
                batch.resolved_owner[effect.chat_id] = owners.get(effect.chat_id)
        for effect in effects:
            match effect:
                case Assigned(chat_id, agent_id):
                    owners[chat_id] = agent_id
                    batch.chats[chat_id] = None
                case Unassigned(chat_id):
                    owners[chat_id] = None
                    batch.chats[chat_id] = None
                case ChatStatusChanged(chat_id):
                    batch.chats[chat_id] = None
                case AgentStatusChanged(agent_id) | MaxLoadChanged(agent_id):
                    batch.agents[agent_id] = None
                case StartGrace() | QueueChanged():
                    pass
                case _ as unreachable:
                    assert_never(unreachable)
            batch.pushes.append((effect, owners.get(_chat_of(effect) or "")))
        batch.effects += effects

    async def _commit(self, batch: _Batch) -> None:
        """Store every decision of the batch in one `record_routing` write."""
        if not (batch.chats or batch.agents or batch.activity or batch.enrolled or batch.probe):
            return
        now, wall = batch.now, batch.wall
        routing = [
            self._chat_routing(chat_id, batch.resolved_owner.get(chat_id), now, wall)
            for chat_id in batch.chats
        ]
        changed = [change for change in routing if change.chat_id not in batch.created]
        for change in routing:
            created = batch.created.get(change.chat_id)
            if created is not None:
                batch.stored[change.chat_id] = replace(
                    created,
                    status=change.status,
                    agent_id=change.agent_id,
                    queued_at=change.queued_at,
                    resolved_at=change.resolved_at,
                    updated_at=change.updated_at,
                )
        agents = [
            AgentRouting(agent_id, view.status, view.max_load, wall)
            for agent_id in batch.agents
            if agent_id not in batch.enrolled
            and (view := self._core.agent_view(agent_id)) is not None
        ]
        agents += [
            AgentRouting(view.agent_id, view.status, view.max_load, wall, role=role)
            for view, role in batch.enrolled.values()
        ]
        await self._store.record_routing(
            changed, agents, batch.activity, new_chats=list(batch.stored.values())
        )
        if self._health.problem is not None:
            log.info("routing decisions are stored again")
            self._health.problem = None

    def _roll_back(self, batch: _Batch, error: StoreError) -> None:
        """The write failed: the core forgets the batch, every ask in it answers that the store
        is unavailable (503), and its tells are decided again shortly."""
        self._core.rollback()
        for chat_id in batch.created:
            self._forget(chat_id)
        failure = error
        if not isinstance(error, StoreUnavailable):  # e.g. Fenced: another node arbitrates now
            failure = StoreUnavailable(str(error))
            failure.__cause__ = error
        for reply, _ in batch.answers:
            reply.fail(failure)
        log.warning(
            "a batch of %d decisions was not stored (%s); taken back", len(batch.effects), error
        )
        self._health.problem = f"its decisions cannot be stored: {error}"
        self._redo.update(dict.fromkeys(batch.redo))
        if not self._retry_pending:
            self._retry_pending = True
            self.context.send_after(RETRY_SECONDS, RetryDecisions())

    async def _apply(self, batch: _Batch) -> None:
        """The batch is stored: publish the routes, push the events, start the timers, answer."""
        report_decisions(batch.effects)
        for chat_id in batch.chats:
            self._publish_route(chat_id)
        for effect, owner in batch.pushes:
            await self._push(effect, batch, owner)
        for reply, answer in batch.answers:
            try:
                reply.send(await answer(batch))
            except Refused as refusal:
                reply.fail(refusal)
            except StoreError as error:  # a read after the write; the decision itself stands
                reply.fail(StoreUnavailable(str(error)))
        for chat_id in batch.chats:  # after the answers, which show the resolved ones too
            if self._routes.get(chat_id) is None:
                self._forget(chat_id)
                self._chat_closed(chat_id)
        if batch.effects or batch.enrolled or batch.presence:
            self._floor.changed()

    def _track(self, chat: Chat) -> None:
        self._records[chat.id] = chat
        self._customers[chat.id] = chat.customer_id
        self._active_chat_of[chat.customer_id] = chat.id

    def _forget(self, chat_id: str) -> None:
        self._records.pop(chat_id, None)
        self._transcripts.forget(chat_id)
        customer_id = self._customers.pop(chat_id, None)
        if customer_id is not None and self._active_chat_of.get(customer_id) == chat_id:
            del self._active_chat_of[customer_id]

    def _sync_presence(self, agent_id: str, batch: _Batch) -> None:
        """Bring the core's connection count to what the presence registry holds."""
        view = self._core.agent_view(agent_id)
        if view is None:
            return
        wanted, now = self._presence.connections(agent_id), batch.now
        if wanted != view.connections:
            batch.presence = True  # shown on the floor even when no status changes with it
        effects: list[Effect] = []
        for _ in range(wanted - view.connections):
            effects += self._core.agent_connected(agent_id, now)
        for _ in range(view.connections - wanted):
            effects += self._core.agent_disconnected(agent_id, now)
        self._decided(batch, effects, None)

    def _check_may_act(
        self, chat_id: str, by: ActedBy, actor_id: str | None, *, customer_may: bool
    ) -> None:
        """An agent acts only on a chat they own (a customer, where allowed, on their own)."""
        if by != ActedBy.SELF:
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

    def _shown(self, chat_id: str, batch: _Batch) -> Chat:
        """The chat as the batch stored it, from memory: the record, the routing just written
        and its conversation's transcript head."""
        routing = self._chat_routing(
            chat_id, batch.resolved_owner.get(chat_id), batch.now, batch.wall
        )
        chat = replace(
            self._records[chat_id],
            status=routing.status,
            agent_id=routing.agent_id,
            queued_at=routing.queued_at,
            resolved_at=routing.resolved_at,
            updated_at=routing.updated_at,
        )
        head = self._transcripts.get(chat_id)
        return chat if head is None else head.applied(chat)

    async def _last_message(self, chat: Chat) -> Message | None:
        """From the transcript head; read only for a chat with messages whose conversation has
        not run since this actor started."""
        head = self._transcripts.get(chat.id)
        if head is not None:
            return head.last_message
        if chat.last_message_id is None:
            return None
        return await self._store.get_message(chat.last_message_id)

    async def _card(self, agent_id: str) -> AgentCard:
        """The agent's public fields; read once after an approval (a profile change is told)."""
        card = self._cards.get(agent_id)
        if card is None:
            user = await self._store.get_user(agent_id)
            if user is None:
                raise Refused("user_not_found", f"no user {agent_id}")
            card = self._cards[agent_id] = AgentCard(user.id, user.name, user.email)
        return card

    async def _answer(self, batch: _Batch, chat_id: str) -> Chat:
        """The chat a park, resolve or reassign answers with: as stored by the batch, from
        memory (one store read per answer made the actor wait on the store once per request)."""
        return self._shown(chat_id, batch)

    # --- effects -------------------------------------------------------------------------------

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

    def _activity(
        self, effect: Effect, actor_id: str | None, wall: datetime, owners: dict[str, str | None]
    ) -> Activity | None:
        """The log entry of an effect; `owners` are the chats' agents before the message."""

        def entry(kind: ActivityKind, by: ActedBy, reason: str, **fields: str | None) -> Activity:
            who = None if by == ActedBy.SYSTEM else actor_id
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
                # has forgotten the chat, and the agent is the one it had before the message.
                view = self._core.chat_view(chat_id)
                owner = view.agent_id if view is not None else owners.get(chat_id)
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

    async def _push(self, effect: Effect, batch: _Batch, owner: str | None) -> None:
        """Tell the sessions concerned; `owner` is the effect's chat's agent as of the effect."""
        deliver, now = self._presence.deliver, batch.now
        match effect:
            case Assigned(chat_id, agent_id, previous_id, reason, _):
                self._finish_handling(chat_id, now)
                self._assigned_at[chat_id] = now
                try:
                    chat = self._shown(chat_id, batch)
                    last = await self._last_message(chat)
                    card = await self._card(agent_id)
                except (StoreError, Refused) as error:
                    log.warning("chat %s assigned but not pushed: %s", chat_id, error)
                    return
                deliver(agent_id, ChatAssigned(chat, reason, card, last))
                # The reason names other agents and their loads: that stays with the staff.
                shown = ChatAssigned(chat, CUSTOMER_ASSIGNED_REASON, card, last)
                deliver(chat.customer_id, shown)
                if previous_id is not None:
                    deliver(previous_id, ChatUnassigned(chat_id, reason))
            case Unassigned(chat_id, agent_id, reason, _):
                self._finish_handling(chat_id, now)
                deliver(agent_id, ChatUnassigned(chat_id, reason))
            case ChatStatusChanged(chat_id, _, new, _, _):
                if new == ChatStatus.RESOLVED:
                    self._finish_handling(chat_id, now)
                event = ChatStatusEvent(chat_id, new, owner)
                deliver(self._customers.get(chat_id), event)
                deliver(owner, event)
            case AgentStatusChanged(agent_id, _, new, _, reason):
                deliver(agent_id, AgentStatusEvent(agent_id, new, reason))
            case StartGrace(agent_id, token):
                # The agent actor runs it (a connection coming back ends it there) and tells
                # GraceExpired(token) when it ends; a token the core moved past changes nothing.
                try:
                    await self._agents.start_grace_period(agent_id, token, self._epoch)
                except (ActorDead, RuntimeError) as error:  # the domain is stopping
                    log.warning("grace period of %s not started: %s", agent_id, error)
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

    def _refresh_queue_positions(self) -> None:
        self._refresh_pending = False
        self._push_queue_positions(trio.current_time())

    def _push_queue_positions(self, now: float) -> None:
        # Not a whole snapshot (every agent's view and the parked chats sorted): under a backlog
        # this ran five times a second.
        capacity = self._core.online_capacity()
        handling = (
            sum(self._handling) / len(self._handling)
            if self._handling
            else DEFAULT_HANDLING_SECONDS
        )
        positions: dict[str, int] = {}
        for position, chat_id in enumerate(self._core.waiting_in_order(now), start=1):
            positions[chat_id] = position
            if self._positions.get(chat_id) == position:
                continue
            eta = math.ceil(position * handling / max(capacity, 1))
            customer_id = self._customers.get(chat_id)
            self._presence.deliver(customer_id, QueuePosition(chat_id, position, eta))
        self._positions = positions


def _owner(route: Route | None) -> str | None:
    return None if route is None else route.agent_id


def _chat_of(effect: Effect) -> str | None:
    match effect:
        case Assigned(chat_id) | Unassigned(chat_id) | ChatStatusChanged(chat_id):
            return chat_id
        case _:
            return None


def _chats_of(effects: list[Effect]) -> dict[str, None]:
    return {chat_id: None for effect in effects if (chat_id := _chat_of(effect)) is not None}


Answer: TypeAlias = Callable[["_Batch"], Awaitable[Any]]
"""What an ask is answered with once its batch is stored, given the batch: an answer that kept
the batch itself would make a cycle of every batch (its answers, activity, chats, effects), left
for the full collections to find."""


def _ignore(chat_id: str) -> None:
    pass


def _value(value: object) -> Answer:
    async def answer(_: _Batch) -> object:
        return value

    return answer


@dataclass(slots=True)
class _Batch:
    """The decisions of the messages handled together, until they are stored and applied."""

    now: float
    wall: datetime
    effects: list[Effect] = field(default_factory=list)
    activity: list[Activity] = field(default_factory=list)
    chats: dict[str, None] = field(default_factory=dict)  # whose routing fields to write
    agents: dict[str, None] = field(default_factory=dict)
    # Agents whose role changes (approved: agent; demoted or deleted: user), as the view says.
    enrolled: dict[str, tuple[AgentView, Role]] = field(default_factory=dict)
    created: dict[str, Chat] = field(default_factory=dict)  # new chats, as opened
    stored: dict[str, Chat] = field(default_factory=dict)  # new chats, as written
    # Each chat's agent as the decisions go, from the published route before the batch.
    owners: dict[str, str | None] = field(default_factory=dict)
    resolved_owner: dict[str, str | None] = field(default_factory=dict)
    pushes: list[tuple[Effect, str | None]] = field(default_factory=list)
    answers: list[tuple[Reply[Any], Answer]] = field(default_factory=list)
    redo: list[AssignmentMessage] = field(default_factory=list)  # tells, if the write fails
    probe: bool = False  # write even if nothing changed
    presence: bool = False  # an agent's connection count changed
    after: list[Callable[[], None]] = field(default_factory=list)  # stored or not

    def answer(self, reply: Reply[Any], answer: Answer) -> None:
        self.answers.append((reply, answer))
