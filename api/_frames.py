"""Websocket frames: JSON text, one event per frame, `{"type": ...}`, camelCase fields.

Client frames are parsed into a discriminated union and turned into the connection core's
commands (api/_ws_core.py), so the core never sees JSON; server frames are built from models too,
so the README's examples and the code cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from actors import FloorAgent, FloorQueueEntry, FloorUpdate
from api._schemas import ChatMessageOut, ChatOut, ClientMsgId, WireModel
from api._ws_core import (
    Command,
    FollowFloor,
    MarkSeen,
    Ping,
    PostMessage,
    Resume,
    SetStatus,
    SetTyping,
    StartChat,
)
from store import AgentStatus, ChatStatus, MessageStatus, Priority

MAX_CHAT_ID_CHARS = 64
ChatId = Annotated[str, Field(min_length=1, max_length=MAX_CHAT_ID_CHARS)]
Seq = Annotated[int, Field(ge=0, le=2**53)]
MAX_CONTENT_CHARS = 16_000

# --- client -> server ----------------------------------------------------------------------------


class MessageSendIn(WireModel):
    type: Literal["message.send"]
    chat_id: ChatId
    client_msg_id: ClientMsgId
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]

    def command(self) -> Command:
        return PostMessage(self.chat_id, self.client_msg_id, self.content)


class TypingIn(WireModel):
    type: Literal["typing"]
    chat_id: ChatId
    on: bool

    def command(self) -> Command:
        return SetTyping(self.chat_id, self.on)


class ReadIn(WireModel):
    type: Literal["read"]
    chat_id: ChatId
    seq: Seq

    def command(self) -> Command:
        return MarkSeen(self.chat_id, self.seq)


class StatusSetIn(WireModel):
    type: Literal["status.set"]
    status: Literal["available", "away"]

    def command(self) -> Command:
        return SetStatus(AgentStatus(self.status))


class ResumeIn(WireModel):
    type: Literal["resume"]
    chat_id: ChatId
    after_seq: Seq

    def command(self) -> Command:
        return Resume(self.chat_id, self.after_seq)


class ChatOpenIn(WireModel):
    type: Literal["chat.open"]
    title: Annotated[str, Field(min_length=1, max_length=200)] = "Support chat"
    description: Annotated[str, Field(max_length=2000)] = ""
    priority: Priority = Priority.MEDIUM

    def command(self) -> Command:
        return StartChat(self.title, self.description, self.priority)


class PingIn(WireModel):
    type: Literal["ping"]

    def command(self) -> Command:
        return Ping()


class FloorWatchIn(WireModel):
    type: Literal["floor.watch"]
    on: bool = True

    def command(self) -> Command:
        return FollowFloor(self.on)


ClientFrame = Annotated[
    MessageSendIn | TypingIn | ReadIn | StatusSetIn | ResumeIn | ChatOpenIn | PingIn | FloorWatchIn,
    Field(discriminator="type"),
]
client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)

# --- server -> client ----------------------------------------------------------------------------


class AckOut(WireModel):
    type: Literal["ack"] = "ack"
    client_msg_id: str
    chat_id: str
    seq: int
    message_id: str


class MessageFrameOut(WireModel):
    type: Literal["message"] = "message"
    chat_id: str
    seq: int
    message: ChatMessageOut


class ChatAssignedOut(WireModel):
    type: Literal["chat.assigned"] = "chat.assigned"
    chat: ChatOut
    reason: str


class ChatUnassignedOut(WireModel):
    type: Literal["chat.unassigned"] = "chat.unassigned"
    chat_id: str
    reason: str


class ChatStatusOut(WireModel):
    type: Literal["chat.status"] = "chat.status"
    chat_id: str
    status: ChatStatus
    agent_id: str | None


class QueuePositionOut(WireModel):
    type: Literal["queue.position"] = "queue.position"
    chat_id: str
    position: int
    eta_seconds: int


class AgentStatusOut(WireModel):
    type: Literal["agent.status"] = "agent.status"
    agent_id: str
    status: AgentStatus
    reason: str


class TypingFrameOut(WireModel):
    type: Literal["typing"] = "typing"
    chat_id: str
    user_id: str
    on: bool


class ReadOut(WireModel):
    type: Literal["read"] = "read"
    chat_id: str
    reader_id: str
    seq: int
    status: MessageStatus


class ResumedOut(WireModel):
    """`recovered: true`: every missed message was sent just before, in order, and `lastSeq` is
    the chat's latest. `recovered: false`: reload the chat over REST; `reason` says why."""

    type: Literal["resumed"] = "resumed"
    chat_id: str
    recovered: bool
    last_seq: int | None = None
    reason: str | None = None


class ChatOpenedOut(WireModel):
    type: Literal["chat.opened"] = "chat.opened"
    chat: ChatOut
    created: bool


class PongOut(WireModel):
    type: Literal["pong"] = "pong"


class ErrorFrameOut(WireModel):
    type: Literal["error"] = "error"
    code: str
    message: str
    ref: str | None


class FloorChatOut(WireModel):
    id: str
    title: str
    priority: Priority


class FloorAgentOut(WireModel):
    id: str
    name: str
    email: str
    status: AgentStatus
    connections: int
    load: int
    max_load: int
    idle_seconds: float
    chats: list[FloorChatOut]

    @classmethod
    def of(cls, agent: FloorAgent) -> FloorAgentOut:
        return cls(
            id=agent.agent_id,
            name=agent.name,
            email=agent.email,
            status=agent.status,
            connections=agent.connections,
            load=agent.load,
            max_load=agent.max_load,
            idle_seconds=agent.idle_seconds,
            chats=[
                FloorChatOut(id=chat.chat_id, title=chat.title, priority=chat.priority)
                for chat in agent.chats
            ],
        )


class FloorQueueEntryOut(WireModel):
    chat_id: str
    title: str
    position: int
    priority: Priority
    effective_priority: Priority
    status: ChatStatus
    requeued: bool
    waiting_seconds: float

    @classmethod
    def of(cls, entry: FloorQueueEntry) -> FloorQueueEntryOut:
        return cls(
            chat_id=entry.chat_id,
            title=entry.title,
            position=entry.position,
            priority=entry.priority,
            effective_priority=entry.effective_priority,
            status=entry.status,
            requeued=entry.requeued,
            waiting_seconds=entry.waiting_seconds,
        )


class FloorOut(WireModel):
    """The whole floor (`full`), or what changed: `agents` changed or new, `removedAgents` gone,
    `queue` the queue's first 100 entries when it changed (null: unchanged)."""

    type: Literal["floor"] = "floor"
    full: bool
    agents: list[FloorAgentOut]
    removed_agents: list[str]
    queue: list[FloorQueueEntryOut] | None
    queue_length: int

    @classmethod
    def of(cls, update: FloorUpdate) -> FloorOut:
        return cls(
            full=update.full,
            agents=[FloorAgentOut.of(agent) for agent in update.agents],
            removed_agents=list(update.removed),
            queue=None
            if update.queue is None
            else [FloorQueueEntryOut.of(entry) for entry in update.queue],
            queue_length=update.queue_length,
        )


ServerFrame = (
    AckOut
    | MessageFrameOut
    | ChatAssignedOut
    | ChatUnassignedOut
    | ChatStatusOut
    | QueuePositionOut
    | AgentStatusOut
    | TypingFrameOut
    | ReadOut
    | ResumedOut
    | ChatOpenedOut
    | PongOut
    | ErrorFrameOut
    | FloorOut
)
