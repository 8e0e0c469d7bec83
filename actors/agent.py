"""The AgentActor: one per signed-in agent, the owner of what belongs to that agent alone.

It is the only writer of the agent's live sessions (tabs) in the presence registry, where every
actor then finds them to deliver without a mailbox hop, as conversations find chats in `Routes`;
and it runs the agent's grace timer. The first connection starts it (so does a grace period the
assignment actor starts for an agent without one, e.g. after a restart), and it stops itself
(passivation) once the agent has no session, no grace period running and nothing left to tell.

It owns nothing of capacity: the status used for eligibility, the load, the max load and the
queue stay with the assignment actor, which checks and reserves capacity in one synchronous
step. The agent actor tells it when the agent's sessions change (`PresenceChanged`: it reads the
count from the registry, so telling twice is harmless), when a grace period it started ends
(`GraceExpired` with its token: a stale one changes nothing), and relays the agent's status
requests and their record's lifecycle (approval, demotion or deletion): the assignment actor
decides and answers the asker, and the agent's tabs hear the outcome from it. The agent's profile
(name, email, phone, avatar) it writes itself, then tells the assignment actor the new card.
What the agent actor tells leaves in the order it happened: a status chosen right after
connecting is decided after the connection.

It never waits on the assignment actor's mailbox: what finds it full is told again a moment
later, in order. So the assignment actor may wait on this actor's mailbox to start a grace
period, and the two can never wait on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import assert_never

import trio

from actors.activation import Activation, ask_retrying, log_give_up, tell_retrying
from actors.assignment import AgentView
from actors.events import AgentCard, Session
from actors.messages import (
    AddAgent,
    AgentMessage,
    AgentProfileChanged,
    AssignmentMessage,
    Attach,
    Detach,
    Dismiss,
    EditProfile,
    Enroll,
    GraceExpired,
    GracePeriodOver,
    PresenceChanged,
    RemoveAgent,
    RequestStatus,
    SetAgentStatus,
    StartGracePeriod,
    TellAgain,
)
from actors.presence import Presence
from router import Actor, ActorDead, ActorRef, MailboxFull, Refused, Reply, Timer
from store import (
    ActedBy,
    AgentStatus,
    DuplicateEmail,
    NotFound,
    Store,
    StoreError,
    StoreUnavailable,
    User,
)

# Connects and disconnects of one agent's tabs, a grace period, a status request or two.
AGENT_MAILBOX = 256
# A tell the assignment actor's full mailbox refused is told again after this long.
TELL_AGAIN_SECONDS = 0.05


def agent_actor_name(agent_id: str) -> str:
    return f"agent:{agent_id}"


@dataclass(slots=True)
class _GracePeriod:
    token: int
    epoch: int
    ends_at: float  # on the trio clock


@dataclass(slots=True)
class _Kept:
    """What outlives a crash of the actor (not a passivation): the grace period running, so a
    restart does not leave an offline agent available with no timer to end it."""

    grace: _GracePeriod | None = None
    # Told but refused by the assignment actor's full mailbox, in order; a status request's asker
    # waits on its reply in here.
    unsent: dict[AssignmentMessage, None] = field(default_factory=dict)


class AgentActor(Actor[AgentMessage]):
    def __init__(
        self,
        agent_id: str,
        presence: Presence,
        agents: Agents,
        kept: _Kept,
        *,
        grace_period_seconds: float,
    ) -> None:
        self._agent_id = agent_id
        self._presence = presence
        self._agents = agents
        self._kept = kept
        self._grace_seconds = grace_period_seconds
        self._timer: Timer | None = None
        self._unsent = kept.unsent
        self._tell_again_pending = False

    async def on_start(self) -> None:
        self._flush()
        grace = self._kept.grace
        if grace is not None:  # restarted after a crash: the same period goes on
            left = max(grace.ends_at - trio.current_time(), 0.0)
            self._timer = self.context.send_after(left, GracePeriodOver(grace.token, grace.epoch))

    async def handle(self, message: AgentMessage) -> None:
        match message:
            case Attach(session, reply):
                self._presence.attach(session)
                # The assignment actor takes the grace period back when it hears of the connection.
                self._end_grace_period()
                self._tell(PresenceChanged(self._agent_id))
                reply.send(None)
            case Detach(session, reply):
                if self._presence.detach(session):
                    self._tell(PresenceChanged(self._agent_id))
                reply.send(None)
            case RequestStatus(status, by, actor_id, reply):
                self._tell(SetAgentStatus(self._agent_id, status, by, actor_id, reply))
            case Enroll(max_load, reply):
                self._tell(AddAgent(self._agent_id, max_load, reply))
            case Dismiss(reply):
                self._tell(RemoveAgent(self._agent_id, reply))
            case EditProfile(user, reply):
                await self._edit_profile(user, reply)
            case StartGracePeriod(token, epoch):
                self._end_grace_period()
                ends_at = trio.current_time() + self._grace_seconds
                self._kept.grace = _GracePeriod(token, epoch, ends_at)
                over = GracePeriodOver(token, epoch)
                self._timer = self.context.send_after(self._grace_seconds, over)
            case GracePeriodOver(token, epoch):
                grace = self._kept.grace
                if grace is not None and (grace.token, grace.epoch) == (token, epoch):
                    self._kept.grace, self._timer = None, None
                    self._tell(GraceExpired(self._agent_id, token, epoch))
            case TellAgain():
                self._tell_again_pending = False
                self._flush()
            case _ as unreachable:
                assert_never(unreachable)
        self._passivate_if_done()

    async def _edit_profile(self, user: User, reply: Reply[User]) -> None:
        """The one writer of the agent's profile: a failed write changes nothing and is answered
        (a taken email as a refusal, which crosses the cluster bus; any other store error as
        unavailable), and the actor goes on."""
        assert user.id == self._agent_id
        try:
            stored = await self._agents.store.update_user(user)
        except DuplicateEmail as error:
            reply.fail(Refused("email_taken", f"another account uses this email: {error}"))
        except NotFound:
            reply.fail(Refused("user_not_found", f"no user {user.id}"))
        except StoreUnavailable as error:
            reply.fail(error)
        except StoreError as error:
            reply.fail(StoreUnavailable(f"the profile was not stored: {error}"))
        else:
            self._tell(AgentProfileChanged(AgentCard(stored.id, stored.name, stored.email)))
            reply.send(stored)

    def _end_grace_period(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._kept.grace, self._timer = None, None

    def _tell(self, message: AssignmentMessage) -> None:
        self._unsent[message] = None
        self._flush()

    def _flush(self) -> None:
        assignment_actor = self._agents.assignment_actor  # None while its first start runs
        while self._unsent and assignment_actor is not None:
            message = next(iter(self._unsent))
            try:
                assignment_actor.tell_nowait(message)
            except MailboxFull:
                break
            except ActorDead as error:  # the domain is stopping
                for left in self._unsent:
                    reply = getattr(left, "reply", None)
                    if isinstance(reply, Reply):
                        reply.fail(error)
                self._unsent.clear()
                return
            del self._unsent[message]
        if self._unsent and not self._tell_again_pending:
            self._tell_again_pending = True
            self.context.send_after(TELL_AGAIN_SECONDS, TellAgain())

    def _passivate_if_done(self) -> None:
        """Stop once nothing is left to do. A message already in the mailbox keeps the actor
        running (it would be lost with the stop); one sent after the stop meets `ActorDead` and
        its sender starts the actor again."""
        if (
            self._presence.connections(self._agent_id) == 0
            and self._kept.grace is None
            and not self._unsent
            and self.context.self_ref.mailbox_depth == 0
        ):
            self.context.stop()


class Agents:
    """The agent actors of one domain, started on demand."""

    def __init__(
        self,
        activation: Activation,
        presence: Presence,
        store: Store,
        *,
        grace_period_seconds: float,
    ) -> None:
        self._activation = activation
        self._presence = presence
        self.store = store
        self._grace_seconds = grace_period_seconds
        self.assignment_actor: ActorRef[AssignmentMessage] | None = None

    def bind(self, assignment_actor: ActorRef[AssignmentMessage]) -> None:
        """Once the assignment actor runs (its first start may start grace periods here already)."""
        self.assignment_actor = assignment_actor

    async def attach(self, session: Session) -> None:
        """One of the agent's connections is live (their actor starts with the first)."""
        await self._ask(session.user_id, lambda reply: Attach(session, reply))

    async def detach(self, session: Session) -> None:
        await self._ask(session.user_id, lambda reply: Detach(session, reply))

    async def set_status(
        self, agent_id: str, status: AgentStatus, *, by: ActedBy, actor_id: str | None
    ) -> AgentView:
        return await ask_retrying(
            lambda: self._ref(agent_id),
            lambda reply: RequestStatus(status, by, actor_id, reply),
        )

    async def enroll(self, agent_id: str, max_load: int) -> None:
        await ask_retrying(lambda: self._ref(agent_id), lambda reply: Enroll(max_load, reply))

    async def dismiss(self, agent_id: str) -> None:
        await ask_retrying(lambda: self._ref(agent_id), Dismiss)

    async def edit_profile(self, user: User) -> User:
        """Store the agent's edited profile through their actor (started for it if need be)."""
        return await ask_retrying(
            lambda: self._ref(user.id), lambda reply: EditProfile(user, reply)
        )

    async def start_grace_period(self, agent_id: str, token: int, epoch: int) -> None:
        start: AgentMessage = StartGracePeriod(token, epoch)
        await tell_retrying(lambda: self._ref(agent_id), start)

    async def _ask(self, agent_id: str, make: Callable[[Reply[None]], AgentMessage]) -> None:
        await ask_retrying(lambda: self._ref(agent_id), make)

    async def _ref(self, agent_id: str) -> ActorRef[AgentMessage]:
        kept = _Kept()
        return await self._activation.ref(
            agent_actor_name(agent_id),
            lambda: AgentActor(
                agent_id,
                self._presence,
                self,
                kept,
                grace_period_seconds=self._grace_seconds,
            ),
            mailbox_size=AGENT_MAILBOX,
            on_give_up=log_give_up,
        )
