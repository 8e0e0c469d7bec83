"""What the domain pushes to a user's live sessions; the API edge turns each into a wire frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from store import AgentStatus, Chat, ChatStatus, Message, MessageStatus, Priority


@dataclass(frozen=True, slots=True)
class MessageAdded:
    message: Message


@dataclass(frozen=True, slots=True)
class AgentCard:
    """What a chat shows of its agent: their public fields."""

    id: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class ChatAssigned:
    """To the agent who now has the chat (and to its customer): everything an edge shows of it,
    so that rendering it reads nothing."""

    chat: Chat
    reason: str
    agent: AgentCard
    last_message: Message | None


@dataclass(frozen=True, slots=True)
class ChatUnassigned:
    chat_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChatStatusEvent:
    chat_id: str
    status: ChatStatus
    agent_id: str | None


@dataclass(frozen=True, slots=True)
class QueuePosition:
    chat_id: str
    position: int
    eta_seconds: int


@dataclass(frozen=True, slots=True)
class AgentStatusEvent:
    agent_id: str
    status: AgentStatus
    reason: str


@dataclass(frozen=True, slots=True)
class TypingEvent:
    chat_id: str
    user_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """The reader got (delivered) or saw (seen) the other side's messages up to seq."""

    chat_id: str
    reader_id: str
    seq: int
    status: MessageStatus


@dataclass(frozen=True, slots=True)
class FloorChat:
    chat_id: str
    title: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class FloorAgent:
    agent_id: str
    name: str
    email: str
    status: AgentStatus
    connections: int
    load: int
    max_load: int
    idle_seconds: float  # as of the update
    chats: tuple[FloorChat, ...]  # open chats, in assignment order


@dataclass(frozen=True, slots=True)
class FloorQueueEntry:
    chat_id: str
    title: str
    position: int
    priority: Priority
    effective_priority: Priority
    status: ChatStatus
    requeued: bool
    waiting_seconds: float  # as of the update


@dataclass(frozen=True, slots=True)
class FloorUpdate:
    """The floor (`full`) or what changed on it: agents changed or added, agents gone, and the
    queue's head when it changed (None: unchanged)."""

    full: bool
    agents: tuple[FloorAgent, ...]
    removed: tuple[str, ...]
    queue: tuple[FloorQueueEntry, ...] | None
    queue_length: int


Event: TypeAlias = (
    MessageAdded
    | ChatAssigned
    | ChatUnassigned
    | ChatStatusEvent
    | QueuePosition
    | AgentStatusEvent
    | TypingEvent
    | ReadEvent
    | FloorUpdate
)


@dataclass(frozen=True, slots=True, eq=False)
class Session:
    """One live connection of a user, as the edge hands it to the domain.

    `offer` must never block: it raises `trio.WouldBlock` when the connection's outbox is full,
    and the domain then calls `close` (a slow reader must not slow anyone else).
    `token_id` names the credential the connection was opened with, so that signing out with
    that token closes exactly its connections (None: not tied to a revocable token).
    """

    id: str
    user_id: str
    offer: Callable[[Event], None]
    close: Callable[[int, str], None]
    token_id: str | None = None


# Close codes the domain asks the edge to use.
CLOSE_SLOW_READER = 1013
CLOSE_SIGNED_OUT = 4401
