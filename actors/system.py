"""The composition root of the domain: `open_system(store)` gives the handle the API uses.

Every method sends a message to an actor and waits for its answer; none has a timeout argument,
so callers bound the wait with `trio.fail_after`. Refusals come out as `router.Refused` (with a
stable `code`), a stopped actor as `router.ActorDead`, a crash while handling as
`router.HandlerCrashed`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import trio

from actors.activation import DELIVERY_ATTEMPTS, Activation, ask_retrying, log_give_up
from actors.agent import Agents
from actors.assignment import AgentView, CoreSnapshot
from actors.assignment_actor import AssignmentActor, RoutingHealth
from actors.conversation import ConversationActor
from actors.events import CLOSE_SIGNED_OUT, Session
from actors.floor import FloorActor, FloorMessage, FloorSignal, UnwatchFloor, WatchFloor
from actors.messages import (
    AssignmentMessage,
    ChatClosed,
    ChatDetailsChanged,
    ConversationMessage,
    DeleteTranscript,
    GetSnapshot,
    History,
    MarkRead,
    OpenChat,
    OpenedChat,
    ParkChat,
    ReadHistory,
    ReassignChat,
    ResolveChat,
    SendMessage,
    Sent,
    SetMaxLoad,
    Speaker,
    SystemSnapshot,
    Typing,
)
from actors.presence import Presence, Route, Routes
from actors.transcripts import Transcripts
from router import (
    ActorDead,
    ActorInfo,
    ActorRef,
    ActorSystem,
    MailboxFull,
    Refused,
    Reply,
    RestartPolicy,
    open_actor_system,
)
from store import (
    ActedBy,
    AgentStatus,
    Backend,
    Chat,
    MessageStatus,
    Priority,
    Role,
    Store,
    User,
)
from telemetry import actor_restarted

log = logging.getLogger("actors")

R = TypeVar("R")

# Its registered name, as /admin/system, the metrics and `switchboard inspect` show it.
ASSIGNMENT_ACTOR = "supervisor"
FLOOR = "floor"
# Room for a burst of connects and chat openings from many sockets; beyond it, senders wait.
ASSIGNMENT_MAILBOX = 1024
# One chat has a handful of writers; more queued than this is a flood, and the senders wait.
CONVERSATION_MAILBOX = 64
# The floor feed needs room for one refresh request and the watch requests of a few admins.
FLOOR_MAILBOX = 64
# Crashes are bugs (a store that fails only takes a batch back): restart with a backoff, and past
# the intensity give up for ASSIGNMENT_RETRY_SECONDS, then start afresh. Never end the process:
# sessions, conversations and the published routes carry on meanwhile, /readyz says not ready.
ASSIGNMENT_RESTARTS = RestartPolicy(
    max_restarts=5, within_seconds=60.0, backoff_seconds=0.5, max_backoff_seconds=10.0
)
ASSIGNMENT_RETRY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SystemConfig:
    grace_period_seconds: float = 15.0
    starvation_after_seconds: float = 120.0
    conversation_idle_seconds: float = 300.0
    # A resolved chat's conversation passivates after this long without a message.
    conversation_closed_idle_seconds: float = 10.0
    assignment_restarts: RestartPolicy = ASSIGNMENT_RESTARTS


class System:
    """The running domain: the assignment actor, conversations on demand, presence and routes."""

    def __init__(
        self,
        actors: ActorSystem,
        store: Store,
        config: SystemConfig,
        presence: Presence,
        routes: Routes,
        transcripts: Transcripts,
        assignment_actor: ActorRef[AssignmentMessage],
        floor: ActorRef[FloorMessage],
        routing: RoutingHealth,
        activation: Activation,
        agents: Agents,
    ) -> None:
        self.store = store
        self.config = config
        self._actors = actors
        self._presence = presence
        self._routes = routes
        self._transcripts = transcripts
        self._assignment_actor = assignment_actor
        self._floor = floor
        self._routing = routing
        self._activation = activation
        self._agents = agents

    # --- sessions ------------------------------------------------------------------------------

    async def connect(self, session: Session, role: Role) -> None:
        """A user's connection is live: it receives their events from now on. An agent's
        sessions are their agent actor's; anyone else's are registered here."""
        if role == Role.AGENT:
            await self._agents.attach(session)
        else:
            self._presence.attach(session)

    async def disconnect(self, session: Session, role: Role) -> None:
        if role == Role.AGENT:
            await self._agents.detach(session)
        else:
            self._presence.detach(session)

    def sign_out(self, user_id: str, reason: str, *, keep_token: str | None = None) -> int:
        """Close every live connection of the user (logged out, demoted, deleted, password
        changed) but those opened with `keep_token`."""
        return self._presence.close_user(user_id, CLOSE_SIGNED_OUT, reason, keep_token=keep_token)

    def close_token(self, token_id: str, reason: str) -> int:
        """Close the connections opened with one token (its holder signed out with it)."""
        return self._presence.close_token(token_id, CLOSE_SIGNED_OUT, reason)

    def connections(self, user_id: str) -> int:
        return self._presence.connections(user_id)

    @property
    def assignment_running(self) -> bool:
        """The assignment actor is handling messages and storing its decisions: what /readyz
        reports."""
        return self._assignment_actor.running and self._routing.problem is None

    def actor_states(self) -> list[ActorInfo]:
        """Every actor's mailbox depth and restarts now, without asking any of them."""
        return self._actors.snapshot()

    def route(self, chat_id: str) -> Route | None:
        """Who is in an active chat now; None when resolved or unknown."""
        return self._routes.get(chat_id)

    # --- the assignment actor
    # ------------------------------------------------------------------------

    async def open_chat(
        self, customer_id: str, *, title: str, description: str, priority: Priority
    ) -> OpenedChat:
        return await self._assignment_actor.ask(
            lambda reply: OpenChat(customer_id, title, description, priority, reply)
        )

    async def set_agent_status(
        self, agent_id: str, status: AgentStatus, *, by: ActedBy, actor_id: str | None
    ) -> AgentView:
        """Through the agent's actor, in order with their connections; the assignment actor
        decides."""
        return await self._agents.set_status(agent_id, status, by=by, actor_id=actor_id)

    async def set_max_load(self, agent_id: str, max_load: int, *, actor_id: str) -> AgentView:
        return await self._assignment_actor.ask(
            lambda reply: SetMaxLoad(agent_id, max_load, actor_id, reply)
        )

    async def park_chat(self, chat_id: str, *, by: ActedBy, actor_id: str | None) -> Chat:
        return await self._assignment_actor.ask(
            lambda reply: ParkChat(chat_id, by, actor_id, reply)
        )

    async def resolve_chat(self, chat_id: str, *, by: ActedBy, actor_id: str | None) -> Chat:
        return await self._assignment_actor.ask(
            lambda reply: ResolveChat(chat_id, by, actor_id, reply)
        )

    async def delete_chat(self, chat_id: str, *, actor_id: str) -> bool:
        """Resolve the chat (freeing its agent), then have its conversation delete it and stop:
        the chat's owners decide, one after the other. False if it was not there."""
        try:
            await self.resolve_chat(chat_id, by=ActedBy.ADMIN, actor_id=actor_id)
        except Refused as refusal:
            if refusal.code != "chat_not_active":
                raise
        try:
            return await self._ask_conversation(chat_id, DeleteTranscript)
        except Refused as refusal:
            if refusal.code == "chat_not_found":
                return False
            raise

    async def reassign_chat(self, chat_id: str, agent_id: str, *, actor_id: str) -> Chat:
        return await self._assignment_actor.ask(
            lambda reply: ReassignChat(chat_id, agent_id, actor_id, reply)
        )

    async def add_agent(self, agent_id: str, max_load: int) -> None:
        """Through the agent's actor (started for it), in order with everything else of theirs."""
        await self._agents.enroll(agent_id, max_load)

    async def edit_agent_profile(self, user: User) -> User:
        """Store an agent's edited profile through their actor (started for it if they are not
        signed in), which tells the assignment actor their new card; answers the stored record."""
        return await self._agents.edit_profile(user)

    async def chat_details_changed(self, chat_id: str, title: str, description: str) -> None:
        """An admin stored a chat's new title or description."""
        await self._assignment_actor.ask(
            lambda reply: ChatDetailsChanged(chat_id, title, description, reply)
        )

    async def remove_agent(self, agent_id: str) -> None:
        await self._agents.dismiss(agent_id)

    async def snapshot(self) -> SystemSnapshot:
        core: CoreSnapshot = await self._assignment_actor.ask(GetSnapshot)
        return SystemSnapshot(
            core=core,
            now=trio.current_time(),
            actors=tuple(self._actors.snapshot()),
            sessions=self._presence.count,
        )

    # --- the floor feed ------------------------------------------------------------------------

    async def watch_floor(self, user_id: str, session_id: str) -> None:
        """The session gets the whole floor now, then every change (see actors/floor.py)."""
        await self._floor.ask(lambda reply: WatchFloor(user_id, session_id, reply))

    async def unwatch_floor(self, session_id: str) -> None:
        await self._floor.ask(lambda reply: UnwatchFloor(session_id, reply))

    # --- conversations -------------------------------------------------------------------------

    async def send_message(
        self, chat_id: str, sender: Speaker, *, client_msg_id: str, content: str
    ) -> Sent:
        return await self._ask_conversation(
            chat_id, lambda reply: SendMessage(sender, client_msg_id, content, reply)
        )

    async def send_messages(
        self, chat_id: str, sender: Speaker, sends: Sequence[tuple[str, str]]
    ) -> list[Sent | Exception]:
        """`send_message` for each (client_msg_id, content) of one sender to one chat, in order:
        all are in the conversation's mailbox before the first is answered, so they are stored
        in one write. Each gets what `send_message` would return or raise, in order."""
        answers: list[Sent | Exception] = []
        for attempt in range(DELIVERY_ATTEMPTS):
            ref = await self._conversation(chat_id)
            rest = sends[len(answers) :]
            for answer in await ref.ask_each(
                [
                    partial(SendMessage, sender, client_msg_id, content)
                    for client_msg_id, content in rest
                ]
            ):
                # The first ActorDead and all after it were never handled (passivated between
                # the lookup and the asks): they are asked again, in order, of its next run.
                if isinstance(answer, ActorDead) and attempt < DELIVERY_ATTEMPTS - 1:
                    break
                answers.append(answer)
            if len(answers) == len(sends):
                return answers
        raise AssertionError("unreachable")

    async def mark_read(
        self, chat_id: str, reader: Speaker, *, seq: int, status: MessageStatus
    ) -> None:
        await self._ask_conversation(chat_id, lambda reply: MarkRead(reader, seq, status, reply))

    async def history(
        self, chat_id: str, reader: Speaker, *, after_seq: int, limit: int
    ) -> History:
        return await self._ask_conversation(
            chat_id, lambda reply: ReadHistory(reader, after_seq, limit, reply)
        )

    async def typing(self, chat_id: str, speaker: Speaker, *, on: bool) -> None:
        """Best effort: dropped when the chat's mailbox is full (typing is ephemeral)."""
        ref = await self._conversation(chat_id)
        with suppress(MailboxFull, ActorDead):
            ref.tell_nowait(Typing(speaker, on))

    async def _ask_conversation(
        self, chat_id: str, make: Callable[[Reply[R]], ConversationMessage]
    ) -> R:
        return await ask_retrying(lambda: self._conversation(chat_id), make)

    async def _conversation(self, chat_id: str) -> ActorRef[ConversationMessage]:
        """The chat's conversation actor, started from the store if it is not running."""
        return await self._activation.ref(
            _conversation_name(chat_id),
            lambda: ConversationActor(
                chat_id,
                self.store,
                self._presence,
                self._routes,
                self._transcripts,
                self._assignment_actor,
                idle_seconds=self.config.conversation_idle_seconds,
                closed_idle_seconds=self.config.conversation_closed_idle_seconds,
            ),
            mailbox_size=CONVERSATION_MAILBOX,
            on_give_up=log_give_up,
        )


