"""The whole message vocabulary of the domain actors.

Asks carry their reply slot in the `reply` field (the kernel's convention); everything else is a
tell. `by` says who caused a change for the activity log (the agent themself, an admin, the
system) and `actor_id` which user that was, when a user was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from actors.assignment import AgentView, CoreSnapshot
from actors.events import AgentCard, Session
from router import ActorInfo, Reply
from store import ActedBy, AgentStatus, Chat, Message, MessageStatus, Priority, Role, User

# --- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedChat:
    chat: Chat
    created: bool  # False: the customer's active chat was found and returned
    agent: AgentCard | None  # the chat's agent, if it has one
    last_message: Message | None


@dataclass(frozen=True, slots=True)
class Sent:
    message: Message
    duplicate: bool  # the client_msg_id was seen before: this is the stored message, resent


@dataclass(frozen=True, slots=True)
class History:
    """Messages after a seq, for `resume`; `complete` is False when more remain than were asked."""

    messages: tuple[Message, ...]
    last_seq: int
    complete: bool


@dataclass(frozen=True, slots=True)
class SystemSnapshot:
    """What an admin or `switchboard inspect` sees: the assignment actor's state and every actor."""

    core: CoreSnapshot
    now: float  # the trio clock at the snapshot, to turn idle_since/waiting_since into ages
    actors: tuple[ActorInfo, ...]
    sessions: int  # live connections of every user


# --- to the assignment actor
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenChat:
    """Find the customer's active chat or create one and queue it."""

    customer_id: str
    title: str
    description: str
    priority: Priority
    reply: Reply[OpenedChat]


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """An agent's sessions came or went: the assignment actor syncs with the presence registry.

    The message carries no count on purpose: reading the registry when it is handled makes it
    idempotent, so a restart (which also reads the registry) cannot count a connection twice.
    """

    agent_id: str


@dataclass(frozen=True, slots=True)
class SetAgentStatus:
    agent_id: str
    status: AgentStatus
    by: ActedBy
    actor_id: str | None
    reply: Reply[AgentView]


@dataclass(frozen=True, slots=True)
class SetMaxLoad:
    agent_id: str
    max_load: int
    actor_id: str | None
    reply: Reply[AgentView]


@dataclass(frozen=True, slots=True)
class ParkChat:
    """The agent set the chat pending: it waits for the customer and frees the agent's slot."""

    chat_id: str
    by: ActedBy
    actor_id: str | None
    reply: Reply[Chat]


@dataclass(frozen=True, slots=True)
class ResolveChat:
    chat_id: str
    by: ActedBy
    actor_id: str | None
    reply: Reply[Chat]


@dataclass(frozen=True, slots=True)
class ReassignChat:
    chat_id: str
    agent_id: str
    actor_id: str | None
    reply: Reply[Chat]


@dataclass(frozen=True, slots=True)
class CustomerWrote:
    """A customer message was stored; a chat waiting for its customer is queued again."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class AddAgent:
    """A user became an agent (an admin approved or created them)."""

    agent_id: str
    max_load: int
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class AgentProfileChanged:
    """The agent's actor stored their profile: the chats pushed from now on show this card."""

    card: AgentCard


@dataclass(frozen=True, slots=True)
class ChatDetailsChanged:
    """An admin changed an active chat's title or description (as stored): what the assignment actor
    answers and pushes about the chat from now on shows them."""

    chat_id: str
    title: str
    description: str
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class RemoveAgent:
    """An agent was demoted or deleted: their chats are re-queued."""

    agent_id: str
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class GraceExpired:
    """From the agent actor: the grace period the assignment actor started with `token` ended.
    `epoch` names the assignment actor's incarnation that started it: a restarted one numbers its
    tokens afresh, so an older incarnation's must not match them."""

    agent_id: str
    token: int
    epoch: int


@dataclass(frozen=True, slots=True)
class RefreshQueuePositions:
    """Timer after the queue changed; the changes until it fires cost one refresh."""


@dataclass(frozen=True, slots=True)
class GetSnapshot:
    reply: Reply[CoreSnapshot]


@dataclass(frozen=True, slots=True)
class RetryDecisions:
    """Timer after a batch could not be stored: the tells in it (presence, a customer's
    message, a grace period's end) are decided again, since nobody would send them twice."""


AssignmentMessage: TypeAlias = (
    OpenChat
    | PresenceChanged
    | SetAgentStatus
    | SetMaxLoad
    | ParkChat
    | ResolveChat
    | ReassignChat
    | CustomerWrote
    | AddAgent
    | AgentProfileChanged
    | ChatDetailsChanged
    | RemoveAgent
    | GraceExpired
    | RefreshQueuePositions
    | GetSnapshot
    | RetryDecisions
)

# --- to an agent actor ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attach:
    """One of the agent's connections is live: it receives their events from now on."""

    session: Session
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Detach:
    session: Session
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """Available or away, chosen by the agent or forced by an admin: relayed to the assignment
    actor, which decides and answers."""

    status: AgentStatus
    by: ActedBy
    actor_id: str | None
    reply: Reply[AgentView]


@dataclass(frozen=True, slots=True)
class Enroll:
    """The user becomes an agent (an admin approved or created them): relayed as `AddAgent`."""

    max_load: int
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Dismiss:
    """The agent is demoted or deleted: relayed as `RemoveAgent`."""

    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class EditProfile:
    """Store the agent's edited profile (name, email, phone, avatar...; never the role or the
    routing fields, which are the assignment actor's); answered with the stored record, and the
    new card told as `AgentProfileChanged`."""

    user: User
    reply: Reply[User]


@dataclass(frozen=True, slots=True)
class StartGracePeriod:
    """From the assignment actor: the agent is offline and not away; unless a connection comes back
    first, tell it `GraceExpired(token, epoch)` after the grace period."""

    token: int
    epoch: int


@dataclass(frozen=True, slots=True)
class GracePeriodOver:
    """Timer: the grace period started with this token ended."""

    token: int
    epoch: int


@dataclass(frozen=True, slots=True)
class TellAgain:
    """Timer: tells the assignment actor's full mailbox refused are told again."""


AgentMessage: TypeAlias = (
    Attach
    | Detach
    | RequestStatus
    | Enroll
    | Dismiss
    | EditProfile
    | StartGracePeriod
    | GracePeriodOver
    | TellAgain
)

# --- to a conversation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who acts in a chat: a user and their role (admins may read any chat, not write)."""

    user_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class SendMessage:
    sender: Speaker
    client_msg_id: str
    content: str
    reply: Reply[Sent]


@dataclass(frozen=True, slots=True)
class MarkRead:
    """The reader got (delivered) or saw (seen) the other side's messages up to `seq`."""

    reader: Speaker
    seq: int
    status: MessageStatus
    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Typing:
    speaker: Speaker
    on: bool


@dataclass(frozen=True, slots=True)
class ReadHistory:
    reader: Speaker
    after_seq: int
    limit: int
    reply: Reply[History]


@dataclass(frozen=True, slots=True)
class DeleteTranscript:
    """Delete the chat and its messages, then stop: nothing is written to it afterwards.
    Answers whether the chat was there."""

    reply: Reply[bool]


@dataclass(frozen=True, slots=True)
class IdleCheck:
    """Timer: passivate if nothing happened for the idle time."""


@dataclass(frozen=True, slots=True)
class ChatClosed:
    """The chat left the active set (resolved): its conversation passivates after a short
    quiet time instead of the idle time. Told without waiting; a full mailbox drops it."""


ConversationMessage: TypeAlias = (
    SendMessage | MarkRead | Typing | ReadHistory | DeleteTranscript | IdleCheck | ChatClosed
)