def _conversation_name(chat_id: str) -> str:
    return f"chat:{chat_id}"


def _retry_assignment_actor(name: str, error: BaseException) -> float:
    log.error(
        "the assignment actor keeps crashing; starting it again in %g s",
        ASSIGNMENT_RETRY_SECONDS,
        exc_info=error,
    )
    return ASSIGNMENT_RETRY_SECONDS


@asynccontextmanager
async def open_system(
    store: Backend,
    config: SystemConfig = SystemConfig(),
    *,
    presence: Presence | None = None,
    routes: Routes | None = None,
) -> AsyncIterator[System]:
    """Start the assignment actor (which rebuilds the assignment state from the store) and run the
    domain for the duration of the block. Cluster mode passes its own `presence` (sessions that
    outlive this domain's run on the node) and `routes` (mirrored to the other nodes)."""
    presence = Presence() if presence is None else presence
    routes = Routes() if routes is None else routes
    signal = FloorSignal()
    routing = RoutingHealth()
    transcripts = Transcripts()
    async with open_actor_system(on_restart=actor_restarted) as actors:
        activation = Activation(actors)

        def chat_closed(chat_id: str) -> None:
            """Tell a running conversation its chat is resolved; never waits, never starts one."""
            ref: ActorRef[ConversationMessage] | None = actors.lookup(_conversation_name(chat_id))
            if ref is not None:
                with suppress(MailboxFull, ActorDead):
                    ref.tell_nowait(ChatClosed())

        agents = Agents(
            activation, presence, store, grace_period_seconds=config.grace_period_seconds
        )
        assignment_actor: ActorRef[AssignmentMessage] = await actors.spawn(
            ASSIGNMENT_ACTOR,
            lambda: AssignmentActor(
                store,
                presence,
                routes,
                transcripts,
                agents,
                starvation_after_seconds=config.starvation_after_seconds,
                floor=signal,
                health=routing,
                chat_closed=chat_closed,
            ),
            mailbox_size=ASSIGNMENT_MAILBOX,
            restart=config.assignment_restarts,
            on_give_up=_retry_assignment_actor,
        )
        agents.bind(assignment_actor)
        floor: ActorRef[FloorMessage] = await actors.spawn(
            FLOOR,
            lambda: FloorActor(
                store,
                presence,
                assignment_actor,
                signal,
                starvation_after_seconds=config.starvation_after_seconds,
            ),
            mailbox_size=FLOOR_MAILBOX,
            on_give_up=log_give_up,
        )
        signal.bind(floor)
        yield System(
            actors,
            store,
            config,
            presence,
            routes,
            transcripts,
            assignment_actor,
            floor,
            routing,
            activation,
            agents,
        )
